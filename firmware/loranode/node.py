"""The mesh peer manager: tables, timers and tasks of one node, and its app hooks.

`Node` is the orchestrator; the work is done by three mixins that share its tables:
  * loranode.receive  -- the receive path (ban, own-id and flood checks, tags and
    attribution, records, fragments, relaying, delivery to the application);
  * loranode.pex      -- peer exchange (held records, PEX rounds and answers);
  * loranode.transmit -- routing of our own unicasts, the queue, duty-cycle charging,
    pending answers (pings, acks), the transmit task;
and loranode.flood holds the per-source flood limit (FloodTable).

Discovery:
  * ANNOUNCE: our signed record, broadcast with `hop_limit`, at the adaptive interval of
    loranode.announce. The record sequence grows once per boot (persisted in
    `state.bin`), so periodic announces repeat the same record: neighbours take them
    as liveness and relays do not re-flood them (loranode.receive).
  * PEX: loranode.pex.
  * Never auto-greet: hearing an unknown node sends nothing to it; only verified
    direct neighbours are asked (PEX) or pinged.
  * Gateways (record kind gateway) are flagged; `best_gateway()` prefers them by hops
    then score, and marks the chosen one NEXT_HOP (protected from eviction); the
    application sends toward it with `port.send_upstream` (loranode.transmit).

Options: the "node" section of the validated config (loranode.config holds its schema
and defaults); `options()` checks and completes a section given separately.

Frame sequence numbers survive reboots: `state.bin` reserves SEQ_BLOCK sequences at a
time and the node jumps to the next block at boot, so neighbours' replay windows
accept its first frames (docs/AUTH.md, replay windows).

Time: `Clock` gives integer monotonic ms scaled by the medium's speed factor (1 on a
board); tables get `ticks(mono)`, the DutyCycle gets mono itself.
"""

# FLOOD_COST and HOPS_UNKNOWN (noqa F401 below) stay importable from here for tests.
import gc
import struct

from loranode import bans as bn
from loranode.announce import AnnounceScheduler, rand
from loranode.app import App, Port
from loranode.clock import TICKS_PERIOD, ticks_diff, ticks_ms
from loranode.constants import REASSEMBLY
from loranode.flood import FLOOD_COST, FloodTable  # noqa: F401
from loranode.peers import KIND_GATEWAY, NEXT_HOP, PeerTable
from loranode.persist import read_file, write_atomic
from loranode.pex import HOPS_UNKNOWN, PEX_FIRST_MS, PEX_RESEND_MS, PeerExchange  # noqa: F401
from loranode.receive import ATTR_RING, REASM_TIMEOUT_MS, Receive
from loranode.score import Scorer
from loranode.seen import SeenRing
from loranode.transmit import PENDING, Transmit
from loranode.txqueue import CONTROL, GOSSIP, TxQueue
from lorawire import auth, regions
from lorawire import fragment as fg
from lorawire import messages as msg
from lorawire import record as rc
from lorawire.airtime import DutyCycle
from lorawire.replay import ReplayTable

SEQ_BLOCK = 256
AGE_OUT_MS = 3600000
GOSSIP_MAX_AGE_MS = 600000
BLOCKS_MAX_AGE_MS = 1200000

_STATE_MAGIC = b"LCS\x01"
_STATE_FMT = ">HI"
_COUNTERS = (
    "rx",
    "bad_frame",
    "dropped_banned",
    "own",
    "not_for_me",
    "accepted",
    "attributed",
    "drop_attributed",
    "sig_checks",
    "dup_record",
    "stale_record",
    "bad_record",
    "new_peers",
    "announce_rx",
    "announce_tx",
    "relayed",
    "pex_req_tx",
    "pex_req_rx",
    "pex_resp_tx",
    "pex_resp_rx",
    "pex_limited",
    "pex_unknown",
    "ping_tx",
    "pong_rx",
    "ack_rx",
    "timeouts",
    "app_rx",
    "app_tx",
    "upstream_tx",
    "upstream_no_gateway",
    "tx",
    "tx_never",
    "tx_errors",
    "points",
    "bans",
    "invalid_reported",
    "dropped_flood",
    "flood_points",
    "flood_evicted",
    "frag_rx",
    "frag_done",
    "frag_rejected",
    "frag_points",
)



