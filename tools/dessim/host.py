"""One unmodified firmware node (loranode.node.Node) on the simulated air.

The node runs on a board as three asyncio tasks (node.py `rx_task`, `timer_task`,
transmit.py `tx_task`). Here the same work is driven through the node's non-async entry
points, by events instead of sleeps:

* receive: each frame the air delivers goes to `node.handle_frame(data, rssi, snr)`,
  as `rx_task` hands it over (an exception is counted in RX_ERRORS and kept, as
  `rx_task` counts it); frames the air corrupted never reach the node (a radio drops a
  bad CRC, as SimRadio never sees RX_CRC);
* timers: `node.tick(now)` when the earliest of the node's own timers is due (the
  announce, PEX, ping, ageing and status timers and the pending answers' timeouts, the
  same fields `tick` compares), and at least every MAX_WAKE_MS for the housekeeping that
  has no timer of its own (queue, reassembly and ban expiry). A board ticks every 50 ms;
  ticking only when something can be due gives the same decisions without 72,000
  wake-ups per node and hour;
* transmit: as `tx_task`: `node.next_frame()` (the duty-cycle check), then a random wait
  of 0..TX_JITTER_MS (0..RELAY_JITTER_MS for a relayed frame) + 1 ms, then the frame on
  the air for its time on air (`lorawire.airtime`, as the meshsim medium computes it),
  then `node.charge(data, now)` at its end. While nothing is queued the transmitter
  sleeps until the next entry into the node queues something; while the duty cycle holds
  every queued frame back, the queue is offered again when the budget says the first
  of them fits (no sooner than BLOCKED_POLL_MS, tx_task's idle poll).

The node's clock is a `VirtualClock` (the node-tick interface of loranode.clock: ticks
that wrap at 2**30 ms, `wall_ms`), its radio a `VirtualRadio` that holds the modulation
the air needs and the counters a radio keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from loranode import counters as C
from loranode.announce import rand
from loranode.clock import PERIOD, add, diff
from loranode.radio import Radio
from loranode.transmit import _BACKGROUND as BACKGROUND
from loranode.transmit import PENDING, PENDING_TIMEOUT_MS, RELAY_JITTER_MS, TX_JITTER_MS
from loranode.txqueue import PRIORITIES
from lorawire.airtime import NEVER, airtime_ms, time_on_air_ms

from ..meshsim.air import Air, Delivery, Params, Station, Transmission
from .events import EventQueue

if TYPE_CHECKING:
    from loranode.node import Node

MASK = PERIOD - 1
MAX_WAKE_MS = 30000
NEVER_MS = 3_600_000  # nothing in the queue can ever go: look again in an hour
BLOCKED_POLL_MS = 20  # as tx_task's idle poll
KEEP_ERRORS = 5


class VirtualClock:
    """Node ticks from the event queue's clock: `start` at the moment the node boots."""

    def __init__(self, queue: EventQueue, start: int = 0) -> None:
        self.queue = queue
        self.origin_ms = 0
        self.start = start
        self.milli = 1000

    def boot(self) -> None:
        self.origin_ms = self.queue.now_ms - self.start

    def now(self) -> int:
        return (self.queue.now_ms - self.origin_ms) & MASK

    def wall_ms(self, ms: int) -> int:
        return ms

    def sim_s(self, tick: int) -> float:
        """The simulated second of node tick `tick` (within half a period of now)."""
        return (self.queue.now_ms + diff(tick, self.now())) / 1000.0


class VirtualRadio(Radio):
    """The radio interface as far as a simulated node needs it: the modulation (read by
    the air) and the counters. Sending and receiving are the simulator's events, so the
    blocking and async calls are refused."""

    def __init__(self, name: str, params: Params) -> None:
        Radio.__init__(self)
        self.name = name
        self.speed = 1
        self.sim_time = 0.0
        self.configure(params.freq_hz, params.sf, params.bw_hz, params.cr, params.power_dbm)

    def configure(
        self, freq_hz: int, sf: int, bw_hz: int, coding_rate: int = 5, tx_power_dbm: int = 14
    ) -> None:
        self._set_config(freq_hz, sf, bw_hz, coding_rate, tx_power_dbm)

    def params(self) -> Params:
        return Params(self.freq_hz, self.sf, self.bw_hz, self.tx_power_dbm, self.coding_rate)

    def send(self, payload: bytes) -> float:
        raise RuntimeError("a simulated node transmits through its FirmwareHost")

    def recv(self) -> None:
        raise RuntimeError("a simulated node receives through its FirmwareHost")


