"""What the downlink may still offer: internet objects sized against the bridge's airtime.

The bridge radio has one duty-cycle budget (EU868: 36 s of airtime an hour) for
everything it sends: its own mesh traffic, the gateway's control replies and the
internet objects the gateway offers. An object offered to the mesh costs airtime several
times: its share of an INV, the object itself when a node asks (GETDATA), and the ACKs
of those requests. Offering more than the budget carries ends in frames deferred and
expired half-way (an INV whose object never goes), and then in nothing going at all
until the window slides: the downlink stalls.

`DownlinkBudget` decides before the INV, from the figures the bridge reports:

* `cost_ms(kind, payload)`: what one object is expected to cost on the air;
* the room is the budget left (`budget - used`, the board's RADIO_STATS, plus what was
  sent since) minus a reserve (`reserve_share` of the budget: the bridge's own traffic
  and the control replies must still fit) minus what was committed to objects offered in
  the last `commit_s` seconds (their GETDATA and serving are still to come);
* `take(cost)` commits the airtime of an object about to be offered, or says no.

Objects are taken most valuable first (`value`: blocks before transactions, then the
cheapest on the air, then the oldest); what does not fit is refused before any INV,
counted (`downlink_shed_<reason>`, metrics `mesh_downlink_shed_<reason>`), and said in one
log line (a DOWNLINK_SHED event) at most every `report_s` seconds, together with the
objects `MeshRelay.admit` refused before (an internet origin over its rate, too large).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable

from loragate.events import EventKind
from loragate.mesh.counters import MeshCounters
from loragate.mesh.frames import MTU
from loragate.mesh.link import MeshLink
from loragate.telemetry import Telemetry
from lorawire import frame as wframe
from lorawire import messages

SHED_BUDGET = "budget"  # the air cannot carry it now
SHED_BACKLOG = "backlog"  # more offers waiting than the backlog holds
# Refused before the budget is asked (mesh.relay.MeshRelay.admit counts them): reported
# in the same line, so one line says everything the downlink did not carry.
ADMIT_REASONS = ("origin_rate", "too_large")

INV_ITEM_BYTES = 36  # one (kind, 32-byte hash) item of an INV body, with its framing
ACK_BYTES = wframe.OVERHEAD_UNICAST + 4


class DownlinkBudget:
    def __init__(
        self,
        link: MeshLink,
        counters: MeshCounters,
        telemetry: Telemetry,
        *,
        reserve_share: float = 0.3,
        commit_s: float = 120.0,
        acks_per_object: int = 2,
        report_s: float = 60.0,
        port: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.link = link
        self.counters = counters
        self.telemetry = telemetry
        self.reserve_share = reserve_share
        self.commit_s = commit_s
        self.acks_per_object = acks_per_object
        self.report_s = report_s
        self.port = port
        self.clock = clock
        self._committed: deque[tuple[float, float]] = deque()  # (when, ms), oldest first
        self._unreported: Counter[str] = Counter()
        self._admit_seen: Counter[str] = Counter()
        self._last_report = -float("inf")
        self.offered = 0
        self.shed: Counter[str] = Counter()

    # ---- costs --------------------------------------------------------------------------

    def cost_ms(self, kind_code: int, payload_len: int) -> float:
        """Expected airtime of offering one object of `payload_len` bytes."""
        air = self.link.airtime_estimate_ms
        body = payload_len + 8
        if wframe.OVERHEAD_BROADCAST + body <= MTU:
            serve = air(wframe.OVERHEAD_BROADCAST + body)
        else:  # fragments: full frames but the last
            full, rest = divmod(body, MTU - wframe.OVERHEAD_BROADCAST - 8)
            serve = full * air(MTU) + (air(rest + wframe.OVERHEAD_BROADCAST + 8) if rest else 0)
        inv_share = air(wframe.OVERHEAD_BROADCAST + 4 + INV_ITEM_BYTES) / 2
        return inv_share + serve + self.acks_per_object * air(ACK_BYTES)

    @staticmethod
    def value(kind_code: int, cost_ms: float, since: float) -> tuple[int, float, float]:
        """Sort key, most valuable first: blocks, then the cheapest, then the oldest."""
        return (0 if kind_code == messages.KIND_BLOCK else 1, cost_ms, since)

    # ---- room ---------------------------------------------------------------------------

    def committed_ms(self) -> float:
        now = self.clock()
        q = self._committed
        while q and now - q[0][0] > self.commit_s:
            q.popleft()
        return sum(ms for _, ms in q)

    def room_ms(self) -> float | None:
        """Airtime the downlink may still commit to objects (None: the board has not
        reported its budget yet, so nothing is known to be short)."""
        used, budget = self.link.airtime_used_ms, self.link.airtime_budget_ms
        if used is None or budget is None:
            return None
        return budget - used - self.reserve_share * budget - self.committed_ms()

    def take(self, cost_ms: float) -> bool:
        """Commit `cost_ms` of airtime to one object, or say it does not fit."""
        room = self.room_ms()
        if room is not None and cost_ms > room:
            return False
        self._committed.append((self.clock(), cost_ms))
        self.offered += 1
        return True

    # ---- shedding -----------------------------------------------------------------------

    def refuse(self, reason: str, n: int = 1) -> None:
        """`n` objects not offered for `reason`: counted now, reported in a while."""
        self.shed[reason] += n
        self._unreported[reason] += n
        self.counters.drop("downlink_shed_" + reason, n)
        self.report()

    def report(self, force: bool = False) -> None:
        """One DOWNLINK_SHED event (a log line) for what was shed since the last one."""
        now = self.clock()
        if not force and now - self._last_report < self.report_s:
            return
        for reason in ADMIT_REASONS:
            n = self.counters["dropped_" + reason] - self._admit_seen[reason]
            if n > 0:
                self._admit_seen[reason] += n
                self._unreported[reason] += n
        if not self._unreported:
            return
        window = None if self._last_report == -float("inf") else now - self._last_report
        self._last_report = now
        shed, self._unreported = dict(self._unreported), Counter()
        room = self.room_ms()
        self.telemetry.emit(
            EventKind.DOWNLINK_SHED,
            port=self.port,
            refused=sum(shed.values()),
            shed=shed,
            window_s=window,
            used_s=None if self.link.airtime_used_ms is None else self.link.airtime_used_ms / 1000,
            budget_s=(
                None if self.link.airtime_budget_ms is None else self.link.airtime_budget_ms / 1000
            ),
            why="the bridge's airtime cannot carry more"
            if room is not None and room <= 0
            else "more offers than the budget allows",
        )
