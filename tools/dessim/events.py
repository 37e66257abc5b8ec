"""The event queue of the discrete-event simulator: a virtual clock that jumps.

`at(t, fn, *args)` runs fn(*args) at simulated second t; `run(until)` runs the events in
time order (ties in the order they were scheduled, so a run is reproducible) and leaves
the clock at `until`. Nothing sleeps: a simulated hour takes as long as its events do.
`now` is the current time in seconds, `now_ms` the same in whole milliseconds (what a
node's clock is built from).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any


class EventQueue:
    def __init__(self) -> None:
        self.now = 0.0
        self.now_ms = 0
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0
        self.ran = 0

    def at(self, t: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) at simulated second t (never before now)."""
        if t < self.now:
            t = self.now
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    def after_ms(self, ms: float, fn: Callable[..., Any], *args: Any) -> None:
        self.at(self.now + ms / 1000.0, fn, *args)

    def _set(self, t: float) -> None:
        self.now = t
        self.now_ms = int(t * 1000.0 + 1e-6)

    def run(self, until: float) -> None:
        """Run every event due at or before `until`; the clock ends at `until`."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= until:
            t, _, fn, args = pop(heap)
            self._set(t)
            self.ran += 1
            fn(*args)
        if until > self.now:
            self._set(until)

    def pending(self) -> int:
        return len(self._heap)