class FirmwareHost:
    """Drives one Node on the air (see the module docstring). `on_tx(host, data, tx)` is
    called for every frame put on the air."""

    def __init__(
        self,
        index: int,
        node: Node,
        radio: VirtualRadio,
        clock: VirtualClock,
        queue: EventQueue,
        air: Air,
        on_tx: Callable[[FirmwareHost, bytes, Transmission], None] | None = None,
    ) -> None:
        self.index = index
        self.node = node
        self.radio = radio
        self.clock = clock
        self.queue = queue
        self.air = air
        self.on_tx = on_tx
        self.station = Station(radio.name, node.id, radio.params(), owner=self)
        self.name = radio.name
        self.booted = False
        self.busy = False  # a frame is waiting out its jitter or on the air
        self._wake_at = float("inf")
        self._wake_gen = 0
        self._poll_at = float("inf")
        self._poll_gen = 0
        self._blocked_mark: tuple[int, int, int, int] | None = None
        self._tx_seq = 0
        self.errors: list[str] = []

    # -- life ----------------------------------------------------------------------

    def boot(self) -> None:
        self.clock.boot()
        self.radio.sim_time = self.queue.now
        self.air.join(self.station)
        self.node.start()
        self.booted = True
        self.after()

    def after(self) -> None:
        """After any entry into the node: the next wake-up, and the transmitter."""
        self._schedule_wake()
        self.pump()

    def _due_ms(self) -> int:
        node = self.node
        now = self.clock.now()
        soonest = MAX_WAKE_MS
        due = node.announcer.due
        if due is not None:
            soonest = min(soonest, diff(due, now))
        timers = node.due
        for i in range(4 if node.status_ms else 3):
            soonest = min(soonest, diff(timers[i], now))
        for i in range(PENDING):
            if node.pend_id[i] is not None:
                soonest = min(soonest, diff(add(node.pend_t[i], PENDING_TIMEOUT_MS + 1), now))
        return max(soonest, 0)

    def _schedule_wake(self) -> None:
        t = (self.queue.now_ms + self._due_ms()) / 1000.0
        if t < self._wake_at - 1e-9:
            self._wake_at = t
            self._wake_gen += 1
            self.queue.at(t, self._wake, self._wake_gen)

    def _wake(self, gen: int) -> None:
        if gen != self._wake_gen:
            return  # superseded by an earlier wake-up
        self._wake_at = float("inf")
        self.node.tick(self.clock.now())
        self.after()

    # -- receive -------------------------------------------------------------------

    def deliver(self, d: Delivery) -> None:
        radio = self.radio
        if d.corrupted:
            radio.crc_errors += 1
            return
        radio.rx_frames += 1
        radio.sim_time = d.end
        try:
            self.node.handle_frame(d.payload, d.rssi, d.snr_q / 4)
        except Exception as e:  # as rx_task: one frame's bug must not stop the node
            self.node.c[C.RX_ERRORS] += 1
            if len(self.errors) < KEEP_ERRORS:
                self.errors.append(repr(e))
        self.after()

    # -- transmit ------------------------------------------------------------------

    def pump(self) -> None:
        if self.busy or not self.booted:
            return
        node = self.node
        data = node.next_frame()
        if data is None:
            q = node.txq
            if len(q):
                mark = (q.pushed[0], q.pushed[1], q.pushed[2], q.count)
                if mark != self._blocked_mark or self._poll_at == float("inf"):
                    self._blocked_mark = mark  # the queue changed: ask the budget again
                    self._poll_later(self._blocked_ms())
            return
        jitter = rand((RELAY_JITTER_MS if data[2] & 0x0F else TX_JITTER_MS) + 1)
        self.busy = True
        self.queue.after_ms(self.clock.wall_ms(jitter) + 1, self._tx_start, data)

    def _blocked_ms(self) -> int:
        """How long until the duty cycle lets one of the queued frames go (as
        transmit.py `_can_send` asks the budget), at least BLOCKED_POLL_MS."""
        node = self.node
        now = self.clock.now()
        r = self.radio
        soonest = NEVER_MS
        q = node.txq
        for p in range(PRIORITIES):  # pop_ready offers the oldest frame of each priority
            s = q._oldest(p)
            if s >= 0:
                f = q.frames[s]
                ms = airtime_ms(len(f), r.sf, r.bw_hz, r.coding_rate)
                w = node.duty.wait_ms(ms, now, f[1] in BACKGROUND)
                if w != NEVER and w < soonest:
                    soonest = w
        return max(soonest, BLOCKED_POLL_MS)

    def _poll_later(self, ms: int) -> None:
        t = (self.queue.now_ms + ms) / 1000.0
        if t < self._poll_at - 1e-9:
            self._poll_at = t
            self._poll_gen += 1
            self.queue.at(t, self._poll, self._poll_gen)

    def _poll(self, gen: int) -> None:
        if gen == self._poll_gen:
            self._poll_at = float("inf")
            self.pump()

    def _tx_start(self, data: bytes) -> None:
        r = self.radio
        airtime = float(time_on_air_ms(len(data), r.sf, r.bw_hz, coding_rate=r.coding_rate))
        self._tx_seq = (self._tx_seq + 1) & 0xFFFF
        params = r.params()
        self.station.params = params
        tx = self.air.begin(self.station, self._tx_seq, params, data, self.queue.now, airtime)
        if self.on_tx is not None:
            self.on_tx(self, data, tx)
        self.queue.at(tx.end, self._tx_end, tx)

    def _tx_end(self, tx: Transmission) -> None:
        r = self.radio
        r.tx_frames += 1
        r.tx_airtime_ms += tx.airtime_ms
        r.sim_time = tx.end
        self.busy = False
        for d in self.air.finish(tx):
            d.station.owner.deliver(d)  # every station's owner is its host
        self.node.charge(tx.payload, self.clock.now())
        self.after()
