"""The link-protocol session with a bridge board, and the shaper for frames going to the mesh.

`MeshLink` sits on a `serialbridge.SerialLink` (it installs itself as the link's
`on_packet`/`on_state`; a previous `on_state` keeps being called):

* On every "connected" it sends HELLO and repeats it every `hello_interval` s until the
  board's HELLO arrives. A HELLO with role "bridge" and our link version makes the link
  *ready*; any other HELLO is counted (`bad_hello`) and the link stays not ready.
* Every board HELLO (also an unsolicited one: a board on a GPIO UART can reboot without
  the port going away) re-pushes the whole mesh ban list and asks for the radio settings
  (CONFIG_GET sf / bandwidth_hz / coding_rate) used for airtime estimates.
* `send_frame(frame, priority)` sends FRAME_DOWN with a 16-bit handle and waits for the
  TX_DONE or TX_DEFERRED with that handle. At most `inflight_max` handles are
  outstanding; no answer within `tx_timeout` s, or a disconnect, counts the frame as lost.
  TX_DEFERRED ends the handle: the board did not keep the frame, the sender may offer it
  again after `wait_ms` (that is how MeshShaper treats it).
* Mesh bans: `ban(node_id, seconds)` / `unban(node_id)` update a bounded list
  (`max_bans`) and push BAN/UNBAN to the board now (if ready) and again after every HELLO.
  `seconds=None` is a permanent ban, sent as link.BAN_PERMANENT_SECONDS (u32 max: a board that
  does not special-case it still bans for 136 years). A full list evicts an expired ban,
  else the one expiring soonest, else the oldest permanent one (`bans_evicted`).
  FRAME_UP from a banned source is also dropped here (`banned_up`), in case the board's
  own table (16 slots on a board) is smaller than the gateway's list.
* Budget: RADIO_STATS gives `airtime_used_ms`/`airtime_budget_ms`, TX_DONE adds its
  airtime to the used figure until the next stats, TX_DEFERRED sets `budget_returns_at`
  (monotonic seconds) = now + wait_ms.

`MeshShaper` owns the queue of frames going DOWN (see its docstring for the policy).

Priorities (smaller = more urgent) follow loragate.session: PRIO_CONTROL 0, PRIO_BLOCK 1,
PRIO_TX 2, plus PRIO_GOSSIP 3 (announces, peer exchange, INV). The board's transmit queue
knows three (control, blocks, gossip); BOARD_PRIORITY maps ours onto them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from loragate.ratelimit import TokenBucket
from loragate.serialbridge import CONNECTED, SerialLink
from lorawire import airtime, link, uart
from lorawire import frame as wireframe
from lorawire.errors import DecodeError

log = logging.getLogger(__name__)

PRIO_CONTROL = 0
PRIO_BLOCK = 1
PRIO_TX = 2
PRIO_GOSSIP = 3
PRIORITIES = (PRIO_CONTROL, PRIO_BLOCK, PRIO_TX, PRIO_GOSSIP)
PRIORITY_NAMES = {
    PRIO_CONTROL: "control",
    PRIO_BLOCK: "block",
    PRIO_TX: "tx",
    PRIO_GOSSIP: "gossip",
}
# Board txqueue priorities: CONTROL 0, BLOCKS 1, GOSSIP 2 (transactions travel as gossip).
BOARD_PRIORITY = {PRIO_CONTROL: 0, PRIO_BLOCK: 1, PRIO_TX: 2, PRIO_GOSSIP: 2}

ROLE_BRIDGE = "bridge"
ROLE_GATEWAY = "gateway"
GATEWAY_FIRMWARE = "loragate-0.1"

HANDLES = 1 << 16
INFLIGHT_MAX = 32
TX_TIMEOUT_S = 10.0
HELLO_INTERVAL_S = 1.0
MAX_MESH_BANS = 256
RADIO_KEYS = ("sf", "bandwidth_hz", "coding_rate")
# Until the board tells its settings, estimate airtime as SF9 / 125 kHz / 4/5.
DEFAULT_RADIO = {"sf": 9, "bandwidth_hz": 125000, "coding_rate": 5}

# TxResult.status
DONE = "done"
DEFERRED = "deferred"
LOST = "lost"
REJECTED = "rejected"  # never reached the board: link down, handle table full, bad frame
# TxResult.detail of the REJECTED results worth retrying later (the frame itself is fine)
NOT_READY = "link not ready"
LINK_DOWN = "link down"
INFLIGHT_FULL = "in-flight table full"
RETRYABLE = frozenset({NOT_READY, LINK_DOWN, INFLIGHT_FULL})


@dataclass(frozen=True)
class TxResult:
    status: str
    handle: int = -1
    airtime_ms: int = 0
    reason: int = 0  # link.DEFER_* for DEFERRED
    wait_ms: int = 0  # for DEFERRED; airtime.NEVER (-1) = can never be sent
    detail: str = ""


FrameCallback = Callable[[bytes, int, float], None]
DictCallback = Callable[[dict[str, Any]], None]


class MeshLink:
    """Link-protocol session over a SerialLink (see module docstring)."""

    def __init__(
        self,
        serial_link: SerialLink,
        *,
        node_id: bytes = bytes(8),
        firmware: str = GATEWAY_FIRMWARE,
        on_frame: FrameCallback | None = None,
        on_stats: DictCallback | None = None,
        on_hello: DictCallback | None = None,
        tx_timeout: float = TX_TIMEOUT_S,
        inflight_max: int = INFLIGHT_MAX,
        hello_interval: float = HELLO_INTERVAL_S,
        max_bans: int = MAX_MESH_BANS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(node_id) != 8:
            raise ValueError("node_id must be 8 bytes")
        if not 1 <= inflight_max < HANDLES:
            raise ValueError("inflight_max must be 1..65535")
        if max_bans < 1:
            raise ValueError("max_bans must be >= 1")
        self.serial = serial_link
        self.node_id = bytes(node_id)
        self.firmware = firmware
        self.on_frame = on_frame
        self.on_stats = on_stats
        self.on_hello = on_hello
        self.tx_timeout = tx_timeout
        self.inflight_max = inflight_max
        self.hello_interval = hello_interval
        self.max_bans = max_bans
        self.clock = clock
        self._chained_state = serial_link.on_state
        serial_link.on_packet = self._on_packet
        serial_link.on_state = self._on_state
        self.ready = False
        self.board: dict[str, Any] | None = None
        self.radio: dict[str, int] = dict(DEFAULT_RADIO)
        self.stats: dict[str, int] = {}
        self.stats_at: float | None = None
        self.airtime_used_ms: int | None = None
        self.airtime_budget_ms: int | None = None
        self.budget_returns_at: float | None = None
        self.counters: Counter[str] = Counter()
        self.bans_evicted = 0
        self._bans: OrderedDict[bytes, float | None] = OrderedDict()
        self._pending: OrderedDict[bytes, bool] = OrderedDict()  # id -> True ban / False unban
        self._inflight: dict[int, asyncio.Future[TxResult]] = {}
        self._next_handle = 0
        self._changed = asyncio.Event()
        self._pending_ev = asyncio.Event()
        self._hello_ev = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the serial link (if not yet) and this session's tasks."""
        if self._started:
            raise RuntimeError("MeshLink already started")
        self._started = True
        self._tasks.append(asyncio.create_task(self._hello_loop(), name="meshlink-hello"))
        self._tasks.append(asyncio.create_task(self._ban_pusher(), name="meshlink-bans"))
        if not self.serial.started:
            await self.serial.start()

    async def close(self) -> None:
        """Stop this session's tasks, fail in-flight sends as lost, close the serial link."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._fail_inflight("closed")
        self.ready = False
        await self.serial.close()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait for the board's HELLO (asyncio.TimeoutError after `timeout` s)."""

        async def until_ready() -> None:
            while not self.ready:
                await self.changed()

        await asyncio.wait_for(until_ready(), timeout)

    async def changed(self) -> None:
        """Wait for the next state change (ready, stats, budget, tx result)."""
        ev = self._changed
        await ev.wait()

    def _notify(self) -> None:
        ev = self._changed
        self._changed = asyncio.Event()
        ev.set()

    # -- sending --------------------------------------------------------------------------

    def airtime_estimate_ms(self, frame_len: int) -> float:
        n = min(frame_len, airtime.MAX_PAYLOAD)
        for r in (self.radio, DEFAULT_RADIO):
            try:
                return float(
                    airtime.time_on_air_ms(n, r["sf"], r["bandwidth_hz"], r["coding_rate"])
                )
            except ValueError:
                continue  # the board reported settings the formula rejects: be conservative
        raise AssertionError("DEFAULT_RADIO is valid")

    def snapshot(self) -> dict[str, Any]:
        """Everything worth exporting as metrics or showing in the live view."""
        return {
            "state": self.serial.state,
            "ready": self.ready,
            "board": dict(self.board) if self.board else None,
            "radio": dict(self.radio),
            "budget": self.budget(),
            "radio_stats": dict(self.stats),
            "counters": dict(self.counters),
            "serial": self.serial.counters(),
            "bans": len(self._bans),
            "bans_evicted": self.bans_evicted,
            "inflight": len(self._inflight),
        }

    def budget(self) -> dict[str, Any]:
        """The latest duty-cycle figures for shaping and the live view."""
        return {
            "airtime_used_ms": self.airtime_used_ms,
            "airtime_budget_ms": self.airtime_budget_ms,
            "budget_returns_at": self.budget_returns_at,
            "stats_at": self.stats_at,
        }

    def budget_wait(self, airtime_ms: float) -> float | None:
        """Seconds to wait before a frame of `airtime_ms` fits: 0 = now; None = the last
        stats say no room and nothing says when it returns (wait for stats or probe)."""
        now = self.clock()
        if self.budget_returns_at is not None:
            if now < self.budget_returns_at:
                return self.budget_returns_at - now
            self.budget_returns_at = None
        used, budget = self.airtime_used_ms, self.airtime_budget_ms
        if used is None or budget is None:
            return 0.0
        if used + airtime_ms <= budget:
            return 0.0
        return None

    def _new_handle(self) -> int:
        for _ in range(HANDLES):
            h = self._next_handle
            self._next_handle = (h + 1) % HANDLES
            if h not in self._inflight:
                return h
        raise RuntimeError("no free handle")  # unreachable: inflight_max < HANDLES

    async def send_frame(self, frame: bytes, priority: int = PRIO_GOSSIP) -> TxResult:
        """Hand one frame to the board and wait for its fate (see module docstring)."""
        if priority not in BOARD_PRIORITY:
            raise ValueError(f"priority must be one of {PRIORITIES!r}")
        if not self.ready:
            self.counters["rejected_not_ready"] += 1
            return TxResult(REJECTED, detail=NOT_READY)
        if len(self._inflight) >= self.inflight_max:
            self.counters["rejected_inflight_full"] += 1
            return TxResult(REJECTED, detail=INFLIGHT_FULL)
        handle = self._new_handle()
        try:
            board_prio = BOARD_PRIORITY[priority]
            payload = link.encode(
                link.FRAME_DOWN, frame=bytes(frame), priority=board_prio, handle=handle
            )
            if len(payload) > uart.MAX_PACKET - 2:
                raise ValueError("frame too large for the UART link")
        except ValueError as exc:
            self.counters["rejected_bad_frame"] += 1
            return TxResult(REJECTED, detail=str(exc))
        fut: asyncio.Future[TxResult] = asyncio.get_running_loop().create_future()
        self._inflight[handle] = fut
        try:
            if not await self.serial.send(payload):
                self.counters["rejected_not_ready"] += 1
                return TxResult(REJECTED, handle, detail=LINK_DOWN)
            self.counters["frames_down"] += 1
            try:
                return await asyncio.wait_for(asyncio.shield(fut), self.tx_timeout)
            except TimeoutError:
                self.counters["lost"] += 1
                return TxResult(LOST, handle, detail=f"no answer in {self.tx_timeout:.1f} s")
        finally:
            self._inflight.pop(handle, None)
            if not fut.done():
                fut.cancel()

    def _fail_inflight(self, why: str) -> None:
        for handle, fut in list(self._inflight.items()):
            if not fut.done():
                self.counters["lost"] += 1
                fut.set_result(TxResult(LOST, handle, detail=why))
        self._inflight.clear()

    # -- bans -----------------------------------------------------------------------------

    def ban(self, node_id: bytes, seconds: int | None) -> None:
        """Ban a mesh node at the bridge radio for `seconds` (None = permanent)."""
        node_id = bytes(node_id)
        if len(node_id) != 8:
            raise ValueError("node_id must be 8 bytes")
        if seconds is not None and seconds <= 0:
            raise ValueError("seconds must be > 0 or None (permanent)")
        now = self.clock()
        self._drop_expired_bans(now)
        if node_id not in self._bans and len(self._bans) >= self.max_bans:
            self._evict_ban()
        self._bans[node_id] = None if seconds is None else now + seconds
        self._bans.move_to_end(node_id)
        self._queue_push(node_id, True)

    def unban(self, node_id: bytes) -> None:
        node_id = bytes(node_id)
        self._bans.pop(node_id, None)
        self._queue_push(node_id, False)

    def set_bans(self, bans: dict[bytes, int | None]) -> None:
        """Replace the whole list (e.g. from the BanManager at start): id -> seconds left."""
        for node_id in list(self._bans):
            if node_id not in bans:
                self.unban(node_id)
        for node_id, seconds in bans.items():
            self.ban(node_id, seconds)

    def bans(self) -> dict[bytes, float | None]:
        """Current mesh bans: id -> seconds left (None = permanent)."""
        now = self.clock()
        self._drop_expired_bans(now)
        return {k: (None if v is None else v - now) for k, v in self._bans.items()}

    def is_banned(self, node_id: bytes) -> bool:
        exp = self._bans.get(bytes(node_id), 0.0)
        return exp is None or exp > self.clock()

    def _drop_expired_bans(self, now: float) -> None:
        for node_id, exp in list(self._bans.items()):
            if exp is not None and exp <= now:
                del self._bans[node_id]

    def _evict_ban(self) -> None:
        timed = [(exp, k) for k, exp in self._bans.items() if exp is not None]
        victim = min(timed)[1] if timed else next(iter(self._bans))
        del self._bans[victim]
        self.bans_evicted += 1
        self._queue_push(victim, False)

    def _queue_push(self, node_id: bytes, ban: bool) -> None:
        self._pending[node_id] = ban
        self._pending.move_to_end(node_id)
        while len(self._pending) > 2 * self.max_bans:
            self._pending.popitem(last=False)
            self.counters["ban_push_dropped"] += 1
        self._pending_ev.set()

    async def _ban_pusher(self) -> None:
        while True:
            await self._pending_ev.wait()
            self._pending_ev.clear()
            while self._pending and self.ready:
                node_id, is_ban = self._pending.popitem(last=False)
                if is_ban:
                    exp = self._bans.get(node_id, 0.0)
                    now = self.clock()
                    if exp is not None and exp <= now:
                        continue  # expired (or unbanned) meanwhile
                    secs = (
                        link.BAN_PERMANENT_SECONDS
                        if exp is None
                        else min(link.BAN_PERMANENT_SECONDS - 1, max(1, math.ceil(exp - now)))
                    )
                    payload = link.encode(link.BAN, node_id=node_id, seconds=secs)
                else:
                    payload = link.encode(link.UNBAN, node_id=node_id)
                if not await self.serial.send(payload):
                    self._pending[node_id] = is_ban  # link dropped: the next HELLO re-pushes
                    break
                self.counters["bans_pushed" if is_ban else "unbans_pushed"] += 1

    def _push_all_bans(self) -> None:
        self._drop_expired_bans(self.clock())
        for node_id in self._bans:
            self._queue_push(node_id, True)

    # -- receiving ------------------------------------------------------------------------

    def _send_control(self, payload: bytes) -> None:
        if not self.serial.send_nowait(payload):
            self.counters["control_dropped"] += 1

    def _hello_payload(self) -> bytes:
        return link.encode(
            link.HELLO,
            link_version=link.LINK_VERSION,
            wire_version=wireframe.VERSION,
            firmware=self.firmware,
            node_id=self.node_id,
            role=ROLE_GATEWAY,
        )

    async def _hello_loop(self) -> None:
        while True:
            await self._hello_ev.wait()
            while self.serial.connected and not self.ready:
                self._send_control(self._hello_payload())
                self.counters["hellos_sent"] += 1
                await asyncio.sleep(self.hello_interval)
            self._hello_ev.clear()

    def _on_state(self, state: str) -> None:
        if state == CONNECTED:
            self._hello_ev.set()
        else:
            self.ready = False
            self._fail_inflight(f"link {state}")
        self._notify()
        cb = self._chained_state
        if cb is not None:
            cb(state)

    def _on_packet(self, payload: bytes) -> None:
        try:
            msg_type, fields = link.decode(payload)
        except DecodeError as exc:
            self.counters["bad_packets"] += 1
            log.debug("bad link packet: %s", exc)
            return
        handler = self._handlers.get(msg_type)
        if handler is None:
            self.counters["unexpected_packets"] += 1
            return
        handler(self, fields)

    def _h_hello(self, f: dict[str, Any]) -> None:
        self.counters["hellos_received"] += 1
        if f["role"] != ROLE_BRIDGE or f["link_version"] != link.LINK_VERSION:
            self.counters["bad_hello"] += 1
            log.warning(
                "board HELLO refused: role %r, link version %r", f["role"], f["link_version"]
            )
            return
        self.board = dict(f)
        self.ready = True
        self._push_all_bans()
        for key in RADIO_KEYS:
            self._send_control(link.encode(link.CONFIG_GET, key=key))
        self._notify()
        if self.on_hello is not None:
            self.on_hello(dict(f))

    def _h_frame_up(self, f: dict[str, Any]) -> None:
        data = f["frame"]
        try:
            src = wireframe.peek_source(data)
        except DecodeError:
            src = None
        if src is not None and self.is_banned(src):
            self.counters["banned_up"] += 1
            return
        self.counters["frames_up"] += 1
        if self.on_frame is not None:
            self.on_frame(data, f["rssi"], f["snr_q4"] / 4)

    def _resolve(self, handle: int, result: TxResult) -> None:
        fut = self._inflight.get(handle)
        if fut is None or fut.done():
            self.counters["unknown_handles"] += 1
            return
        fut.set_result(result)

    def _h_tx_done(self, f: dict[str, Any]) -> None:
        self.counters["tx_done"] += 1
        ms = max(0, f["airtime_ms"])
        if self.airtime_used_ms is not None:
            self.airtime_used_ms += ms
        self._resolve(f["handle"], TxResult(DONE, f["handle"], airtime_ms=ms))
        self._notify()

    def _h_tx_deferred(self, f: dict[str, Any]) -> None:
        self.counters["deferred"] += 1
        wait = f["wait_ms"]
        if f["reason"] in (link.DEFER_DUTY_CYCLE, link.DEFER_DWELL) and wait >= 0:
            at = self.clock() + wait / 1000
            if self.budget_returns_at is None or at > self.budget_returns_at:
                self.budget_returns_at = at
        self._resolve(
            f["handle"], TxResult(DEFERRED, f["handle"], reason=f["reason"], wait_ms=wait)
        )
        self._notify()

    def _h_stats(self, f: dict[str, Any]) -> None:
        self.counters["stats"] += 1
        self.stats = dict(f)
        self.stats_at = self.clock()
        self.airtime_used_ms = f["airtime_used_ms"]
        self.airtime_budget_ms = f["airtime_budget_ms"]
        self._notify()
        if self.on_stats is not None:
            self.on_stats(dict(f))

    def _h_config_value(self, f: dict[str, Any]) -> None:
        key, value = f["key"], f["value"]
        if key in RADIO_KEYS and isinstance(value, int) and not isinstance(value, bool):
            self.radio[key] = value
            self._notify()

    def _h_error(self, f: dict[str, Any]) -> None:
        self.counters["board_errors"] += 1
        log.warning("bridge board error %d: %s", f["code"], f["text"])

    _handlers: dict[int, Callable[[MeshLink, dict[str, Any]], None]] = {
        link.HELLO: _h_hello,
        link.FRAME_UP: _h_frame_up,
        link.TX_DONE: _h_tx_done,
        link.TX_DEFERRED: _h_tx_deferred,
        link.RADIO_STATS: _h_stats,
        link.CONFIG_VALUE: _h_config_value,
        link.ERROR: _h_error,
    }


