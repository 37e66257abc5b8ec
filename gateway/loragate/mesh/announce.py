"""Our own signed record on the mesh, as ANNOUNCE.

`MeshAnnouncer` queues the gateway's record (kind gateway, network tag, gossip
priority) every `announce_interval_s` (jittered), shortly after the bridge's HELLO and
whenever a mesh node we never heard of appears (it may lack our record: a single
announce can be lost to a collision), never more often than `announce_min_gap_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable

from loragate.mesh.counters import MeshCounters
from loragate.mesh.frames import MeshFramer
from loragate.mesh.link import PRIO_GOSSIP
from loragate.mesh.tuning import MeshTuning
from lorawire import messages
from lorawire.record import Record


class MeshAnnouncer:
    def __init__(
        self,
        framer: MeshFramer,
        tuning: MeshTuning,
        rng: random.Random,
        counters: MeshCounters,
        *,
        record: Callable[[], Record | None],
        ready: Callable[[], bool],
        submit: Callable[[bytes, int], bool],
    ) -> None:
        self.framer = framer
        self.tuning = tuning
        self._rng = rng
        self.counters = counters
        self._record = record  # our signed record (None before the manager made it)
        self._ready = ready  # the bridge link is up
        self._submit = submit
        self._last_announce = -math.inf
        self._announce_at = math.inf
        self._wake = asyncio.Event()

    def schedule(self, delay: float) -> None:
        """Announce within `delay` seconds (min gap permitting), unless due sooner."""
        at = time.monotonic() + max(0.0, delay)
        at = max(at, self._last_announce + self.tuning.announce_min_gap_s)
        if at < self._announce_at:
            self._announce_at = at
            self._wake.set()

    def announce_now(self) -> bool:
        """Queue our signed record as ANNOUNCE (network tag, gossip priority)."""
        rec = self._record()
        if rec is None:
            return False
        body = messages.encode_announce(rec.value)
        frame = self.framer.seal(
            messages.ANNOUNCE, body, hop_limit=self.tuning.hops(), bridged=False
        )
        self._last_announce = time.monotonic()
        ok = self._submit(frame, PRIO_GOSSIP)
        if ok:
            self.counters.count("announces")
        return ok

    async def loop(self) -> None:
        t = self.tuning
        while True:
            now = time.monotonic()
            if now >= self._announce_at:
                if self._ready():
                    self.announce_now()
                jitter = 1.0 + self._rng.uniform(-t.announce_jitter, t.announce_jitter)
                self._announce_at = time.monotonic() + t.announce_interval_s * jitter
                continue
            self._wake.clear()
            wait = None if math.isinf(self._announce_at) else self._announce_at - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
