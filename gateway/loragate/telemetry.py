"""Where the gateway's parts report what happens: Prometheus metrics and lifecycle events.

One `Telemetry` is shared by every part of a gateway (the peer manager's parts and the
mesh wing). `metric(name, *args)` calls the `GatewayMetrics` method of that name when
metrics are configured; metrics are optional and must never break the caller, so a
missing metrics object or a failing call is ignored (logged at debug). `emit` publishes
an `Event` on the bus now.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from loragate.events import Event, EventBus, EventKind

if TYPE_CHECKING:
    from loragate.metrics import GatewayMetrics

log = logging.getLogger(__name__)


class Telemetry:
    __slots__ = ("metrics", "bus")

    def __init__(self, metrics: GatewayMetrics | None = None, bus: EventBus | None = None) -> None:
        self.metrics = metrics
        self.bus = bus if bus is not None else EventBus()

    def metric(self, name: str, *args: Any) -> None:
        m = self.metrics
        if m is None:
            return
        try:
            getattr(m, name)(*args)
        except Exception:
            log.debug("metrics.%s failed", name, exc_info=True)

    def emit(self, kind: EventKind, /, **details: Any) -> None:
        self.bus.publish(Event(kind, time.time(), details))
