"""Transmit side of the mesh node (mixed into loranode.node.Node).

TxQueue (CONTROL > BLOCKS > GOSSIP); every frame passes the channel's airtime.Budget
(the duty cycle and dwell limit the deploy tool wrote into the config), announces and
PEX as background traffic (at most half the budget). A frame that can never fit (dwell
time or budget) is dropped (`tx_never`). Each transmission waits a random
0..TX_JITTER_MS first (0..RELAY_JITTER_MS for a relayed frame; no carrier sense on the
simulated radio; jitter de-synchronises relays).

Our own unicasts (`_route`): link tag and hop limit 0 to a verified direct neighbour
whose key we hold; else the network tag with the destination's hop count + 1 (the hop
limit when unknown), so relays forward it by scoped flooding (loranode.receive).
Pings and application unicasts wait for an answer (PONG / ACK) in PENDING slots; an
answer or a timeout (PENDING_TIMEOUT_MS) feeds the peer's reliability score.

`app_upstream` (the application's `port.send_upstream`) sends toward the internet: a
unicast to `best_gateway()`, routed like any unicast and acknowledged by the gateway;
with no gateway known, a broadcast (`upstream_no_gateway`). `upstream_tx` counts both.

Nothing on the path from the queue to the radio allocates: `next_frame` only looks at
queued bytes and the budget, `charge` adds small ints.
"""

from loranode import counters as C
from loranode.announce import rand
from loranode.app import APP_TYPES
from loranode.clock import diff
from loranode.pex import HOPS_UNKNOWN
from loranode.txqueue import CONTROL, GOSSIP
from lorawire import auth
from lorawire import frame as fr
from lorawire import messages as msg
from lorawire.airtime import NEVER, airtime_ms
from lorawire.errors import DecodeError

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

PENDING = const(8)  # outstanding pings / unicasts awaiting an answer
PENDING_TIMEOUT_MS = const(30000)
TX_JITTER_MS = const(1000)
RELAY_JITTER_MS = const(3000)
_BACKGROUND = (msg.ANNOUNCE, msg.PEX_REQUEST, msg.PEX_RESPONSE)


class Transmit:
    """Queueing, routing and sending of the node's own frames."""

    def _init_transmit(self):
        # pending pings / acks: peer id, kind (0 ping, 1 ack), nonce or seq, tick sent
        self.pend_id = [None] * PENDING
        self.pend_kind = bytearray(PENDING)
        self.pend_val = [0] * PENDING
        self.pend_t = [0] * PENDING
        self.tx_airtime_ms = 0
        self._never = False
        self._allow = self._can_send  # one bound method for TxQueue.pop_ready, made once

    def _route(self, dest):
        """(hop_limit, link key or None) for a unicast to dest."""
        s = self.peers.find(dest)
        if s < 0 or self.peers.hops[s] == HOPS_UNKNOWN:
            return self.hop_limit, None
        h = self.peers.hops[s]
        if h == 0:
            return 0, self.link_key(dest)
        h += 1
        return (h if h <= fr.MAX_HOPS else fr.MAX_HOPS), None

    def _queue(self, msg_type, body, dest, hop_limit, prio, now, link_key=None):
        seq = self.next_seq()
        f = fr.Frame(
            msg_type, self.id, seq, dest, fr.FLAG_LINK if link_key else 0, hop_limit=hop_limit
        )
        try:
            data = auth.seal_frame(f, body, self.net_key, link_key)
        except ValueError:
            self.c[C.TX_ERRORS] += 1
            return None
        if not self.txq.push(data, prio, now):
            return None
        return seq

    def _reply(self, f, msg_type, fields):
        hop_limit = f.hop_count
        lk = self.link_key(f.source) if hop_limit == 0 else None
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
        now = self.clock.now()
        if dest is None:
            seq = self._queue(msg_type, body, None, self.hop_limit, priority, now)
        else:
            dest = bytes(dest)
            hl, lk = self._route(dest)
            seq = self._queue(msg_type, body, dest, hl, priority, now, lk)
            if seq is not None:
                self._expect(dest, 1, seq, now)
        if seq is None:
            return False
        self.c[C.APP_TX] += 1
        return True

    def app_upstream(self, msg_type, fields, priority=GOSSIP):
        """Port.send_upstream: a unicast to best_gateway(), or a broadcast without one."""
        gw = self.best_gateway()
        if not self.app_send(gw, msg_type, fields, priority):
            return False
        self.c[C.UPSTREAM_TX] += 1
        if gw is None:
            self.c[C.UPSTREAM_NO_GATEWAY] += 1
        return True

    def _expect(self, peer_id, kind, val, now):
        best = 0
        for i in range(PENDING):
            if self.pend_id[i] is None:
                best = i
                break
            if diff(self.pend_t[i], self.pend_t[best]) < 0:
                best = i
        self.pend_id[best] = peer_id
        self.pend_kind[best] = kind
        self.pend_val[best] = val
        self.pend_t[best] = now

    def _answered(self, src, kind, val, now):
        for i in range(PENDING):
            if self.pend_id[i] == src and self.pend_kind[i] == kind and self.pend_val[i] == val:
                self.pend_id[i] = None
                s = self.peers.find(src)
                if kind == 0:
                    self.c[C.PONG_RX] += 1
                    if s >= 0:
                        self.peers.record_ping(s, diff(now, self.pend_t[i]), now)
                else:
                    self.c[C.ACK_RX] += 1
                    if s >= 0:
                        self.peers.record_ack(s, now)
                return

    def _expire_pending(self, now):
        for i in range(PENDING):
            pid = self.pend_id[i]
            if pid is not None and diff(now, self.pend_t[i]) > PENDING_TIMEOUT_MS:
                self.pend_id[i] = None
                self.c[C.TIMEOUTS] += 1
                s = self.peers.find(pid)
                if s >= 0:
                    self.peers.record_failure(s, now)

    def _can_send(self, data, prio):
        w = self.duty.wait_ms(
            airtime_ms(len(data), self.sf, self.bw, self.cr),
            self.clock.now(),
            data[1] in _BACKGROUND,
        )
        if w == NEVER:
            self._never = True
            return True
        return w == 0

    def next_frame(self):
        """The next frame the duty cycle allows, or None (drops never-sendable ones)."""
        while True:
            self._never = False
            data = self.txq.pop_ready(self._allow)
            if data is None:
                return None
            if not self._never:
                return data
            self.c[C.TX_NEVER] += 1

    def charge(self, data, now):
        """A frame went out at tick `now`: charge its time on air (whole ms, rounded up,
        from the frame's length and our modulation: exact, and no float to allocate)."""
        ms = airtime_ms(len(data), self.sf, self.bw, self.cr)
        self.duty.record(ms, now, data[1] in _BACKGROUND)
        self.tx_airtime_ms += ms
        self.c[C.TX] += 1

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
                await radio.asend(data)
                # charged from the end of the transmission: other tasks have read the
                # clock meanwhile, and a later start only keeps the airtime in the
                # window a little longer
                self.charge(data, self.clock.now())
            except Exception as e:  # noqa: BLE001 - the transmit task must survive
                self.c[C.TX_ERRORS] += 1
                print("tx error:", repr(e))
