"""Objects from the internet offered to the mesh by INV, never pushed (docs/BRIDGE.md).

`MeshOffers` listens to the relay's `on_object`: a new valid object that
`MeshRelay.admit` lets through (it fits the mesh, its internet origin is within its
rate) joins a bounded backlog (`inv_pending_max`; when full a block evicts the oldest
transaction, a transaction is refused). The backlog goes out `inv_delay_s` after the
first offer, as BRIDGED INV broadcasts (block INVs at block priority first, then tx
INVs as gossip), as many hashes per frame as the MTU allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from loragate.mesh.counters import MeshCounters
from loragate.mesh.frames import MeshFramer
from loragate.mesh.link import PRIO_BLOCK, PRIO_GOSSIP
from loragate.mesh.relay import MeshRelay
from loragate.mesh.tuning import MeshTuning
from loragate.relay import RelayPeer, object_hash
from lorawire import messages

D_INV_BACKLOG = "inv_backlog"


class MeshOffers:
    def __init__(
        self,
        relay: MeshRelay,
        framer: MeshFramer,
        tuning: MeshTuning,
        counters: MeshCounters,
        *,
        submit: Callable[[bytes, int], bool],
    ) -> None:
        self.relay = relay
        self.framer = framer
        self.tuning = tuning
        self.counters = counters
        self._submit = submit
        self._pending: dict[bytes, int] = {}  # hash -> kind code, oldest first
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
            self.offer(object_hash(payload), code)

    def offer(self, h: bytes, code: int) -> None:
        pending = self._pending
        if h in pending:
            return
        if len(pending) >= self.tuning.inv_pending_max:
            victim = None
            if code == messages.KIND_BLOCK:
                victim = next((k for k, c in pending.items() if c == messages.KIND_TX), None)
            if victim is None:
                self.counters.drop(D_INV_BACKLOG)
                return
            del pending[victim]
            self.counters.drop(D_INV_BACKLOG)
        pending[h] = code
        self._wake.set()

    def flush(self) -> int:
        """Send the pending offers now (block INVs first); how many items were queued."""
        pending, self._pending = self._pending, {}
        queued = 0
        hops = self.tuning.hops()
        for code, prio in ((messages.KIND_BLOCK, PRIO_BLOCK), (messages.KIND_TX, PRIO_GOSSIP)):
            hashes = [h for h, c in pending.items() if c == code]
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
