"""The mesh peer manager: tables, timers and tasks of one node, and its app hooks.

`Node` owns the tables and the main loop; the work is done by three mixins that share
them, each setting up its own state (`_init_<mixin>`, called once from `Node.__init__`):
  * loranode.receive  -- the receive path (bans, own id, tags and attribution, the
    per-source flood limit, records, fragments, relaying, delivery to the application);
  * loranode.pex      -- peer exchange (PEX rounds and answers over the records the
    peer table holds);
  * loranode.transmit -- routing of our own unicasts, the queue, duty-cycle charging,
    pending answers (pings, acks), the transmit task.
Mixins rather than helper objects: no extra indirection per call, and on a board every
extra object and bound method costs heap.

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

Config: the dict the deploy tool validated and wrote (tools/deploy/fwconfig.py holds the
schema; a board only reads it): radio settings, the channel's duty-cycle numbers
("duty"), capacities, score weights, announce bounds and the "node" section of runtime
options.

Frame sequence numbers survive reboots: `state.bin` reserves SEQ_BLOCK sequences at a
time and the node jumps to the next block at boot, so neighbours' replay windows
accept its first frames (docs/AUTH.md, replay windows).

Time: every time here is a node tick from `clock.now()` (loranode.clock: it wraps every
2**30 ms by design, and ticks are compared with `diff` only), so a node that runs for
months keeps every stamp a small int. Timers are due ticks in `due`.
"""

import gc
import struct

from loranode import counters as C
from loranode.announce import AnnounceScheduler, rand
from loranode.app import App, Port
from loranode.bans import BanTable
from loranode.clock import NodeClock, add, diff
from loranode.flood import FloodTable
from loranode.keycache import KeyCache
from loranode.peers import KIND_GATEWAY, NEXT_HOP, PeerTable
from loranode.persist import read_file, write_atomic
from loranode.pex import PeerExchange
from loranode.receive import Receive
from loranode.score import Scorer
from loranode.seen import SeenRing
from loranode.transmit import Transmit
from loranode.txqueue import CONTROL, GOSSIP, TxQueue
from lorawire import messages as msg
from lorawire import record as rc
from lorawire.airtime import Budget

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int


SEQ_BLOCK = const(256)
AGE_OUT_MS = const(3600000)
GOSSIP_MAX_AGE_MS = const(600000)
BLOCKS_MAX_AGE_MS = const(1200000)
TIMER_MS = const(50)  # the timer task's period (real ms)

# the node's timers: indices into Node.due
_PEX = const(0)
_PING = const(1)
_AGE = const(2)
_STATUS = const(3)

_STATE_MAGIC = b"LCS\x01"
_STATE_FMT = ">HI"


