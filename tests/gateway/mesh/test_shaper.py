"""MeshShaper: frames for the mesh released as the board's duty-cycle budget allows
(against a board process on real pseudo-terminals, and in memory with a driven clock).
"""

from __future__ import annotations

from typing import Any

from bridgekit import GATEWAY_ID, make_frame, node, until
from hypothesis import given, settings
from hypothesis import strategies as st

from loragate.mesh.link import PRIO_BLOCK, PRIO_GOSSIP, PRIO_TX, PRIORITIES, MeshLink
from loragate.mesh.serial import SerialLink
from loragate.mesh.shaper import MeshShaper


async def test_shaper_holds_frames_until_budget_returns(bridge: Any) -> None:
    # SF7/125k: a 40-byte frame is ~92 ms; a 300 ms budget takes three of them.
    h = await bridge(
        {"budget_ms": 300, "refill_ms": 1200, "stats_interval_s": 0},
        shaper={"window": 1, "probe_interval": 0.3},
    )
    shaper, board = h.shaper, h.board
    frames = [make_frame(GATEWAY_ID, i, bytes([0x40 + i]) * 19) for i in range(8)]
    prios = [PRIO_GOSSIP, PRIO_TX, PRIO_BLOCK, PRIO_GOSSIP] * 2
    for f, p in zip(frames, prios, strict=True):
        assert shaper.submit(f, p)
    await until(lambda: shaper.stats.sent == 8, timeout=10)
    refill = board.of("refill")
    assert refill, "the budget never ran out"
    txs = board.of("tx")
    before = [e for e in txs if e["t"] < refill[0]["t"]]
    after = [e for e in txs if e["t"] >= refill[0]["t"]]
    assert len(before) == 3 and len(after) == 5
    # Highest priority first: both blocks, then both transactions, then gossip.
    order = [frames.index(bytes.fromhex(e["frame"])) for e in txs]
    assert [prios[i] for i in order] == sorted(prios)
    # The shaper did not hammer the board while waiting: one refusal taught it the time.
    assert 1 <= shaper.stats.deferred <= 2
    assert len(board.of("deferred")) == shaper.stats.deferred
    assert shaper.counters()["queued"] == 0 and not shaper.stats.dropped


async def test_shaper_waits_on_stats_and_probes(bridge: Any) -> None:
    # The board reports a full budget before anything is sent: the shaper waits for the
    # stats and only probes once per probe_interval.
    h = await bridge(
        {"budget_ms": 200, "used_ms": 200, "refill_ms": 800, "stats_interval_s": 0},
        shaper={"window": 2, "probe_interval": 0.4},
    )
    shaper, board, mesh = h.shaper, h.board, h.mesh
    await board.cmd(cmd="stats")
    await until(lambda: mesh.airtime_used_ms == 200)
    assert mesh.budget_wait(50) is None
    for i in range(3):
        shaper.submit(make_frame(GATEWAY_ID, i), PRIO_TX)
    await until(lambda: shaper.stats.sent == 3, timeout=8)
    assert shaper.stats.probes >= 1
    assert len(board.of("deferred")) <= 2


def _shaper(capacity: int = 4, **kw: Any) -> tuple[MeshShaper, list[float]]:
    """A shaper whose pump is not started: exercises the queue policy alone."""
    now = [1000.0]
    serial = SerialLink("/nonexistent", 115200, on_packet=lambda p: None)
    mesh = MeshLink(serial)
    return MeshShaper(mesh, capacity=capacity, clock=lambda: now[0], **kw), now


def test_full_queue_drops_lowest_priority_oldest_first() -> None:
    shaper, _ = _shaper(capacity=4)
    g = [make_frame(node(1), i) for i in range(3)]
    for f in g:
        assert shaper.submit(f, PRIO_GOSSIP)
    assert shaper.submit(make_frame(node(2), 0), PRIO_TX)
    # Full: a block evicts the oldest gossip, a gossip frame is refused.
    assert shaper.submit(make_frame(node(3), 0), PRIO_BLOCK)
    assert not shaper.submit(make_frame(node(1), 9), PRIO_GOSSIP)
    assert [f for p, _, f in shaper.waiting() if p == PRIO_GOSSIP] == g[1:]
    assert shaper.stats.dropped == {"queue_full": 2}
    assert shaper.stats.dropped_by_priority == {PRIO_GOSSIP: 2}
    # Two more blocks: the remaining gossip goes, then the transaction stays (block > tx).
    assert shaper.submit(make_frame(node(3), 1), PRIO_BLOCK)
    assert shaper.submit(make_frame(node(3), 2), PRIO_BLOCK)
    assert shaper.queued_by_priority() == {"control": 0, "block": 3, "tx": 1, "gossip": 0}
    assert len(shaper) == 4


def test_frames_expire_by_priority_deadline() -> None:
    shaper, now = _shaper(capacity=8, max_age={0: 5, 1: 50, 2: 20, 3: 10})
    shaper.submit(make_frame(node(1), 0), PRIO_GOSSIP)
    shaper.submit(make_frame(node(1), 1), PRIO_TX)
    shaper.submit(make_frame(node(1), 2), PRIO_BLOCK)
    now[0] += 15
    shaper.expire(now[0])
    assert shaper.queued_by_priority() == {"control": 0, "block": 1, "tx": 1, "gossip": 0}
    now[0] += 10
    shaper.expire(now[0])
    assert len(shaper) == 1 and shaper.stats.dropped == {"expired": 2}


def test_one_origin_cannot_flood_the_mesh() -> None:
    shaper, now = _shaper(capacity=16, origin_rate=1.0, origin_burst=3, origin_max_queued=4)
    sent = [shaper.submit(make_frame(node(1), i), PRIO_TX, origin="peerA") for i in range(10)]
    assert sent == [True] * 3 + [False] * 7
    assert shaper.stats.dropped["rate_limited"] == 7
    # Another origin and local traffic are unaffected.
    assert shaper.submit(make_frame(node(2), 0), PRIO_TX, origin="peerB")
    assert all(shaper.submit(make_frame(node(3), i), PRIO_TX) for i in range(5))
    # Tokens come back with time, but the origin's share of the queue is capped.
    now[0] += 10
    sent = [shaper.submit(make_frame(node(1), i), PRIO_TX, origin="peerA") for i in range(3)]
    assert sent == [True, False, False]
    assert shaper.stats.dropped["origin_share"] == 2


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(PRIORITIES),
            st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
            st.floats(min_value=0, max_value=30),
        ),
        max_size=80,
    )
)
def test_shaper_queue_never_exceeds_capacity(ops: list[tuple[int, str | None, float]]) -> None:
    shaper, now = _shaper(capacity=6, origin_max_queued=3, origin_rate=0.5, origin_burst=2)
    accepted = 0
    for i, (prio, origin, dt) in enumerate(ops):
        now[0] += dt
        accepted += shaper.submit(make_frame(node(1), i % 65536), prio, origin)
        waiting = shaper.waiting()
        assert len(shaper) == len(waiting) <= 6
        for o, n in shaper.queued_by_origin().items():
            assert 0 < n <= 3 and n == sum(1 for _, origin, _ in waiting if origin == o)
    s = shaper.stats
    # Conservation: every frame offered is queued or counted under exactly one drop reason.
    assert s.submitted == len(ops) == len(shaper) + sum(s.dropped.values())
    assert accepted >= len(shaper)