def options(d):
    """Complete runtime options from a "node" section (None: the defaults).

    Boot and test time only: loranode.config holds the schema, so this imports it. A
    running node never calls it: Node takes the section from the validated config.
    """
    from loranode import config

    return config.node_options(d)


class Clock:
    """Monotonic integer ms since start, scaled by a speed factor (meshsim) -- never wraps."""

    def __init__(self, speed=1.0):
        self.set_speed(speed)
        self._last = ticks_ms()
        self._acc = 0  # in 1/1000 ms

    def set_speed(self, speed):
        self.milli = int(speed * 1000 + 0.5)
        if self.milli < 1:
            self.milli = 1

    def now(self):
        t = ticks_ms()
        d = ticks_diff(t, self._last)
        if d > 0:
            self._last = t
            self._acc += d * self.milli
        return self._acc // 1000

    def wall_ms(self, sim_ms):
        """Real ms that `sim_ms` of node time takes."""
        return sim_ms * 1000 // self.milli


class Node(Receive, PeerExchange, Transmit):
    """The orchestrator: tables, timers, tasks; receive, PEX and transmit are mixins."""

    def __init__(self, cfg, identity, radio, opts=None, app=None, name=None, out=None):
        if opts is None and "node" in cfg:
            opts = cfg["node"]  # checked by loranode.config.validate
        else:
            opts = options(opts)
        self.cfg = cfg
        self.opts = opts
        self.identity = identity
        self.id = identity.id
        self.radio = radio
        self.name = name or getattr(radio, "name", None)
        self.role = cfg.get("role", "node")
        self.kind = opts["kind"]
        self.out = out
        self.freq = cfg["frequency_hz"]
        self.sf = cfg["sf"]
        self.bw = cfg["bandwidth_hz"]
        self.cr = cfg["coding_rate"]
        from binascii import unhexlify

        self.net_key = unhexlify(cfg["network_key"])
        self.hop_limit = opts["hop_limit"]
        self.relay = opts["relay"]
        cap = cfg["capacities"]
        self.clock = Clock(getattr(radio, "speed", 1.0) or 1.0)
        self._mask = TICKS_PERIOD - 1
        self.state_dir = opts["state_dir"]
        w = cfg.get("score_weights") or {}
        scorer = Scorer(
            {
                "w_reliability": int(w.get("reliability", 40)),
                "w_link": int(w.get("performance", 30)),
                "w_behaviour": int(w.get("behaviour", 30)),
            }
        )
        n = cap["peers"]
        self.peers = PeerTable(n, scorer)
        self.rec_id = [None] * n  # owner id of the record held in the slot
        self.rec_seq = [0] * n
        self.rec_enc = [None] * n  # signed record bytes (answers PEX)
        self.rec_t = [0] * n  # node-clock ms when the record was learned
        self.rec_tx = [-PEX_RESEND_MS] * n  # node-clock ms we last broadcast it (PEX)
        self._row = (n + 7) // 8
        self.holds = bytearray(n * self._row)
        self.pex_answered = [0] * n  # node-clock ms of the last answer to that slot's peer
        self.bans = bn.BanTable(cap["bans"], path=self._path("bans.bin"))
        self.bans.load(now=self.ticks(0))
        self.seen = SeenRing(cap["seen"])
        self.replay = ReplayTable(n)
        self.link_keys = auth.LinkKeyCache(identity, cap["key_cache"], self._public_of)
        self.flood = FloodTable(n, opts["flood_rate_per_min"], opts["flood_burst"])
        nr = cap.get("reassembly", REASSEMBLY)
        self.reasm = fg.Reassembler(nr, REASM_TIMEOUT_MS, fg.max_message())
        self.frag_ok = bytearray(nr)  # every fragment so far in that slot was link-tagged
        self.gc_heap = None  # (free, alloc) right after the last `gc` command
        self.txq = TxQueue(cap["txqueue"], max_age_ms=(None, BLOCKS_MAX_AGE_MS, GOSSIP_MAX_AGE_MS))
        self.duty = DutyCycle(cfg["region"])
        amin = cfg["announce_interval_min_s"]
        self.announcer = AnnounceScheduler(amin, cfg["announce_interval_max_s"])
        self.pex_ms = (opts["pex_interval_s"] or amin) * 1000
        self.ping_ms = (opts["ping_interval_s"] or 4 * amin) * 1000
        self._pex_idle = self.pex_ms
        self.status_ms = opts["status_interval_s"] * 1000
        self.c = {}
        for k in _COUNTERS:
            self.c[k] = 0
        # pending pings / acks: (peer id, kind 0 ping / 1 ack, nonce or seq, sent ms)
        self.pend_id = [None] * PENDING
        self.pend_kind = bytearray(PENDING)
        self.pend_val = [0] * PENDING
        self.pend_t = [0] * PENDING
        self.attr_id = [None] * ATTR_RING
        self.attr_ok = bytearray(ATTR_RING)
        self._attr_pos = 0
        self.app = app if app is not None else App()
        self.port = Port(self)
        self.min_free = None
        self.last_new_s = None
        self.t0_sim = 0.0
        self._pex_rr = 0
        self._pex_target = None
        self._pex_burst = 0
        self._pex_news = 0
        self._pex_last_id = None
        self._pex_due = 0  # the timers' due times (node ms) are set by start()
        self._ping_due = 0
        self._age_due = 0
        self._status_due = 0
        self._pex_last = 0
        self._ping_rr = 0
        self._tx_airtime_ms = 0
        self.running = False
        self._load_state()
        self.record = self._make_record()

    # --- time and persistence --------------------------------------------------------

    def ticks(self, mono):
        return mono & self._mask

    def sim_s(self, mono):
        return round(self.t0_sim + mono / 1000, 3)

    def _path(self, name):
        d = self.opts["state_dir"]
        return name if d in ("", ".") else d + "/" + name

    def _load_state(self):
        data = read_file(self._path("state.bin"))
        fseq = None
        rseq = 0
        if data is not None and len(data) == 10 and data[:4] == _STATE_MAGIC:
            fseq, rseq = struct.unpack(_STATE_FMT, data[4:])
        if fseq is None:
            b = rand(1 << 16)
            fseq = b
        self.seq = fseq & 0xFFFF
        self.rec_seq_own = (rseq + 1) & 0xFFFFFFFF
        self._seq_limit = (self.seq + SEQ_BLOCK) & 0xFFFF
        self._save_state()

    def _save_state(self):
        write_atomic(
            self._path("state.bin"),
            _STATE_MAGIC + struct.pack(_STATE_FMT, self._seq_limit, self.rec_seq_own),
        )

    def next_seq(self):
        s = self.seq
        self.seq = (s + 1) & 0xFFFF
        if self.seq == self._seq_limit:
            self._seq_limit = (self.seq + SEQ_BLOCK) & 0xFFFF
            self._save_state()
        return s

    def _make_record(self):
        services = rc.SVC_PEX | (rc.SVC_RELAY if self.relay else 0)
        if self.role == "bridge":
            services |= rc.SVC_BRIDGE
        fields = {
            "seq": self.rec_seq_own,
            "kind": rc.KIND_NAMES.index(self.kind),
            "services": services,
            "mesh": (regions.REGION_NAMES.index(self.cfg["region"]), self.sf),
        }
        return rc.encode_record(fields, self.identity)

    # --- peer helpers --------------------------------------------------------------------

    def _public_of(self, node_id):
        s = self.peers.find(node_id)
        if s < 0:
            return None
        return self.peers.keys[s]

    def _held(self, s, node_id):
        return s >= 0 and self.rec_id[s] == node_id

    def neighbours(self, t):
        """Verified direct neighbours heard recently (slots)."""
        pt = self.peers
        out = []
        for s in pt.slots():
            if pt.hops[s] == 0 and self.rec_id[s] == pt.ids[s] and pt.age(s, t) < pt.recent_ms:
                out.append(s)
        return out

    def best_gateway(self):
        pt = self.peers
        best = -1
        for s in pt.slots():
            if pt.kind[s] != KIND_GATEWAY or self.rec_id[s] != pt.ids[s]:
                continue
            if best < 0 or (pt.hops[s], -pt.score[s]) < (pt.hops[best], -pt.score[best]):
                best = s
        for s in pt.slots():
            if s == best:
                pt.set_flag(s, NEXT_HOP)
            elif pt.flags[s] & NEXT_HOP:
                pt.clear_flag(s, NEXT_HOP)
        return None if best < 0 else pt.ids[best]

    def peer_list(self):
        pt = self.peers
        return [(pt.ids[s], pt.kind[s], pt.hops[s], pt.score[s]) for s in pt.slots()]

    def airtime(self, mono):
        d = self.duty
        return {
            "tx_ms": self._tx_airtime_ms,
            "used_ms": d.used_ms(self.freq, mono),
            "budget_ms": d.budget_ms(self.freq),
            "bg_used_ms": d.used_ms(self.freq, mono, True),
            "bg_budget_ms": d.budget_ms(self.freq, True),
            "announce_interval_s": self.announcer.last_interval // 1000,
        }

    # --- discovery rounds -----------------------------------------------------------------

    def announce(self, mono):
        body = self.record  # an ANNOUNCE body is the record map: its encoding is the record
        if self._queue(msg.ANNOUNCE, body, None, self.hop_limit, GOSSIP, mono) is not None:
            self.c["announce_tx"] += 1
        t = mono & self._mask
        bg_used = self.duty.used_ms(self.freq, mono, True)
        self.announcer.schedule(
            mono, len(self.neighbours(t)), bg_used, self.duty.budget_ms(self.freq, True)
        )

    def ping_round(self, mono):
        nb = self.neighbours(mono & self._mask)
        if not nb:
            return False
        self._ping_rr = (self._ping_rr + 1) % len(nb)
        pid = self.peers.ids[nb[self._ping_rr]]
        nonce = rand(1 << 24)
        if self._queue(msg.PING, msg.encode_ping(nonce), pid, 0, CONTROL, mono) is not None:
            self._expect(pid, 0, nonce, mono)
            self.c["ping_tx"] += 1
        return True

    # --- main loop ---------------------------------------------------------------------

    def status_line(self):
        from loranode import status

        return status.line(self)

    def emit_status(self):
        from loranode import status

        status.emit(self, self.out)

    def sample_heap(self):
        try:
            free = gc.mem_free()
        except AttributeError:
            return
        if self.min_free is None or free < self.min_free:
            self.min_free = free

    async def rx_task(self, sleep_ms):
        radio = self.radio
        while self.running:
            pkt = await radio.arecv(200)
            if pkt is None:
                continue
            # arecv returns without suspending while frames are waiting: yield once per
            # frame, or a flood would starve announces, pings, transmits and stdin
            await sleep_ms(0)
            try:
                self.handle_frame(pkt[0], pkt[1], pkt[2])
            except Exception as e:  # a bug in one frame's handling must not stop the node
                self.c["rx_errors"] = self.c.get("rx_errors", 0) + 1
                print("rx error:", repr(e))
            self.sample_heap()

    def tick(self, mono):
        """Timers: announce, PEX, ping, pending timeouts, queue expiry, ban save, ageing."""
        t = mono & self._mask
        if self.announcer.is_due(mono):
            self.announce(mono)
        if mono >= self._pex_due:
            self.pex_tick(mono)
        if mono >= self._ping_due:
            self.ping_round(mono)
            self._ping_due = mono + self.ping_ms * 3 // 4 + rand(self.ping_ms // 2 + 1)
        self._expire_pending(mono, t)
        self.txq.expire(mono)
        self.reasm.expire(mono)
        self.bans.maybe_save(t)
        if mono >= self._age_due:
            self.peers.age_out(t)
            self._age_due = mono + AGE_OUT_MS
        if self.status_ms and mono >= self._status_due:
            self.emit_status()
            self._status_due = mono + self.status_ms
        try:
            self.app.tick(mono)
        except Exception as e:
            print("app tick error:", repr(e))

    def start(self):
        self.clock.set_speed(getattr(self.radio, "speed", 1.0) or 1.0)
        self.t0_sim = getattr(self.radio, "sim_time", 0.0) or 0.0
        mono = self.clock.now()
        self.announcer.start(mono)
        self._pex_due = mono + PEX_FIRST_MS + rand(PEX_FIRST_MS)
        self._pex_last = mono
        self._ping_due = mono + self.ping_ms
        self._age_due = mono + AGE_OUT_MS
        self._status_due = mono + (self.status_ms or 0)
        self.app.attach(self.port)
        self.running = True

    async def timer_task(self, sleep_ms):
        while self.running:
            self.tick(self.clock.now())
            await sleep_ms(50)

    async def stdin_task(self, sleep_ms):
        """Commands on stdin, one per line: `status` prints a status line, `quit` stops."""
        import sys

        try:
            import select

            p = select.poll()
            p.register(sys.stdin, select.POLLIN)
        except (ImportError, AttributeError, OSError, TypeError, ValueError):
            return
        while self.running:
            if not p.poll(0):
                await sleep_ms(50)
                continue
            cmd = sys.stdin.readline()
            if not cmd:
                return  # EOF: nobody will talk to us any more
            try:
                self.command(cmd.strip())
            except Exception as e:  # a command that fails (MemoryError) must not end stdin
                self.c["rx_errors"] = self.c.get("rx_errors", 0) + 1
                print("command error:", repr(e))

    def command(self, cmd):
        """One stdin command: `status`, `gc` (collect, then sample the heap), `quit`."""
        if cmd == "status":
            self.emit_status()
        elif cmd == "quit":
            self.running = False
        elif cmd == "gc":
            gc.collect()
            self.sample_heap()
            try:
                self.gc_heap = (gc.mem_free(), gc.mem_alloc())
            except AttributeError:
                pass

    async def run(self):
        """Run until `running` turns False (stdin `quit`) or the task is cancelled."""
        import asyncio

        sleep_ms = getattr(asyncio, "sleep_ms", None)
        if sleep_ms is None:

            async def sleep_ms(ms):
                await asyncio.sleep(ms / 1000)

        self.start()
        tasks = [
            asyncio.create_task(self.rx_task(sleep_ms)),
            asyncio.create_task(self.tx_task(sleep_ms)),
            asyncio.create_task(self.timer_task(sleep_ms)),
        ]
        if self.opts["stdin"]:
            tasks.append(asyncio.create_task(self.stdin_task(sleep_ms)))
        try:
            while self.running:
                await sleep_ms(100)
        finally:
            self.running = False
            for tk in tasks:
                tk.cancel()
            self.shutdown()

    def shutdown(self):
        """Save what must survive a reboot (bans); idempotent."""
        try:
            if self.bans.dirty:
                self.bans.save(now=self.clock.now() & self._mask)
        except OSError:
            pass
