"""Transmit side of the mesh node (mixed into loranode.node.Node).

TxQueue (CONTROL > BLOCKS > GOSSIP); every frame passes DutyCycle.can_send for the
configured region and channel, announces and PEX as background traffic (at most half
the budget). A frame that can never fit (dwell time or budget) is dropped (`tx_never`).
Each transmission waits a random 0..TX_JITTER_MS first (0..RELAY_JITTER_MS for a
relayed frame; no carrier sense on the simulated radio; jitter de-synchronises relays).

Our own unicasts (`_route`): link tag and hop limit 0 to a verified direct neighbour
whose key we hold; else the network tag with the destination's hop count + 1 (the hop
limit when unknown), so relays forward it by scoped flooding (loranode.receive).
Pings and application unicasts wait for an answer (PONG / ACK) in PENDING slots; an
answer or a timeout (PENDING_TIMEOUT_MS) feeds the peer's reliability score.

`app_upstream` (the application's `port.send_upstream`) sends toward the internet: a
unicast to `best_gateway()`, routed like any unicast and acknowledged by the gateway;
with no gateway known, a broadcast (`upstream_no_gateway`). `upstream_tx` counts both.
"""

from loranode.announce import rand
from loranode.app import APP_TYPES
from loranode.pex import HOPS_UNKNOWN
from loranode.txqueue import CONTROL, GOSSIP
from lorawire import auth
from lorawire import frame as fr
from lorawire import messages as msg
from lorawire.airtime import NEVER, time_on_air_ms
from lorawire.errors import DecodeError

PENDING = 8  # outstanding pings / unicasts awaiting an answer
PENDING_TIMEOUT_MS = 30000
TX_JITTER_MS = 1000
RELAY_JITTER_MS = 3000
_BACKGROUND = (msg.ANNOUNCE, msg.PEX_REQUEST, msg.PEX_RESPONSE)


class Transmit:
    """Queueing, routing and sending of the node's own frames."""

    def _route(self, dest):
        """(hop_limit, link key or None) for a unicast to dest."""
        s = self.peers.find(dest)
        if s < 0 or self.peers.hops[s] == HOPS_UNKNOWN:
            return self.hop_limit, None
        h = self.peers.hops[s]
        if h == 0:
            return 0, self.link_keys.get(dest)
        h += 1
        return (h if h <= fr.MAX_HOPS else fr.MAX_HOPS), None

    def _queue(self, msg_type, body, dest, hop_limit, prio, mono, link_key=None):
        seq = self.next_seq()
        f = fr.Frame(
            msg_type, self.id, seq, dest, fr.FLAG_LINK if link_key else 0, hop_limit=hop_limit
        )
        try:
            data = auth.seal_frame(f, body, self.net_key, link_key)
        except ValueError:
            self.c["tx_errors"] += 1
            return None
        if not self.txq.push(data, prio, mono):
            return None
        return seq

    def _reply(self, f, msg_type, fields):
        hop_limit = f.hop_count
        lk = self.link_keys.get(f.source) if hop_limit == 0 else None
        self._queue(
            msg_type,
            msg.encode_body(msg_type, fields),
            f.source,
            hop_limit,
            CONTROL,
            self.clock.now(),
            lk,
        )

    def app_send(self, dest, msg_type, fields, priority=GOSSIP):
        if msg_type not in APP_TYPES:
            return False
        try:
            body = msg.encode_body(msg_type, fields)
        except (ValueError, DecodeError):
            return False
        mono = self.clock.now()
        if dest is None:
            seq = self._queue(msg_type, body, None, self.hop_limit, priority, mono)
        else:
            dest = bytes(dest)
            hl, lk = self._route(dest)
            seq = self._queue(msg_type, body, dest, hl, priority, mono, lk)
            if seq is not None:
                self._expect(dest, 1, seq, mono)
        if seq is None:
            return False
        self.c["app_tx"] += 1
        return True

    def app_upstream(self, msg_type, fields, priority=GOSSIP):
        """Port.send_upstream: a unicast to best_gateway(), or a broadcast without one."""
        gw = self.best_gateway()
        if not self.app_send(gw, msg_type, fields, priority):
            return False
        self.c["upstream_tx"] += 1
        if gw is None:
            self.c["upstream_no_gateway"] += 1
        return True

    def _expect(self, peer_id, kind, val, mono):
        best = 0
        for i in range(PENDING):
            if self.pend_id[i] is None:
                best = i
                break
            if self.pend_t[i] < self.pend_t[best]:
                best = i
        self.pend_id[best] = peer_id
        self.pend_kind[best] = kind
        self.pend_val[best] = val
        self.pend_t[best] = mono

    def _answered(self, src, kind, val, t, mono):
        for i in range(PENDING):
            if self.pend_id[i] == src and self.pend_kind[i] == kind and self.pend_val[i] == val:
                self.pend_id[i] = None
                s = self.peers.find(src)
                if kind == 0:
                    self.c["pong_rx"] += 1
                    if s >= 0:
                        self.peers.record_ping(s, mono - self.pend_t[i], t)
                else:
                    self.c["ack_rx"] += 1
                    if s >= 0:
                        self.peers.record_ack(s, t)
                return

    def _expire_pending(self, mono, t):
        for i in range(PENDING):
            pid = self.pend_id[i]
            if pid is not None and mono - self.pend_t[i] > PENDING_TIMEOUT_MS:
                self.pend_id[i] = None
                self.c["timeouts"] += 1
                s = self.peers.find(pid)
                if s >= 0:
                    self.peers.record_failure(s, t)

    def _can_send(self, data, prio):
        mono = self.clock.now()
        air = time_on_air_ms(len(data), self.sf, self.bw, self.cr)
        bg = data[1] in _BACKGROUND
        if self.duty.wait_ms(self.freq, air, mono, bg, self.bw) == NEVER:
            self._never = True
            return True
        return self.duty.can_send(self.freq, air, mono, bg, self.bw)

    def next_frame(self):
        """The next frame the duty cycle allows, or None (drops never-sendable ones)."""
        while True:
            self._never = False
            data = self.txq.pop_ready(self._can_send)
            if data is None:
                return None
            if not self._never:
                return data
            self.c["tx_never"] += 1

    def charge(self, data, airtime_ms, mono):
        self.duty.record(self.freq, airtime_ms, mono, data[1] in _BACKGROUND)
        self._tx_airtime_ms += int(airtime_ms + 0.5)
        self.c["tx"] += 1

    async def tx_task(self, sleep_ms):
        radio = self.radio
        while self.running:
            data = self.next_frame()
            if data is None:
                await sleep_ms(20)
                continue
            # relayed frames (hop_count > 0) wait longer: every neighbour of the
            # previous sender relays the same frame, and they must not all key up at once
            jitter = rand((RELAY_JITTER_MS if data[2] & 0x0F else TX_JITTER_MS) + 1)
            await sleep_ms(self.clock.wall_ms(jitter) + 1)
            try:
                air = await radio.asend(data)
                # charged from the end of the transmission: other tasks have read the
                # clock meanwhile (the accountant needs non-decreasing times), and a
                # later start only keeps the airtime in the window a little longer
                self.charge(data, air, self.clock.now())
            except Exception as e:  # noqa: BLE001 - the transmit task must survive
                self.c["tx_errors"] += 1
                print("tx error:", repr(e))