# ---------------------------------------------------------------------------------------
# Shaper


SHAPER_CAPACITY = 64
SHAPER_WINDOW = 2
MAX_AGE_S = {PRIO_CONTROL: 30.0, PRIO_BLOCK: 120.0, PRIO_TX: 60.0, PRIO_GOSSIP: 30.0}
ORIGIN_RATE = 0.1  # frames per second per internet origin (6 a minute)
ORIGIN_BURST = 5.0
MAX_ORIGINS = 1024
PROBE_INTERVAL_S = 5.0

# Drop reasons (MeshShaper.dropped keys)
DROP_QUEUE_FULL = "queue_full"  # evicted or refused: queue full of equal/higher priority
DROP_RATE = "rate_limited"  # origin over its token bucket
DROP_ORIGIN_SHARE = "origin_share"  # origin already holds its share of the queue
DROP_EXPIRED = "expired"  # older than MAX_AGE_S[priority] before it could go
DROP_NEVER = "never"  # board says it can never be sent (too long for budget/dwell)
DROP_REFUSED = "refused"  # board refused (banned destination, frame rejected)
DROP_LOST = "lost"  # handed over, no answer (not retried: it may have gone out)


@dataclass
class _Entry:
    frame: bytes
    priority: int
    origin: Hashable | None
    queued_at: float
    deadline: float
    attempts: int = 0


