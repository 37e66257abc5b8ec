"""Fidelity: the discrete-event simulator agrees with the multi-process meshsim.

The same topologies run in both: real unix-port nodes on the meshsim medium (speed 10,
frame log on) and the unmodified firmware in tools/dessim. Both are measured the same
way (tools/dessim/fidelity.py), in simulated seconds from the last node's boot. A run of
either is random (the nodes' jitter and intervals), so means over runs are compared:

* total airtime of the first `window` seconds: within 15 %;
* time to converge, as the time until 95 % of the n(n-1) (node, record) pairs are
  known (t95): within 15 % on the 30-node grid (30 % on the 10-node grid, see CASES);
* the time the last record arrives (full convergence): within 30 % on the 30-node
  grid. One lost frame that waits for a PEX back-off decides it, so it spreads widely
  from run to run (coefficient of variation about 15 % on the 30-node grid, 45 % on
  the 10-node one):
  with two meshsim runs a 15 % bound would fail by chance about one run in fourteen,
  while the means measured over many runs agree within a few per cent (30-node grid:
  330 s over 6 meshsim runs, 334 s over 30 dessim runs).

Marked `solo`: meshsim's nodes are deaf while they compute, so its figures depend on the
cores it gets. Alone, four 30-node runs on 2026-12-04 averaged 437.6 s of airtime (dessim
430.8), t95 191.5 s (183.8) and full convergence 346 s (326); with the other xdist worker
busy beside it, one pair of runs averaged 371.6 s of airtime (-14 %).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tools.dessim import fidelity
from tools.meshsim import topology as topo

MESHSIM_RUNS = 2
DESSIM_SEEDS = 16


def _compare(t: topo.Topology, window_s: float, tmp_path: Path) -> dict[str, tuple[float, float]]:
    ms = []
    for i in range(MESHSIM_RUNS):
        r = fidelity.meshsim_run(t, window_s, tmp_path / f"run{i}", speed=10.0)
        assert r["converged"] and r["window_done"], r
        ms.append(r)
    ds = [fidelity.dessim_run(t, seed, window_s) for seed in range(DESSIM_SEEDS)]
    assert all(d["converged"] for d in ds)
    out = {}
    for key in ("airtime_s", "t95_s", "convergence_s"):
        m = statistics.mean(r[key] for r in ms)
        d = statistics.mean(r[key] for r in ds)
        out[key] = (m, d)
        print(f"{len(t.nodes)} nodes {key}: meshsim {m:.1f}, dessim {d:.1f} ({d / m - 1:+.1%})")
    return out


# (grid size, window s, t95 tolerance, full convergence tolerance or None: not asserted).
# On the 10-node grid 95 % of the 90 pairs is the 86th: nearly the last one, so its t95
# spreads like the full convergence and gets the wider bound.
CASES = [(30, 600.0, 0.15, 0.30), (10, 300.0, 0.30, None)]


@pytest.mark.slow
@pytest.mark.solo  # sharing the cores, the 30-node meshsim spent 15 % less airtime
@pytest.mark.upy("pypi")
@pytest.mark.parametrize("n, window_s, t95_tol, conv_tol", CASES)
def test_dessim_agrees_with_meshsim_on_a_grid(
    n: int, window_s: float, t95_tol: float, conv_tol: float | None, tmp_path: Path
) -> None:
    got = _compare(topo.grid(n), window_s, tmp_path)
    m, d = got["airtime_s"]
    assert abs(d / m - 1) <= 0.15
    m, d = got["t95_s"]
    assert abs(d / m - 1) <= t95_tol
    if conv_tol is not None:
        m, d = got["convergence_s"]
        assert abs(d / m - 1) <= conv_tol
