"""The same discovery run in both simulators, measured the same way.

`meshsim_run` starts real unix-port nodes on the meshsim medium (tools/meshsim/launcher)
with the medium's frame log on, on a topology whose nodes are named n0, n1, ...;
`dessim_run` builds the same topology and node settings (and a boot spread like the
launcher's) in the discrete-event simulator. Both report, in simulated seconds
counted from the last node's boot:

* `convergence_s`: when the last node verified the record of the last other node
  (every node knows every node: meshsim's test of convergence);
* `t95_s`: when 95 % of the n(n-1) (node, other node's record) pairs were known
  (linear between samples: every simulated second in dessim, every status poll in
  meshsim);
* `airtime_s`: the time on air of every frame that started within the first
  `window_s` (the whole mesh, all kinds of frames).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..meshsim.launcher import Mesh
from ..meshsim.topology import Topology
from .world import FirmwareMesh, MeshSpec


def crossing_s(samples: list[tuple[float, float]], level: float) -> float | None:
    """The first time the sampled curve (time, value) reaches `level`, linear between
    samples; None if it never does."""
    prev = None
    for t, v in samples:
        if v >= level:
            if prev is None or prev[1] >= level:
                return t
            t0, v0 = prev
            return t0 + (t - t0) * (level - v0) / (v - v0)
        prev = (t, v)
    return None


def _window_airtime_s(frames: list[tuple[float, float]], start: float, window_s: float) -> float:
    return sum(a for t, a in frames if start <= t < start + window_s) / 1000.0


def meshsim_run(
    topology: Topology,
    window_s: float,
    workdir: Path,
    speed: float = 10.0,
    timeout_s: float = 240.0,
) -> dict[str, Any]:
    n = len(topology.nodes)
    mesh = Mesh(n, topology, workdir, speed=speed, frame_log=True)
    curve: list[tuple[float, float]] = []

    def sample(m: Mesh) -> None:
        sts = [s for s in m.statuses() if s]
        if sts:
            curve.append((max(s["sim_s"] for s in sts), m.knowledge() / (n * (n - 1))))

    def converged(m: Mesh) -> bool:
        sample(m)
        return m.converged()

    with mesh:
        ok = mesh.wait_until(converged, timeout=timeout_s, poll=0.25)
        conv = mesh.convergence_s()
        sts = [s for s in mesh.statuses() if s]
        boots = [s["sim_s"] - s["up_s"] for s in sts]
        boot = max(boots)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # until the window is over on the medium
            frames = mesh.frames()
            if frames and frames[-1]["t"] >= boot + window_s:
                break
            time.sleep(0.5)
        frames = mesh.frames()
    t95 = crossing_s(curve, 0.95)
    return {
        "converged": ok,
        "convergence_s": conv,
        "t95_s": None if t95 is None else t95 - boot,
        "airtime_s": _window_airtime_s([(f["t"], f["airtime_ms"]) for f in frames], boot, window_s),
        "window_done": bool(frames) and frames[-1]["t"] >= boot + window_s,
        "boot_spread_s": boot - min(boots),
    }


def dessim_run(
    topology: Topology, seed: int, window_s: float, boot_spread_s: float = 1.5
) -> dict[str, Any]:
    n = len(topology.nodes)
    curve: list[tuple[float, float]] = []

    def converged(x: FirmwareMesh) -> bool:
        ids = {h.node.id for h in x.hosts}
        known = sum(len(x.verified_ids(h.node) & ids) for h in x.hosts)
        curve.append((x.now, known / (n * (n - 1))))
        return known == n * (n - 1)

    with FirmwareMesh(MeshSpec(topology, seed=seed, boot_spread_s=boot_spread_s)) as m:
        boot = max(m.boot_times())
        t = m.run_until(converged, boot + 20 * window_s, step_s=1.0)
        m.run(max(m.now, boot + window_s))
        last = m.last_new_s()
        t95 = crossing_s(curve, 0.95)
        return {
            "converged": t is not None,
            "convergence_s": None if t is None or last is None else last - boot,
            "t95_s": None if t95 is None else t95 - boot,
            "airtime_s": _window_airtime_s([(f.t, f.airtime_ms) for f in m.frames], boot, window_s),
            "window_done": True,
        }
