"""Objects from the internet offered to the mesh by INV, never pushed (docs/BRIDGE.md),
and only as many as the bridge's airtime carries.

`MeshOffers` listens to the relay's `on_object`: a new valid object that
`MeshRelay.admit` lets through (it fits the mesh, its internet origin is within its
rate) joins a bounded backlog (`inv_pending_max`; when full a block evicts the oldest
transaction, a transaction is refused). The backlog goes out `inv_delay_s` after the
first offer, as BRIDGED INV broadcasts (block INVs at block priority first, then tx
INVs as gossip), as many hashes per frame as the MTU allows.

With a `downlink.DownlinkBudget` (the mesh wing always has one), what goes is sized to the
bridge's duty-cycle budget: an object that arrives while the budget has no room is
refused at once; at each flush the backlog is offered most valuable first
(`DownlinkBudget.value`) while the room lasts, and the rest is refused. Refused objects
are never announced, so no mesh node asks for what the air cannot carry; every refusal
is counted (`dropped_downlink_shed_<reason>`) and reported in one log line a minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from loragate.mesh.counters import MeshCounters
from loragate.mesh.downlink import SHED_BACKLOG, SHED_BUDGET, DownlinkBudget
from loragate.mesh.frames import MeshFramer
from loragate.mesh.link import PRIO_BLOCK, PRIO_GOSSIP
from loragate.mesh.relay import MeshRelay
from loragate.mesh.tuning import MeshTuning
from loragate.relay import RelayPeer, object_hash
from lorawire import messages


class _Offer:
    __slots__ = ("code", "cost_ms", "since")

    def __init__(self, code: int, cost_ms: float, since: float) -> None:
        self.code = code
        self.cost_ms = cost_ms
        self.since = since


class MeshOffers:
    def __init__(
        self,
        relay: MeshRelay,
        framer: MeshFramer,
        tuning: MeshTuning,
        counters: MeshCounters,
        *,
        submit: Callable[[bytes, int], bool],
        budget: DownlinkBudget | None = None,
    ) -> None:
        self.relay = relay
        self.framer = framer
        self.tuning = tuning
        self.counters = counters
        self.budget = budget
        self._submit = submit
        self._pending: dict[bytes, _Offer] = {}  # hash -> offer, oldest first
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        """Offers waiting to go out."""
        return len(self._pending)

    def __contains__(self, h: object) -> bool:
        return h in self._pending

    def on_object(self, kind: str, payload: bytes, source: RelayPeer | None) -> None:
        """A new valid object in the relay: offer it unless `admit` says no."""
        code = self.relay.admit(kind, payload, source)
        if code is not None:
            self.offer(object_hash(payload), code, len(payload))

    def offer(self, h: bytes, code: int, size: int = 0) -> None:
        pending = self._pending
        if h in pending:
            return
        cost = 0.0
        if self.budget is not None:
            cost = self.budget.cost_ms(code, size)
            room = self.budget.room_ms()
            if room is not None and room < cost:
                self.budget.refuse(SHED_BUDGET)  # early: the air has no room for it now
                return
        if len(pending) >= self.tuning.inv_pending_max:
            victim = None
            if code == messages.KIND_BLOCK:
                victim = next((k for k, o in pending.items() if o.code == messages.KIND_TX), None)
            if victim is None:
                self._shed_backlog()
                return
            del pending[victim]
            self._shed_backlog()
        pending[h] = _Offer(code, cost, time.monotonic())
        self._wake.set()

    def _shed_backlog(self) -> None:
        if self.budget is not None:
            self.budget.refuse(SHED_BACKLOG)
        else:
            self.counters.drop("downlink_shed_" + SHED_BACKLOG)

    def _affordable(self, pending: dict[bytes, _Offer]) -> dict[bytes, _Offer]:
        """The offers the budget carries, most valuable first; the rest are refused."""
        budget = self.budget
        if budget is None:
            return pending
        ranked = sorted(pending.items(), key=lambda kv: budget.value(*_key(kv[1])))
        kept: dict[bytes, _Offer] = {}
        refused = 0
        for h, o in ranked:
            if budget.take(o.cost_ms):
                kept[h] = o
            else:
                refused += 1
        if refused:
            budget.refuse(SHED_BUDGET, refused)
        return kept

    def flush(self) -> int:
        """Send the pending offers now (block INVs first); how many items were queued."""
        pending, self._pending = self._pending, {}
        pending = self._affordable(pending)
        queued = 0
        hops = self.tuning.hops()
        for code, prio in ((messages.KIND_BLOCK, PRIO_BLOCK), (messages.KIND_TX, PRIO_GOSSIP)):
            hashes = [h for h, o in pending.items() if o.code == code]
            if not hashes:
                continue
            frames = self.framer.inv_frames(code, hashes, hops)
            per = -(-len(hashes) // len(frames))
            for k, fr in enumerate(frames):
                n = min(per, len(hashes) - k * per)
                if self._submit(fr, prio):
                    queued += n
        if queued:
            self.counters.count("inv_items_queued", queued)
            self.counters.metric("relayed", "mesh_inv", queued)
        return queued

    async def loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.tuning.inv_delay_s)
            self._wake.clear()
            self.flush()
            if self.budget is not None:
                self.budget.report()


def _key(o: _Offer) -> tuple[int, float, float]:
    return (o.code, o.cost_ms, o.since)
