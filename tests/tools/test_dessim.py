"""The discrete-event simulator (tools/dessim) runs the unmodified firmware: a small mesh
converges without errors, the same seed gives the same run (also in another process
with another hash seed), a node clock that wraps mid-run changes nothing, the event
queue keeps time order, and the shared air (tools/meshsim/air.py) applies its rules."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from loranode import counters as C
from loranode.clock import PERIOD
from tools.dessim import scenario
from tools.dessim.events import EventQueue
from tools.dessim.world import FirmwareMesh, MeshSpec
from tools.meshsim import topology as topo
from tools.meshsim.air import Air, Params, Station

ROOT = Path(__file__).resolve().parents[2]
P7 = Params(868_100_000, 7, 125_000, 14, 5)


def _digest(mesh: FirmwareMesh) -> str:
    rows = [(f.t, f.sender, f.msg_type, f.hops, f.length) for f in mesh.frames]
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def _mesh(n: int = 9, seed: int = 1, kind: str = "grid", **kw: object) -> FirmwareMesh:
    t = scenario.make_topology(kind, n, seed)
    return FirmwareMesh(MeshSpec(t, scenario.place_gateways(t, 1), seed=seed, **kw))  # type: ignore[arg-type]


def test_small_grid_converges_without_errors() -> None:
    with _mesh() as m:
        t = m.run_until(lambda x: x.fully_converged(), 900.0)
        assert t is not None, "9-node grid did not converge in 900 simulated s"
        assert m.errors() == {}
        for node in m.nodes():
            assert node.c[C.POINTS] == 0  # honest nodes never blame each other
            assert node.c[C.TX] > 0
            d = node.duty
            now = node.clock.now()
            assert d.used_ms(now) <= d.budget_ms() and d.used_ms(now, True) <= d.budget_ms(True)
        # every frame on the air was charged by its sender, to the ms rounding
        air = m.airtime_ms()
        for h, ms in zip(m.hosts, air, strict=True):
            assert abs(h.node.tx_airtime_ms - ms) <= h.node.c[C.TX]


def test_same_seed_same_run_other_seed_other_run() -> None:
    with _mesh(seed=4, kind="geometric") as a, _mesh(seed=4, kind="geometric") as b:
        a.run(240.0)
        b.run(240.0)
        assert len(a.frames) > 50
        assert _digest(a) == _digest(b)
    with _mesh(seed=5, kind="geometric") as c:
        c.run(240.0)
        assert _digest(c) != _digest(a)


_CHILD = """
import hashlib, sys
from tools.dessim import scenario
from tools.dessim.world import FirmwareMesh, MeshSpec
t = scenario.make_topology("geometric", 9, 4)
with FirmwareMesh(MeshSpec(t, scenario.place_gateways(t, 1), seed=4)) as m:
    m.run(240.0)
    rows = [(f.t, f.sender, f.msg_type, f.hops, f.length) for f in m.frames]
    print(hashlib.sha256(repr(rows).encode()).hexdigest())
"""


def test_same_seed_same_run_in_another_process() -> None:
    with _mesh(seed=4, kind="geometric") as a:
        a.run(240.0)
        want = _digest(a)
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(ROOT))
        out = subprocess.run(
            [sys.executable, "-c", _CHILD], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == want


def test_node_clock_wrapping_mid_run_changes_nothing() -> None:
    # every node boots 40 s before its tick counter wraps at 2**30: the firmware compares
    # ticks only as differences, so the run is the same frame for frame
    with _mesh(seed=2) as a, _mesh(seed=2, clock_start=PERIOD - 40_000) as b:
        a.run(300.0)
        b.run(300.0)
        assert _digest(a) == _digest(b)
        assert a.last_new_s() == b.last_new_s()


@given(st.lists(st.tuples(st.floats(0, 100, allow_nan=False), st.integers()), max_size=40))
def test_event_queue_runs_in_time_order_ties_in_schedule_order(
    items: list[tuple[float, int]],
) -> None:
    q = EventQueue()
    ran: list[tuple[float, int]] = []
    for i, (t, _) in enumerate(items):
        q.at(t, lambda t=t, i=i: ran.append((q.now, i)))
    q.run(50.0)
    want = sorted(((t, i) for i, (t, _) in enumerate(items) if t <= 50.0))
    assert ran == want
    assert q.now == 50.0
    q.run(200.0)
    assert len(ran) == len(items)


def test_event_scheduled_in_the_past_runs_now() -> None:
    q = EventQueue()
    q.run(10.0)
    seen: list[float] = []
    q.at(3.0, lambda: seen.append(q.now))
    q.run(10.0)
    assert seen == [10.0]


def _air_pair(rssi_b: float = -90.0) -> tuple[Air, Station, Station, Station]:
    t = topo.from_dict(
        {
            "links": [
                ["a", "r", {"rssi": -80.0}],
                ["b", "r", {"rssi": rssi_b}],
            ]
        }
    )
    air = Air(t, seed=0)
    stations = [Station(n, n.encode() * 8, P7) for n in ("a", "b", "r")]
    for s in stations:
        air.join(s)
    return air, stations[0], stations[1], stations[2]


def test_air_capture_rule_stronger_first_survives() -> None:
    air, a, b, r = _air_pair(-90.0)  # a is 10 dB stronger at r
    ta = air.begin(a, 1, P7, b"x" * 20, 0.0, 50.0)
    tb = air.begin(b, 1, P7, b"y" * 20, 0.01, 50.0)
    got_a = air.finish(ta)
    got_b = air.finish(tb)
    assert [d.station.name for d in got_a] == ["r"] and got_b == []
    assert air.counters["collided"] == 1 and air.counters["delivered"] == 1


def test_air_close_signals_both_lost_and_half_duplex() -> None:
    air, a, b, r = _air_pair(-83.0)  # 3 dB apart: no capture
    ta = air.begin(a, 1, P7, b"x" * 20, 0.0, 50.0)
    tb = air.begin(b, 1, P7, b"y" * 20, 0.01, 50.0)
    assert air.finish(ta) == [] and air.finish(tb) == []
    assert air.counters["collided"] == 2
    # r is sending when a's frame begins: r misses it; a, keying up during r's frame,
    # misses that one; b hears r
    tr = air.begin(r, 2, P7, b"z" * 20, 1.0, 50.0)
    ta = air.begin(a, 2, P7, b"x" * 20, 1.01, 50.0)
    assert [d.station.name for d in air.finish(tr)] == ["b"]
    assert air.finish(ta) == []
    assert air.counters["half_duplex"] == 2


def test_geometric_topology_is_connected_and_reproducible() -> None:
    a = topo.geometric(60, seed=7)
    b = topo.geometric(60, seed=7)
    assert a.nodes == b.nodes
    assert len(topo.components(a)) == 1
    degrees = [len(a.neighbours(x)) for x in a.nodes]
    assert 5 <= sum(degrees) / len(degrees) <= 12


def test_hearers_match_the_pairwise_rule() -> None:
    t = topo.geometric(80, seed=3)
    p = t.model.tx_power_dbm
    for sf in (7, 10):
        for x in list(t.nodes)[:20]:
            slow = [y for y in t.nodes if y != x and t.reception(x, y, sf, p) is not None]
            assert [y for y, _ in t.hearers(x, sf, p)] == slow


def test_gateways_spread_out() -> None:
    t = topo.grid(100)
    gws = scenario.place_gateways(t, 4)
    assert len(set(gws)) == 4
    d = topo.hop_distances(t, gws)
    assert max(d.values()) <= 6  # 4 gateways on a 10x10 grid: nobody far from one
