"""The gateway's life-cycle log: one line per event of the bus, at a level journald maps.

`EventLog(bus)` writes what an operator follows in `journalctl -u loragate`: peers
connecting and leaving, bans and unbans, evictions, the bridge's link going up and down,
its duty-cycle budget running out and coming back, and downlink traffic shed for lack
of airtime. Each line is the event's name and its fields as `key=value` (values with
spaces quoted), e.g.

    connected node=0badc0de0badc0de address=127.0.0.2:8333 direction=out kind=full
    bridge_down port=/dev/ttyUSB0 why="serial disconnected: [Errno 5] EIO"

Levels (journald priorities through `logsetup`): INFO for the ordinary comings and
goings, WARNING for what needs a look (a ban, the bridge down, the budget exhausted,
traffic shed). Discoveries and score changes are too many for a log line each; they stay
on the bus and in the metrics. Logger: `loragate.events`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from loragate.events import Event, EventBus, EventKind

log = logging.getLogger("loragate.events")

LEVELS: dict[EventKind, int] = {
    EventKind.CONNECTED: logging.INFO,
    EventKind.DISCONNECTED: logging.INFO,
    EventKind.EVICTED: logging.INFO,
    EventKind.BANNED: logging.WARNING,
    EventKind.UNBANNED: logging.INFO,
    EventKind.BRIDGE_UP: logging.INFO,
    EventKind.BRIDGE_DOWN: logging.WARNING,
    EventKind.BUDGET_EXHAUSTED: logging.WARNING,
    EventKind.BUDGET_RETURNED: logging.INFO,
    EventKind.DOWNLINK_SHED: logging.WARNING,
}
# The fields worth a place on the line, in this order (others are left out).
FIELDS = (
    "node_id", "target", "address", "direction", "kind", "manual", "reason", "count",
    "until", "uptime_s", "port", "board", "firmware", "why", "used_s", "budget_s",
    "returns_in_s", "refused", "shed", "window_s",
)  # fmt: skip
SHORT = {"node_id": "node"}


def _value(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.1f}"
    elif isinstance(value, dict):
        text = ",".join(f"{k}:{v}" for k, v in sorted(value.items()))
    else:
        text = str(value)
    text = " ".join(text.split())
    return f'"{text}"' if (" " in text or not text) else text


def event_line(event: Event) -> str:
    """`kind key=value ...` for one event (one line, whatever the fields hold)."""
    parts = [event.kind.value]
    for key in FIELDS:
        value = event.details.get(key)
        if value is None or value is False:
            continue
        parts.append(f"{SHORT.get(key, key)}={_value(value)}")
    return " ".join(parts)


class EventLog:
    """Logs the life-cycle events of `bus` (see the module docstring)."""

    def __init__(self, bus: EventBus, logger: logging.Logger = log) -> None:
        self.logger = logger
        self._remove: Callable[[], None] | None = bus.add_callback(self._on_event)

    def _on_event(self, event: Event) -> None:
        level = LEVELS.get(event.kind)
        if level is not None and self.logger.isEnabledFor(level):
            self.logger.log(level, "%s", event_line(event))

    def close(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None
