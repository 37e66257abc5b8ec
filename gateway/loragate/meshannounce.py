"""Our own signed record on the mesh, as ANNOUNCE (loragate.mesh).

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
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loragate.meshframes import MeshFramer
from loragate.meshlink import PRIO_GOSSIP
from lorawire import messages

if TYPE_CHECKING:
    from loragate.mesh import MeshTuning


class MeshAnnouncer:
    def __init__(
        self,
        framer: MeshFramer,
        tuning: MeshTuning,
        rng: random.Random,
        counters: Counter[str],
        *,
        record: Callable[[], Any],
        ready: Callable[[], bool],
        hops: Callable[[], int],
        submit: Callable[[bytes, int], bool],
    ) -> None:
        self.framer = framer
        self.tuning = tuning
        self._rng = rng
        self.counters = counters
        self._record = record  # our signed record (None before the manager made it)
        self._ready = ready  # the bridge link is up
        self._hops = hops
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
        frame = self.framer.seal(messages.ANNOUNCE, body, hop_limit=self._hops(), bridged=False)
        self._last_announce = time.monotonic()
        ok = self._submit(frame, PRIO_GOSSIP)
        if ok:
            self.counters["announces"] += 1
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
