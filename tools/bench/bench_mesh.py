"""Mesh discovery benchmark: real unix-port nodes on the meshsim medium (grid topology).

Prints, for 10 and 30 nodes (RUNS), the simulated time until every node has verified the
record of every other node, and the airtime each node spent (mean / max, and the list)
next to the region's budget (lorawire.regions, via the launcher). Runs at a time
acceleration of SPEED; whole run under about three minutes. `main(runs=((3, 30.0),))`
is a smoke run of one 3-node mesh."""

from __future__ import annotations

import statistics
import time

from tools.meshsim.launcher import Mesh, hops_diameter

SPEED = 20.0
RUNS = ((10, 60.0), (30, 110.0))  # (nodes, wall-clock timeout in s)


def run(n: int, timeout: float, topology: str = "grid", speed: float = SPEED) -> dict[str, object]:
    mesh = Mesh(n, topology, speed=speed, seed=n)
    with mesh:
        t0 = time.monotonic()
        ok = mesh.wait_until(lambda m: m.converged(), timeout=timeout, poll=1.0)
        wall = time.monotonic() - t0
        conv = mesh.convergence_s()
        return {
            "n": n,
            "diameter": hops_diameter(mesh.topology, mesh.sf),
            "converged": ok,
            "convergence_s": conv,
            "known": mesh.knowledge(),
            "wall_s": wall,
            "airtime_ms": mesh.airtime(),
            "region": mesh.region,
            "limits": mesh.limits(),
        }


def main(runs: tuple[tuple[int, float], ...] = RUNS) -> None:
    for n, timeout in runs:
        r = run(n, timeout)
        lim: dict[str, int] = r["limits"]  # type: ignore[assignment]
        window = "hour" if lim["window_ms"] == 3600000 else f"{lim['window_ms']} ms"
        budget = f"{r['region']} {lim['duty_ppm'] / 10000:g} % budget: {lim['budget_ms']} ms"
        budget += f" per {window}"
        air = list(r["airtime_ms"].values())  # type: ignore[attr-defined]
        label = f"mesh {n} nodes grid (diameter {r['diameter']} hops, speed {SPEED:g})"
        if r["converged"]:
            print(f"{label} convergence: {r['convergence_s']:.1f} simulated s", flush=True)
        else:
            print(
                f"{label} convergence: NOT within {timeout:.0f} s wall "
                f"({r['known']}/{n * (n - 1)} records known)",
                flush=True,
            )
        print(
            f"{label} airtime per node: mean {statistics.mean(air):.0f} ms, max {max(air)} ms "
            f"({budget})",
            flush=True,
        )
        print(f"{label} airtime list: {air} ms", flush=True)


if __name__ == "__main__":
    main()
