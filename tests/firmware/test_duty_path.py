"""Property: random traffic through the node's own send path never exceeds the region's
duty cycle (issue 4, item 6).

An in-process Node (the firmware code, on CPython) with a stepped clock gets random
application messages of every priority and its own ANNOUNCEs (background traffic),
and sends whatever `next_frame()` releases, charging each frame at the end of its
transmission as the transmit task does. The airtime of every frame that went out is
recomputed from its length with lorawire.airtime, and every window of one hour of
transmission starts is summed independently of the node's accountant: the total stays
within the EU868 g1 sub-band's 1 % (36 s per hour), and announces within half of it.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from nodekit import CFG, counts, with_opts

from loranode.node import Node
from loranode.txqueue import BLOCKS, CONTROL, GOSSIP
from lorawire import messages as msg
from lorawire.airtime import time_on_air_ms
from lorawire.identity import Identity

HOUR_MS = 3_600_000
BUDGET_MS = 36_000  # EU868 g1 (868.0-868.6 MHz): 1 % of an hour
BACKGROUND_MS = BUDGET_MS // 2


class SteppedClock:
    """The node's clock interface (now / wall_ms) driven by the test."""

    def __init__(self) -> None:
        self.t = 1

    def now(self) -> int:
        return self.t

    def wall_ms(self, ms: int) -> int:
        return ms


class _NoRadio:
    speed = 1.0
    name = "t"


step = st.tuples(
    st.integers(0, 60_000),  # ms until the next step
    st.lists(  # messages the application hands in at this step
        st.tuples(st.integers(1, 180), st.sampled_from([CONTROL, BLOCKS, GOSSIP])),
        max_size=3,
    ),
    st.booleans(),  # the node queues its own ANNOUNCE too
)


def _worst_window(sent: list[tuple[int, float]]) -> float:
    """Largest airtime total over transmissions starting within any one hour."""
    worst, j, total = 0.0, 0, 0.0
    for start, air in sent:
        total += air
        while sent[j][0] <= start - HOUR_MS:
            total -= sent[j][1]
            j += 1
        worst = max(worst, total)
    return worst


@settings(max_examples=40)
@given(st.lists(step, min_size=50, max_size=400))
def test_random_traffic_never_exceeds_the_duty_cycle(tmp_path_factory, steps) -> None:
    opts = {"state_dir": str(tmp_path_factory.mktemp("duty")), "stdin": False}
    cfg = dict(CFG, capacities=dict(CFG["capacities"], txqueue=16))
    node = Node(with_opts(cfg, opts), Identity(bytes(range(32))), _NoRadio())
    clock = SteppedClock()
    node.clock = clock
    assert node.duty.budget_ms() == BUDGET_MS
    sent: list[tuple[int, float]] = []
    background: list[tuple[int, float]] = []
    for gap, messages, announce in steps:
        clock.t += gap
        for size, prio in messages:
            node.app_send(None, msg.TX, {0: bytes(size)}, prio)
        if announce:
            node.announce(clock.t)
        while (data := node.next_frame()) is not None:
            air = time_on_air_ms(len(data), node.sf, node.bw, node.cr)
            sent.append((clock.t, air))
            if data[1] == msg.ANNOUNCE:
                background.append((clock.t, air))
            clock.t += int(air) + 1  # half-duplex: the next frame starts after this one
            node.charge(data, clock.t)
    assert _worst_window(sent) <= BUDGET_MS
    assert _worst_window(background) <= BACKGROUND_MS
    assert counts(node)["tx"] == len(sent)
