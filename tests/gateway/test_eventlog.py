"""The life-cycle log: one line per event an operator follows, at a journald priority.

A real EventBus, the real formatter of `logsetup` in journald mode (the `<N>` priority
prefix, as under systemd) writing to a text stream.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from loragate.eventlog import LEVELS, EventLog, event_line
from loragate.events import Event, EventBus, EventKind
from loragate.logsetup import setup_logging


@pytest.fixture
def journal() -> Iterator[tuple[EventBus, io.StringIO]]:
    out = io.StringIO()
    handler = setup_logging("info", stream=out, journald=True)
    bus = EventBus()
    log = EventLog(bus)
    yield bus, out
    log.close()
    logging.getLogger().removeHandler(handler)


CASES = [
    (EventKind.CONNECTED, {"node_id": "0badc0de0badc0de", "address": "127.0.0.2:8333",
                           "direction": "out", "kind": "full", "manual": False},
     "<6>INFO loragate.events: connected node=0badc0de0badc0de address=127.0.0.2:8333 "
     "direction=out kind=full"),
    (EventKind.DISCONNECTED, {"node_id": "0badc0de0badc0de", "address": "127.0.0.2:8333",
                              "reason": "peer closed\nthe stream", "uptime_s": 12.345},
     '<6>INFO loragate.events: disconnected node=0badc0de0badc0de address=127.0.0.2:8333 '
     'reason="peer closed the stream" uptime_s=12.3'),
    (EventKind.BANNED, {"target": "127.13.0.1/32", "reason": "misbehaviour: malformed_frame",
                        "until": 1.7e9, "count": 2},
     '<4>WARNING loragate.events: banned target=127.13.0.1/32 '
     'reason="misbehaviour: malformed_frame" count=2 until=1700000000.0'),
    (EventKind.UNBANNED, {"target": "node:0badc0de0badc0de", "reason": "expired"},
     "<6>INFO loragate.events: unbanned target=node:0badc0de0badc0de reason=expired"),
    (EventKind.BRIDGE_DOWN, {"port": "/dev/ttyUSB0", "why": "serial disconnected: EIO"},
     '<4>WARNING loragate.events: bridge_down port=/dev/ttyUSB0 '
     'why="serial disconnected: EIO"'),
    (EventKind.BRIDGE_UP, {"port": "/dev/ttyUSB0", "board": "b0a4d00000000001",
                           "firmware": "loranode-0.1"},
     "<6>INFO loragate.events: bridge_up port=/dev/ttyUSB0 board=b0a4d00000000001 "
     "firmware=loranode-0.1"),
    (EventKind.BUDGET_EXHAUSTED, {"port": "/dev/ttyUSB0", "used_s": 35.98, "budget_s": 36.0,
                                  "returns_in_s": 41.0},
     "<4>WARNING loragate.events: budget_exhausted port=/dev/ttyUSB0 used_s=36.0 "
     "budget_s=36.0 returns_in_s=41.0"),
    (EventKind.DOWNLINK_SHED, {"port": "/dev/ttyUSB0", "refused": 5,
                               "shed": {"budget": 4, "origin_rate": 1}, "window_s": 60.0},
     "<4>WARNING loragate.events: downlink_shed port=/dev/ttyUSB0 refused=5 "
     "shed=budget:4,origin_rate:1 window_s=60.0"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "details", "line"), CASES, ids=[c[0].value for c in CASES])
def test_each_event_is_one_line_at_its_priority(journal, kind, details, line) -> None:
    bus, out = journal
    bus.publish(Event(kind, 0.0, details))
    assert out.getvalue() == line + "\n"


def test_busy_events_stay_out_of_the_log(journal) -> None:
    bus, out = journal
    bus.emit(EventKind.DISCOVERED, node_id="x", source="mesh")
    bus.emit(EventKind.SCORE_CHANGED, node_id="x", score=50)
    assert out.getvalue() == ""
    assert EventKind.DISCOVERED not in LEVELS and EventKind.SCORE_CHANGED not in LEVELS


def test_every_life_cycle_kind_has_a_level_and_empty_values_are_quoted() -> None:
    lifecycle = set(EventKind) - {EventKind.DISCOVERED, EventKind.SCORE_CHANGED}
    assert set(LEVELS) == lifecycle
    assert event_line(Event(EventKind.UNBANNED, 0.0, {"target": "", "reason": None})) == (
        'unbanned target=""'
    )
