"""The mesh wing's counters: everything it drops or does, also mirrored into metrics.

`drop(reason)` counts `dropped_<reason>` and reports `metrics.dropped("mesh_<reason>")`;
the live view and the tests read `counters`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from loragate.telemetry import Telemetry


class MeshCounters:
    __slots__ = ("counters", "telemetry")

    def __init__(self, telemetry: Telemetry) -> None:
        self.counters: Counter[str] = Counter()
        self.telemetry = telemetry

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def drop(self, reason: str, n: int = 1) -> None:
        self.counters["dropped_" + reason] += n
        self.telemetry.metric("dropped", "mesh_" + reason, n)

    def metric(self, name: str, *args: Any) -> None:
        self.telemetry.metric(name, *args)

    def __getitem__(self, name: str) -> int:
        return self.counters[name]
