"""The reference strategies (tools/dessim/reference.py) against hand-worked topologies,
and the lower bound (tools/dessim/bound.py) against known connected-dominating-set sizes.

Hand-worked counts (every record must reach every node it can; the floods are spread
over a long window so that two floods never share the air):
* naive flooding: every node sends every record exactly once, n * n frames;
* managed flooding, hop limit 3, on a line of 6: a record from node i is sent by i and
  relayed by every node 1..3 hops away (heard with hop_limit 3, 2, 1; a node 4 hops
  away hears it with hop_limit 0 and stays quiet): 4 + 5 + 6 + 6 + 5 + 4 = 30 frames,
  and node j learns i's record only when |i - j| <= 4;
* managed flooding on a star (a hub and 4 leaves, the leaves hear only the hub): a
  leaf's record goes leaf, hub, then each other leaf (they cannot hear each other, so
  none cancels): 5 frames per record, 25 in all, as naive;
* managed flooding on a 2x2 grid where every node hears every other (SF10): the first
  relay is overheard by the other two, which cancel theirs: 2 frames per record, 8.
Naive flooding is checked on the line, the star and that 2x2 grid.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.dessim import bound, reference
from tools.dessim.reference import MANAGED, NAIVE, ReferenceMesh
from tools.dessim.scenario import graph
from tools.meshsim import topology as topo

FRAME = 146  # bytes: a firmware ANNOUNCE of a mesh node's record


def _line(n: int) -> topo.Topology:
    names = [f"n{i}" for i in range(n)]
    links = [[names[i], names[i + 1], {"snr": 5.0}] for i in range(n - 1)]
    return topo.from_dict({"links": links})


def _star(leaves: int) -> topo.Topology:
    return topo.from_dict({"links": [["hub", f"l{i}", {"snr": 5.0}] for i in range(leaves)]})


def _run(t: topo.Topology, strategy: str, sf: int = 7, seed: int = 1) -> ReferenceMesh:
    gw = [next(iter(t.nodes))]
    m = ReferenceMesh(t, gw, strategy, FRAME, sf=sf, seed=seed, spread_s=2000.0 * len(t.nodes))
    m.run(1e6)
    assert m.quiet()
    return m


def _knows(m: ReferenceMesh) -> dict[int, set[int]]:
    return {a.index: set(a.known) for a in m.agents}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    "make, n, sf",
    [(lambda: _line(6), 6, 7), (lambda: _star(4), 5, 7), (lambda: topo.grid(4), 4, 10)],
)
def test_naive_flooding_sends_every_record_once_from_every_node(make, n, sf, seed) -> None:
    m = _run(make(), NAIVE, sf=sf, seed=seed)
    assert len(m.frames) == n * n
    assert all(k == set(range(n)) for k in _knows(m).values())
    per_node = [0] * n
    for f in m.frames:
        per_node[f.sender] += 1
    assert per_node == [n] * n


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_managed_flooding_line_of_six(seed: int) -> None:
    m = _run(_line(6), MANAGED, seed=seed)
    assert len(m.frames) == 30
    for j, known in _knows(m).items():
        assert known == {i for i in range(6) if abs(i - j) <= 4}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_managed_flooding_star(seed: int) -> None:
    m = _run(_star(4), MANAGED, seed=seed)
    assert len(m.frames) == 25
    assert all(k == set(range(5)) for k in _knows(m).values())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_managed_flooding_cancels_on_a_fully_connected_2x2_grid(seed: int) -> None:
    t = topo.grid(4)
    g = graph(t, 10)
    assert all(len(v) == 3 for v in g.values())  # at SF10 the diagonals hear each other
    m = _run(t, MANAGED, sf=10, seed=seed)
    assert len(m.frames) == 8
    assert all(k == set(range(4)) for k in _knows(m).values())


def test_managed_delay_farthest_first() -> None:
    import random

    slot = reference.slot_ms(7, 125_000)
    assert slot == 10  # 2.5 symbols of 1.024 ms + 7.6 ms, truncated
    assert reference.cw_size(-20) == 3 and reference.cw_size(10) == 8
    assert reference.cw_size(-5) == 5  # (15 * 5) // 30 + 3
    rng = random.Random(0)
    far = [reference.weighted_delay_ms(-18, slot, rng) for _ in range(200)]
    near = [reference.weighted_delay_ms(9, slot, rng) for _ in range(200)]
    assert max(far) < 2 * 8 * slot + 8 * slot  # CW 3: at most 8 slots after the base
    assert min(far) >= 2 * 8 * slot and max(near) > max(far)
    assert sum(far) / len(far) < sum(near) / len(near)


def test_nodeinfo_interval_stretches_above_40_nodes() -> None:
    assert reference.nodeinfo_interval_s(40, 7, 125_000) == 3 * 3600
    # 1 + 60 * 128 / (125 * 100)
    assert reference.nodeinfo_interval_s(100, 7, 125_000) == pytest.approx(3 * 3600 * 1.6144)


# -- the lower bound -------------------------------------------------------------------


def _path(n: int) -> bound.Graph:
    return {str(i): [str(j) for j in (i - 1, i + 1) if 0 <= j < n] for i in range(n)}


def _cycle(n: int) -> bound.Graph:
    return {str(i): [str((i - 1) % n), str((i + 1) % n)] for i in range(n)}


def _complete(n: int) -> bound.Graph:
    return {str(i): [str(j) for j in range(n) if j != i] for i in range(n)}


@pytest.mark.parametrize(
    "g, size",
    [
        (_path(2), 1),
        (_path(7), 5),  # the inner nodes
        (_cycle(8), 6),
        (_complete(6), 1),
        ({"h": ["a", "b", "c"], "a": ["h"], "b": ["h"], "c": ["h"]}, 1),  # star
        (graph(topo.grid(9), 7), 3),  # 3x3 grid: the middle row (or column)
        (graph(topo.grid(4), 7), 2),  # 2x2 grid, a 4-cycle at SF7
    ],
)
def test_greedy_cds_on_graphs_with_known_minimum(g: bound.Graph, size: int) -> None:
    cds = bound.greedy_cds(g)
    assert len(cds) == size
    assert bound.is_connected_dominating(g, cds)


@settings(max_examples=60)
@given(st.integers(2, 40), st.integers(0, 10_000))
def test_greedy_cds_is_connected_and_dominating(n: int, seed: int) -> None:
    t = topo.geometric(n, seed=seed, degree=5.0)
    g = graph(t, 7)
    cds = bound.greedy_cds(g)
    assert bound.is_connected_dominating(g, cds)
    assert len(cds) < len(g) or len(g) <= 2


def test_cds_refuses_a_disconnected_graph() -> None:
    with pytest.raises(ValueError, match="not connected"):
        bound.greedy_cds({"a": [], "b": []})


def test_discovery_bound_counts_own_frames_uplink_and_gateway_flood() -> None:
    g = _path(5)  # 0-1-2-3-4, gateway at 0: hops 0..4, CDS = {1, 2, 3}
    hops = {str(i): i for i in range(5)}
    # 5 own frames + (1 + 2 + 3) relays up + (3 - 1) relays of the gateway's record
    assert bound.discovery_bound(g, hops, 1) == 5 + 6 + 2
    assert bound.flood_bound(g, 5) == 15