class Node(Receive, PeerExchange, Transmit):
    """The orchestrator: tables, timers, tasks; receive, PEX and transmit are mixins."""

    def __init__(self, cfg, identity, radio, app=None, name=None, out=None, clock=None):
        from binascii import unhexlify

        # nothing keeps the parsed config (about 1 KB on a board): what is used after
        # start-up is copied out here
        opts = cfg["node"]
        self.state_dir = opts["state_dir"]
        self.stdin = opts["stdin"]
        self.region_index = cfg["region_index"]
        self.identity = identity
        self.id = identity.id
        self.radio = radio
        self.name = name or getattr(radio, "name", None)
        self.role = cfg["role"]
        self.kind = opts["kind"]
        self.out = out
        self.freq = cfg["frequency_hz"]
        self.sf = cfg["sf"]
        self.bw = cfg["bandwidth_hz"]
        self.cr = cfg["coding_rate"]
        self.net_key = unhexlify(cfg["network_key"])
        self.hop_limit = opts["hop_limit"]
        self.relay = opts["relay"]
        self.clock = clock or NodeClock(getattr(radio, "speed", 1) or 1)
        cap = cfg["capacities"]
        w = cfg["score_weights"]
        n = cap["peers"]
        self.peers = PeerTable(
            n,
            Scorer(
                {
                    "w_reliability": w["reliability"],
                    "w_link": w["performance"],
                    "w_behaviour": w["behaviour"],
                }
            ),
        )
        now = self.clock.now()
        self.bans = BanTable(cap["bans"], path=self._path("bans.bin"))
        self.bans.load(now=now)
        self.seen = SeenRing(cap["seen"])
        self.link_keys = KeyCache(cap["key_cache"])
        self.flood = FloodTable(n, opts["flood_rate_per_min"], opts["flood_burst"])
        self.txq = TxQueue(cap["txqueue"], max_age_ms=(None, BLOCKS_MAX_AGE_MS, GOSSIP_MAX_AGE_MS))
        d = cfg["duty"]
        self.duty = Budget(d["budget_ms"], d["window_ms"], d["dwell_ms"])
        amin = cfg["announce_interval_min_s"]
        self.announcer = AnnounceScheduler(amin, cfg["announce_interval_max_s"])
        self.pex_ms = (opts["pex_interval_s"] or amin) * 1000
        self.ping_ms = (opts["ping_interval_s"] or 4 * amin) * 1000
        self.status_ms = opts["status_interval_s"] * 1000
        self.due = [0, 0, 0, 0]  # _PEX, _PING, _AGE, _STATUS: set by start()
        self.c = [0] * C.COUNT
        self.app = app if app is not None else App()
        self.port = Port(self)
        self.min_free = None
        self.gc_heap = None  # (free, alloc) right after the last stdin `gc`
        self.last_new = None  # tick when the latest new peer was verified
        self.up_s = 0  # whole seconds of uptime folded in from _up_from (hourly)
        self._up_from = now
        self.t0_sim = 0.0  # the medium's clock at start-up (simulation)
        self.running = False
        self._ping_rr = 0
        self._init_receive(cap["reassembly"])
        self._init_pex(n)
        self._init_transmit()
        self._load_state()
        self.record = self._make_record()

    # --- persistence ---------------------------------------------------------------

    def _path(self, name):
        d = self.state_dir
        return name if d in ("", ".") else d + "/" + name

    def _load_state(self):
        data = read_file(self._path("state.bin"))
        seq = None
        rseq = 0
        if data is not None and len(data) == 10 and data[:4] == _STATE_MAGIC:
            seq, rseq = struct.unpack(_STATE_FMT, data[4:])
        self.seq = rand(1 << 16) if seq is None else seq
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
            "mesh": (self.region_index, self.sf),
        }
        return rc.encode_record(fields, self.identity)

    # --- peers ---------------------------------------------------------------------

    def neighbours(self, now):
        """Verified direct neighbours heard recently (slots)."""
        pt = self.peers
        out = []
        for s in pt.slots():
            if pt.hops[s] == 0 and pt.rec[s] is not None and pt.age(s, now) < pt.recent_ms:
                out.append(s)
        return out

    def best_gateway(self):
        pt = self.peers
        best = -1
        for s in pt.slots():
            if pt.kind[s] != KIND_GATEWAY or pt.rec[s] is None:
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

    def forget(self, node_id):
        """Drop everything held about node_id: peer slot (and its record), link key,
        flood bucket. A banned node is forgotten; so is one the gateway bans."""
        self.peers.remove(node_id)
        self.link_keys.remove(node_id)
        self.flood.forget(node_id)

    # --- timers and tasks ------------------------------------------------------------

    def announce(self, now):
        # an ANNOUNCE body is the record map: its encoding is the record itself
        if self._queue(msg.ANNOUNCE, self.record, None, self.hop_limit, GOSSIP, now) is not None:
            self.c[C.ANNOUNCE_TX] += 1
        d = self.duty
        self.announcer.schedule(
            now, len(self.neighbours(now)), d.used_ms(now, True), d.budget_ms(True)
        )

    def ping_round(self, now):
        nb = self.neighbours(now)
        if not nb:
            return False
        self._ping_rr = (self._ping_rr + 1) % len(nb)
        pid = self.peers.ids[nb[self._ping_rr]]
        nonce = rand(1 << 24)
        if self._queue(msg.PING, msg.encode_ping(nonce), pid, 0, CONTROL, now) is not None:
            self._expect(pid, 0, nonce, now)
            self.c[C.PING_TX] += 1
        return True

    def tick(self, now):
        """Timers: announce, PEX, ping, pending timeouts, queue expiry, ban save, ageing."""
        due = self.due
        if self.announcer.is_due(now):
            self.announce(now)
        if diff(now, due[_PEX]) >= 0:
            self.pex_tick(now)
        if diff(now, due[_PING]) >= 0:
            self.ping_round(now)
            due[_PING] = add(now, self.ping_ms * 3 // 4 + rand(self.ping_ms // 2 + 1))
        self._expire_pending(now)
        self.txq.expire(now)
        self.reasm.expire(now)
        self.bans.maybe_save(now)
        if diff(now, due[_AGE]) >= 0:
            self.peers.age_out(now)
            due[_AGE] = add(now, AGE_OUT_MS)
            up = diff(now, self._up_from) // 1000  # ticks wrap: keep uptime in seconds
            self.up_s += up
            self._up_from = add(self._up_from, up * 1000)
        if self.status_ms and diff(now, due[_STATUS]) >= 0:
            self.emit_status()
            due[_STATUS] = add(now, self.status_ms)
        try:
            self.app.tick(now)
        except Exception as e:
            self.c[C.APP_ERRORS] += 1
            print("app tick error:", repr(e))

    def up_seconds(self, now):
        return self.up_s + diff(now, self._up_from) / 1000

    def start(self):
        now = self.clock.now()
        self.up_s = 0
        self._up_from = now
        self.t0_sim = getattr(self.radio, "sim_time", 0.0) or 0.0
        self.announcer.start(now)
        due = self.due
        due[_PEX] = add(now, self.pex_first_ms())
        due[_PING] = add(now, self.ping_ms)
        due[_AGE] = add(now, AGE_OUT_MS)
        due[_STATUS] = add(now, self.status_ms)
        self._pex_last = now
        self.app.attach(self.port)
        self.running = True

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
                self.c[C.RX_ERRORS] += 1
                print("rx error:", repr(e))
            self.sample_heap()

    async def timer_task(self, sleep_ms):
        while self.running:
            self.tick(self.clock.now())
            await sleep_ms(TIMER_MS)

    async def stdin_task(self, sleep_ms):
        """Commands on stdin, one per line: `status`, `gc`, `quit` (see `command`)."""
        import sys

        try:
            import select

            p = select.poll()
            p.register(sys.stdin, select.POLLIN)
        except (ImportError, AttributeError, OSError, TypeError, ValueError):
            return
        while self.running:
            if not p.poll(0):
                await sleep_ms(TIMER_MS)
                continue
            cmd = sys.stdin.readline()
            if not cmd:
                return  # EOF: nobody will talk to us any more
            try:
                self.command(cmd.strip())
            except Exception as e:  # a command that fails (MemoryError) must not end stdin
                self.c[C.RX_ERRORS] += 1
                print("command error:", repr(e))

    def command(self, cmd):
        """One stdin command: `status` prints a status line, `gc` collects and then
        samples the heap (reported by the next status line), `quit` stops."""
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

    async def run(self, extra=None):
        """Run until `running` turns False (stdin `quit`) or the task is cancelled.

        `extra`: one more coroutine function taking sleep_ms (the bridge's UART task),
        started with the node's own tasks."""
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
        if self.stdin:
            tasks.append(asyncio.create_task(self.stdin_task(sleep_ms)))
        if extra is not None:
            tasks.append(asyncio.create_task(extra(sleep_ms)))
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
                self.bans.save(now=self.clock.now())
        except OSError:
            pass
