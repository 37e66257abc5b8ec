"""The link-protocol session with a bridge board (the shaper is `mesh.shaper`).

`MeshLink` sits on a `mesh.serial.SerialLink` (it listens to the link's `on_packet` and
`on_state`) and tells its own listeners what the board says: `on_frame(frame, rssi,
snr)` for each frame heard on the radio, `on_hello(hello)` for each board HELLO,
`on_stats(stats)` for each RADIO_STATS (`Listeners`: each consumer `.add`s itself).

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

`mesh.shaper.MeshShaper` owns the queue of frames going DOWN.

Priorities (smaller = more urgent) are loragate.session's: PRIO_CONTROL 0, PRIO_BLOCK 1,
PRIO_TX 2, plus PRIO_GOSSIP 3 (announces, peer exchange, INV). The board's transmit queue
knows three (control, blocks, gossip); BOARD_PRIORITY maps ours onto them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loragate.bounded import BoundedDict
from loragate.listeners import Listeners
from loragate.mesh.serial import CONNECTED, SerialLink
from loragate.session import PRIO_BLOCK, PRIO_CONTROL, PRIO_TX
from lorawire import airtime, link, uart
from lorawire import frame as wireframe
from lorawire.errors import DecodeError

log = logging.getLogger(__name__)

PRIO_GOSSIP = 3  # below the TCP sessions' three: announces, peer exchange, tx INVs
PRIORITIES = (PRIO_CONTROL, PRIO_BLOCK, PRIO_TX, PRIO_GOSSIP)
PRIORITY_NAMES = {
    PRIO_CONTROL: "control",
    PRIO_BLOCK: "block",
    PRIO_TX: "tx",
    PRIO_GOSSIP: "gossip",
}
# Board txqueue priorities: CONTROL 0, BLOCKS 1, GOSSIP 2 (transactions travel as gossip).
BOARD_PRIORITY = {
    PRIO_CONTROL: link.PRIO_CONTROL,
    PRIO_BLOCK: link.PRIO_BLOCKS,
    PRIO_TX: link.PRIO_GOSSIP,
    PRIO_GOSSIP: link.PRIO_GOSSIP,
}

ROLE_BRIDGE = "bridge"
ROLE_GATEWAY = "gateway"
GATEWAY_FIRMWARE = "loragate-0.1"

HANDLES = 1 << 16
INFLIGHT_MAX = 32
TX_TIMEOUT_S = 10.0
HELLO_INTERVAL_S = 1.0
MAX_MESH_BANS = 256
RADIO_KEYS = ("sf", "bandwidth_hz", "coding_rate")
# Asked for the operator's view only (status, --json): where the bridge transmits.
INFO_KEYS = ("region", "frequency_hz", "tx_power_dbm")
UP = "up"
DOWN = "down"
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
        wall: Callable[[], float] = time.time,
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
        self.on_frame: Listeners[[bytes, int, float]] = Listeners("on_frame", log)
        self.on_stats: Listeners[[dict[str, Any]]] = Listeners("on_stats", log)
        self.on_hello: Listeners[[dict[str, Any]]] = Listeners("on_hello", log)
        # (up, why) on every change of `ready`: the board said HELLO, or the link went away
        self.on_link: Listeners[[bool, str]] = Listeners("on_link", log)
        if on_frame is not None:
            self.on_frame.add(on_frame)
        if on_stats is not None:
            self.on_stats.add(on_stats)
        if on_hello is not None:
            self.on_hello.add(on_hello)
        self.tx_timeout = tx_timeout
        self.inflight_max = inflight_max
        self.hello_interval = hello_interval
        self.max_bans = max_bans
        self.clock = clock
        self.wall = wall
        serial_link.on_packet.add(self._on_packet)
        serial_link.on_state.add(self._on_state)
        self.ready = False
        self.since = wall()  # wall time of the last change of `ready` (or of the start)
        self.last_hello_at: float | None = None  # wall time of the board's last HELLO
        self.board: dict[str, Any] | None = None
        self.radio: dict[str, int] = dict(DEFAULT_RADIO)
        self.settings: dict[str, int | str] = {}  # INFO_KEYS as the board reported them
        self.stats: dict[str, int] = {}
        self.stats_at: float | None = None
        self.airtime_used_ms: int | None = None
        self.airtime_budget_ms: int | None = None
        self.budget_returns_at: float | None = None
        self.counters: Counter[str] = Counter()
        self.bans_evicted = 0
        # id -> expiry (None: permanent); `ban` evicts by its own rule before the bound
        self._bans: BoundedDict[bytes, float | None] = BoundedDict(max_bans)
        # pushes waiting for the board, id -> True ban / False unban, oldest first
        self._pending: BoundedDict[bytes, bool] = BoundedDict(2 * max_bans, self._push_lost)
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
        self._set_ready(False, "closed")
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
            "inflight": self.inflight,
        }

    @property
    def inflight(self) -> int:
        """Frames handed to the board whose TX_DONE / TX_DEFERRED has not come yet."""
        return len(self._inflight)

    @property
    def pushes_waiting(self) -> int:
        """BAN / UNBAN pushes not yet sent to the board (bounded: 2 x max_bans)."""
        return len(self._pending)

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
        self._bans.put(node_id, None if seconds is None else now + seconds)
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
        self._pending.put(node_id, ban)
        self._pending_ev.set()

    def _push_lost(self, node_id: bytes, ban: bool) -> None:
        self.counters["ban_push_dropped"] += 1

    async def _ban_pusher(self) -> None:
        while True:
            await self._pending_ev.wait()
            self._pending_ev.clear()
            while self._pending and self.ready:
                node_id, is_ban = self._pending.pop_oldest()
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

    def _set_ready(self, up: bool, why: str) -> None:
        if up == self.ready:
            return
        self.ready = up
        self.since = self.wall()
        self.on_link(up, why)

    def _on_state(self, state: str) -> None:
        if state == CONNECTED:
            self._hello_ev.set()
        else:
            why = f"serial {state}"
            if self.serial.last_error:
                why += f": {self.serial.last_error}"
            self._set_ready(False, why)
            self._fail_inflight(f"link {state}")
        self._notify()

    def link_info(self) -> dict[str, Any]:
        """The link as an operator sees it (status, metrics): up or down since when, the
        board's last HELLO, where it transmits and what is left of its duty-cycle budget."""
        board = self.board or {}
        used, budget = self.airtime_used_ms, self.airtime_budget_ms
        node_id = board.get("node_id")
        return {
            "state": UP if self.ready else DOWN,
            "since": self.since,
            "serial": self.serial.state,
            "port": self.serial.port,
            "last_error": self.serial.last_error or None,
            "last_hello": self.last_hello_at,
            "board_id": bytes(node_id).hex() if isinstance(node_id, bytes | bytearray) else None,
            "firmware": board.get("firmware"),
            "region": self.settings.get("region"),
            "frequency_hz": self.settings.get("frequency_hz"),
            "tx_power_dbm": self.settings.get("tx_power_dbm"),
            "sf": self.radio.get("sf"),
            "bandwidth_hz": self.radio.get("bandwidth_hz"),
            "coding_rate": self.radio.get("coding_rate"),
            "airtime_used_ms": used,
            "airtime_budget_ms": budget,
            "budget_left_ms": None if used is None or budget is None else max(0, budget - used),
        }

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
        self.last_hello_at = self.wall()
        self._set_ready(True, "board HELLO")
        self._push_all_bans()
        for key in RADIO_KEYS + INFO_KEYS:
            self._send_control(link.encode(link.CONFIG_GET, key=key))
        self._notify()
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
        self.on_stats(dict(f))

    def _h_config_value(self, f: dict[str, Any]) -> None:
        key, value = f["key"], f["value"]
        if key in RADIO_KEYS and isinstance(value, int) and not isinstance(value, bool):
            self.radio[key] = value
            self._notify()
        elif key in INFO_KEYS and isinstance(value, int | str) and not isinstance(value, bool):
            self.settings[key] = value

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