@dataclass
class ShaperStats:
    submitted: int = 0
    sent: int = 0
    deferred: int = 0
    probes: int = 0
    airtime_sent_ms: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    sent_by_priority: Counter[int] = field(default_factory=Counter)
    dropped_by_priority: Counter[int] = field(default_factory=Counter)


class MeshShaper:
    """Bounded priority queue of frames for the mesh, released as the duty cycle allows.

    Policy:
    * Order: lower priority number first (control > blocks > transactions > gossip),
      oldest first within a priority.
    * `submit(frame, priority, origin)`: `origin` names the internet peer the frame comes
      from (None = the gateway's own traffic, not rate-limited). Each origin has a token
      bucket (`origin_rate` frames/s, `origin_burst`), may hold at most
      `origin_max_queued` frames, and origins are tracked in an LRU of `max_origins`.
      The gateway must not mirror the internet onto LoRa.
    * Full queue (`capacity`): the oldest frame of the lowest priority present is evicted
      if that priority is lower than the new frame's; otherwise the new frame is refused.
    * A frame older than `max_age[priority]` seconds is dropped ("expired").
    * A frame leaves only when MeshLink.budget_wait says the reported budget has room for
      its estimated airtime; when the stats say "full" with no return time, one frame is
      sent as a probe every `probe_interval` s (the board answers with TX_DEFERRED and the
      time the budget returns). At most `window` frames are with the board at once.
    * TX_DEFERRED puts the frame back at the head of its priority (it keeps its deadline);
      a wait of NEVER or a refusal drops it; a lost frame is not retried.
    Every drop is counted in `stats.dropped[reason]` and `stats.dropped_by_priority`.
    """

    def __init__(
        self,
        mesh: MeshLink,
        *,
        capacity: int = SHAPER_CAPACITY,
        window: int = SHAPER_WINDOW,
        max_age: dict[int, float] | None = None,
        origin_rate: float = ORIGIN_RATE,
        origin_burst: float = ORIGIN_BURST,
        origin_max_queued: int | None = None,
        max_origins: int = MAX_ORIGINS,
        probe_interval: float = PROBE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or window < 1 or max_origins < 1:
            raise ValueError("capacity, window and max_origins must be >= 1")
        self.mesh = mesh
        self.capacity = capacity
        self.window = window
        self.max_age = dict(MAX_AGE_S if max_age is None else max_age)
        self.origin_rate = origin_rate
        self.origin_burst = origin_burst
        self.origin_max_queued = (
            max(1, capacity // 4) if origin_max_queued is None else origin_max_queued
        )
        self.max_origins = max_origins
        self.probe_interval = probe_interval
        self.clock = clock
        self.stats = ShaperStats()
        self._queues: dict[int, deque[_Entry]] = {p: deque() for p in PRIORITIES}
        self._count = 0
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()
        self._origin_queued: Counter[Hashable] = Counter()
        self._inflight = 0
        self._inflight_ms = 0.0
        self._last_probe = -math.inf
        self._wake = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return self._count

    def queued_by_priority(self) -> dict[str, int]:
        return {PRIORITY_NAMES[p]: len(q) for p, q in self._queues.items()}

    def counters(self) -> dict[str, Any]:
        s = self.stats
        return {
            "queued": self._count,
            "inflight": self._inflight,
            "submitted": s.submitted,
            "sent": s.sent,
            "deferred": s.deferred,
            "probes": s.probes,
            "airtime_sent_ms": s.airtime_sent_ms,
            "dropped": dict(s.dropped),
            "sent_by_priority": {PRIORITY_NAMES[p]: n for p, n in s.sent_by_priority.items()},
            "dropped_by_priority": {PRIORITY_NAMES[p]: n for p, n in s.dropped_by_priority.items()},
        }

    # -- submit ---------------------------------------------------------------------------

    def _drop(self, reason: str, priority: int) -> None:
        self.stats.dropped[reason] += 1
        self.stats.dropped_by_priority[priority] += 1

    def _bucket(self, origin: Hashable, now: float) -> TokenBucket:
        b = self._buckets.get(origin)
        if b is None:
            if len(self._buckets) >= self.max_origins:
                # forget the least recently active origin without frames queued
                for old in self._buckets:
                    if not self._origin_queued.get(old):
                        del self._buckets[old]
                        break
                else:
                    self._buckets.popitem(last=False)
            b = TokenBucket(self.origin_rate, self.origin_burst, now)
            self._buckets[origin] = b
        else:
            self._buckets.move_to_end(origin)
        return b

    def submit(self, frame: bytes, priority: int, origin: Hashable | None = None) -> bool:
        """Queue a frame for the mesh; False when it was dropped (and counted)."""
        if priority not in self._queues:
            raise ValueError(f"priority must be one of {PRIORITIES!r}")
        now = self.clock()
        self.stats.submitted += 1
        if not wireframe.MIN_FRAME <= len(frame) <= wireframe.MAX_LORA_FRAME:
            self._drop(DROP_REFUSED, priority)
            return False
        self._expire(now)
        if origin is not None:
            if self._origin_queued[origin] >= self.origin_max_queued:
                self._drop(DROP_ORIGIN_SHARE, priority)
                return False
            if not self._bucket(origin, now).take(1, now):
                self._drop(DROP_RATE, priority)
                return False
        if self._count >= self.capacity:
            low = max(p for p, q in self._queues.items() if q)
            if low <= priority:
                self._drop(DROP_QUEUE_FULL, priority)
                return False
            self._forget(self._queues[low].popleft())
            self._count -= 1
            self._drop(DROP_QUEUE_FULL, low)
        entry = _Entry(bytes(frame), priority, origin, now, now + self.max_age[priority])
        self._queues[priority].append(entry)
        self._count += 1
        if origin is not None:
            self._origin_queued[origin] += 1
        self._wake.set()
        return True

    def _forget(self, entry: _Entry) -> None:
        """The entry leaves the shaper for good: release its origin's share."""
        o = entry.origin
        if o is not None:
            self._origin_queued[o] -= 1
            if self._origin_queued[o] <= 0:
                del self._origin_queued[o]

    def _expire(self, now: float) -> None:
        for p, q in self._queues.items():
            # deadlines are not monotonic within a queue (requeued frames go to the head)
            if any(e.deadline <= now for e in q):
                keep: deque[_Entry] = deque()
                for e in q:
                    if e.deadline <= now:
                        self._forget(e)
                        self._count -= 1
                        self._drop(DROP_EXPIRED, p)
                    else:
                        keep.append(e)
                self._queues[p] = keep

    def _head(self) -> _Entry | None:
        for p in PRIORITIES:
            q = self._queues[p]
            if q:
                return q[0]
        return None

    # -- pump -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._pump_task is not None:
            raise RuntimeError("MeshShaper already started")
        self._pump_task = asyncio.create_task(self._pump(), name="mesh-shaper")

    async def close(self) -> None:
        tasks = list(self._sends)
        if self._pump_task is not None:
            tasks.append(self._pump_task)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._pump_task = None
        self._sends.clear()

    async def _wait(self, timeout: float) -> None:
        """Sleep until submit/tx result wakes us, the link state changes, or timeout."""
        self._wake.clear()
        waits = [
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self.mesh.changed()),
        ]
        try:
            await asyncio.wait(waits, timeout=max(0.0, timeout), return_when="FIRST_COMPLETED")
        finally:
            for w in waits:
                w.cancel()

    async def _pump(self) -> None:
        while True:
            now = self.clock()
            self._expire(now)
            head = self._head()
            if head is None or not self.mesh.ready or self._inflight >= self.window:
                await self._wait(1.0)
                continue
            est = self.mesh.airtime_estimate_ms(len(head.frame))
            # frames with the board but not yet confirmed count against the budget too
            wait = self.mesh.budget_wait(est + self._inflight_ms)
            probe = False
            if wait is None:
                since = now - self._last_probe
                if since < self.probe_interval:
                    await self._wait(self.probe_interval - since)
                    continue
                probe = True
            elif wait > 0:
                await self._wait(min(wait, 1.0))
                continue
            if probe:
                if self._inflight:
                    await self._wait(1.0)
                    continue
                self._last_probe = now
                self.stats.probes += 1
            self._queues[head.priority].popleft()
            self._count -= 1
            self._inflight += 1
            self._inflight_ms += est
            task = asyncio.create_task(self._send(head, est))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)
            # let the send reach the board before looking at the budget again
            await asyncio.sleep(0)

    async def _send(self, e: _Entry, est: float) -> None:
        e.attempts += 1
        requeue = False
        try:
            r = await self.mesh.send_frame(e.frame, e.priority)
        finally:
            self._inflight -= 1
            self._inflight_ms = max(0.0, self._inflight_ms - est) if self._inflight else 0.0
            self._wake.set()
        if r.status == DONE:
            self._forget(e)
            self.stats.sent += 1
            self.stats.sent_by_priority[e.priority] += 1
            self.stats.airtime_sent_ms += r.airtime_ms
        elif r.status == DEFERRED:
            self.stats.deferred += 1
            if r.wait_ms == airtime.NEVER:
                self._forget(e)
                self._drop(DROP_NEVER, e.priority)
            elif r.reason == link.DEFER_BANNED:
                self._forget(e)
                self._drop(DROP_REFUSED, e.priority)
            else:
                requeue = True
        elif r.status == LOST:
            self._forget(e)
            self._drop(DROP_LOST, e.priority)
        elif r.detail in RETRYABLE:
            requeue = True  # never reached the board: try again when it is back
        else:
            self._forget(e)
            self._drop(DROP_REFUSED, e.priority)
        if requeue:
            self._requeue(e)

    def _requeue(self, e: _Entry) -> None:
        """Back to the head of its priority; if the queue filled up meanwhile, the usual
        eviction rule applies (the requeued frame itself may be the one to go)."""
        if self._count >= self.capacity:
            low = max(p for p, q in self._queues.items() if q)
            if low <= e.priority:
                self._forget(e)
                self._drop(DROP_QUEUE_FULL, e.priority)
                return
            self._forget(self._queues[low].popleft())
            self._count -= 1
            self._drop(DROP_QUEUE_FULL, low)
        self._queues[e.priority].appendleft(e)
        self._count += 1
        self._wake.set()
