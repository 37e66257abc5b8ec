"""The mesh at scale (issue 12): discovery, upkeep and sync load, from the discrete-event
simulator (tools/dessim) running the unmodified firmware, next to naive flooding,
Meshtastic's managed flooding and the lower bound on the same air and topologies.

Cases: grids and random geometric graphs (mean degree 10 at SF7; the same positions at
SF10, where each node reaches farther) of 30, 100, 300 and 1,000 nodes, one gateway per
started 100 nodes (spread out), SF7 and SF10 at 125 kHz, EU868 868.1 MHz (1 %: 36 s of
airtime per node per hour). Per case:

* discovery: the simulated time until every node holds a verified gateway record (its
  way upstream) and the gateways together hold the verified records of >= 99 % of the
  nodes (goal: <= 600 s at SF7, <= 3600 s at SF10), run for at most 1.5x the goal; the
  airtime spent by then (the whole mesh), as a ratio to naive flooding, managed flooding,
  the issue's flood bound (every record to every node: n x |CDS| frames) and the
  discovery bound (own frames + relays to the nearest gateway + the gateways' records to
  all: tools/dessim/bound.py). The reference strategies flood every record once, the
  origins spread over half the goal time (tools/dessim/reference.py); naive flooding of
  1,000 nodes is computed (n x n frames, its best case), not simulated.
* steady state: background airtime (announces, peer exchange, pings and their relays;
  no application load) per node per hour in a window that starts once discovery is
  over (STEADY_FROM_S, or the end of the discovery run if later): STEADY_WINDOW_S long,
  shorter for 1,000 nodes (said in the line). Goal: <= 5 % of the budget, 1.8 s/h. The
  references' upkeep is computed: one flood per node per Meshtastic NodeInfo interval
  (3 h, stretched above 40 nodes).
* load (SF7 only): one 150-byte transaction per node per 10 min upstream and one block per
  10 min from the gateways, from boot on (tools/dessim/load.py): the share of
  transactions at a gateway within 5 min (goal >= 95 %), the share of nodes the worst
  block reached (goal >= 99 %) and the busiest node's airtime against its budget.

`main()` prints one line per figure (`label: figure ...`) and a summary table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lorawire import frame as fr
from lorawire.airtime import time_on_air_ms
from tools.dessim import bound, load, reference, scenario
from tools.dessim.world import FirmwareMesh, MeshSpec
from tools.meshsim import topology as topo
from tools.meshsim.launcher import BANDWIDTH_HZ

SIZES = (30, 100, 300, 1000)
KINDS = ("grid", "geometric")
SFS = (7, 10)
SEED = 1
GOAL_DISCOVERY_S = {7: 600.0, 10: 3600.0}
GOAL_STEADY_S_PER_H = 1.8
GOAL_TX_SHARE = 0.95
GOAL_BLOCK_SHARE = 0.99
BUDGET_S_PER_H = 36.0
STEADY_FROM_S = 3600.0
STEADY_WINDOW_S = 3600.0
LARGE = 1000  # from this size on: shorter windows, naive flooding computed
STEADY_WINDOW_LARGE_S = 1200.0
LOAD_S = 3600.0
LOAD_LARGE_S = 1800.0
NAIVE_SIMULATED_MAX = 300


@dataclass
class Case:
    kind: str
    n: int
    sf: int

    @property
    def label(self) -> str:
        return f"scale {self.kind} {self.n} SF{self.sf}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _ratio(a: float, b: float) -> str:
    return f"x{a / b:.2f}" if b > 0 else "x-"


def firmware_case(case: Case, seed: int = SEED) -> dict[str, Any]:
    t = scenario.make_topology(case.kind, case.n, seed)
    gws = scenario.place_gateways(t, scenario.gateways_for(case.n))
    goal = GOAL_DISCOVERY_S[case.sf]
    limit = 1.5 * goal
    with FirmwareMesh(MeshSpec(t, gws, sf=case.sf, seed=seed)) as m:
        node = next(h.node for h in m.hosts if h.name not in m.gateways)
        frame_len = len(node.record) + fr.OVERHEAD_BROADCAST
        done = m.run_until(load.discovered, limit, step_s=10.0)
        end = done if done is not None else limit
        out: dict[str, Any] = {
            "topology": t,
            "gateways": gws,
            "frame_len": frame_len,
            "discovery_s": done,
            "discovery_airtime_s": sum(m.airtime_ms(0.0, end)) / 1000.0,
            "routed": load.routed(m),
            "gateway_share": load.gateway_share(m),
        }
        window = STEADY_WINDOW_LARGE_S if case.n >= LARGE else STEADY_WINDOW_S
        start = max(STEADY_FROM_S, m.now)
        m.run(start + window)
        steady = sum(m.airtime_ms(start, start + window)) / 1000.0
        out["steady_window_s"] = window
        out["steady_s_per_node_h"] = steady / case.n / (window / 3600.0)
        out["errors"] = m.errors()
    return out


def reference_case(
    case: Case, fw: dict[str, Any], strategy: str, seed: int = SEED
) -> dict[str, Any]:
    t: topo.Topology = fw["topology"]
    goal = GOAL_DISCOVERY_S[case.sf]
    airtime = float(time_on_air_ms(fw["frame_len"], case.sf, BANDWIDTH_HZ, coding_rate=5))
    interval = reference.nodeinfo_interval_s(case.n, case.sf, BANDWIDTH_HZ)
    if strategy == reference.NAIVE and case.n > NAIVE_SIMULATED_MAX:
        frames = case.n * case.n
        return {
            "computed": True,
            "airtime_s": frames * airtime / 1000.0,
            "routed": 1.0,
            "gateway_share": 1.0,
            "discovery_s": None,
            "steady_s_per_node_h": case.n * airtime / 1000.0 * 3600.0 / reference.NODEINFO_S,
        }
    m = reference.ReferenceMesh(
        t, fw["gateways"], strategy, fw["frame_len"], sf=case.sf, seed=seed, spread_s=goal / 2
    )
    done = None
    limit = 8 * goal
    while m.now < limit and not m.quiet():
        m.run(m.now + 10.0)
        if done is None and m.routed_share() >= 1.0 and m.gateway_share() >= 0.99:
            done = m.now
    per_flood = len(m.frames) / case.n
    if strategy == reference.NAIVE:
        interval = reference.NODEINFO_S  # no stretching: naive flooding does not adapt
    return {
        "computed": False,
        "airtime_s": m.airtime_ms() / 1000.0,
        "routed": m.routed_share(),
        "gateway_share": m.gateway_share(),
        "discovery_s": done,
        "steady_s_per_node_h": per_flood * airtime / 1000.0 * 3600.0 / interval,
    }


def bounds(case: Case, fw: dict[str, Any]) -> dict[str, float]:
    t: topo.Topology = fw["topology"]
    g = scenario.graph(t, case.sf)
    airtime = float(time_on_air_ms(fw["frame_len"], case.sf, BANDWIDTH_HZ, coding_rate=5))
    hops = topo.hop_distances(t, list(fw["gateways"]), case.sf)
    return {
        "cds": float(len(bound.greedy_cds(g))),
        "flood_s": bound.flood_bound(g, case.n) * airtime / 1000.0,
        "task_s": bound.discovery_bound(g, hops, len(fw["gateways"])) * airtime / 1000.0,
    }


def load_case(case: Case, seed: int = SEED) -> dict[str, Any]:
    t = scenario.make_topology(case.kind, case.n, seed)
    gws = scenario.place_gateways(t, scenario.gateways_for(case.n))
    duration = LOAD_LARGE_S if case.n >= LARGE else LOAD_S
    with FirmwareMesh(MeshSpec(t, gws, sf=case.sf, seed=seed, app=load.LoadApp.factory)) as m:
        ld = load.Load(m)
        worst = 0.0
        while m.now < duration:
            m.run(m.now + 60.0)
            for h in m.hosts:
                d = h.node.duty
                worst = max(worst, d.used_ms(h.clock.now()) / d.budget_ms())
        ok, due = ld.tx_delivery()
        reach = ld.block_reach()
        return {
            "duration_s": duration,
            "tx_share": ok / due if due else 0.0,
            "tx_due": due,
            "block_worst": min(reach) if reach else 0.0,
            "blocks": len(reach),
            "duty_worst": worst,
            "errors": m.errors(),
        }


def _time(t: float | None) -> str:
    return "not reached" if t is None else f"{t:.0f} simulated s"


def report(case: Case, seed: int = SEED) -> dict[str, Any]:
    fw = firmware_case(case, seed)
    naive = reference_case(case, fw, reference.NAIVE, seed)
    managed = reference_case(case, fw, reference.MANAGED, seed)
    lb = bounds(case, fw)
    goal = GOAL_DISCOVERY_S[case.sf]
    lab = case.label
    met = fw["discovery_s"] is not None and fw["discovery_s"] <= goal
    print(
        f"{lab} discovery: {_time(fw['discovery_s'])} (goal <= {goal:.0f} s: "
        f"{'met' if met else 'NOT met'}; routed {_pct(fw['routed'])}, gateways know "
        f"{_pct(fw['gateway_share'])}; managed flooding: routed {_pct(managed['routed'])}, "
        f"known {_pct(managed['gateway_share'])})",
        flush=True,
    )
    air = fw["discovery_airtime_s"]
    naive_note = "naive computed" if naive["computed"] else "naive"
    print(
        f"{lab} discovery airtime: {air:.1f} s ({naive_note} {_ratio(air, naive['airtime_s'])}, "
        f"managed {_ratio(air, managed['airtime_s'])}, flood bound {_ratio(air, lb['flood_s'])}, "
        f"discovery bound {_ratio(air, lb['task_s'])}; |CDS| {lb['cds']:.0f})",
        flush=True,
    )
    st = fw["steady_s_per_node_h"]
    ok = st <= GOAL_STEADY_S_PER_H
    short = f", {fw['steady_window_s'] / 60:.0f} min window" if case.n >= LARGE else ""
    print(
        f"{lab} steady background: {st:.2f} s per node per hour (goal <= "
        f"{GOAL_STEADY_S_PER_H} s: {'met' if ok else 'NOT met'}; "
        f"{100 * st / BUDGET_S_PER_H:.1f} % of the budget{short}; managed "
        f"{managed['steady_s_per_node_h']:.2f}, naive {naive['steady_s_per_node_h']:.2f})",
        flush=True,
    )
    row: dict[str, Any] = {
        "case": case, "fw": fw, "naive": naive, "managed": managed, "lb": lb, "load": None
    }  # fmt: skip
    errs = dict(fw["errors"])
    if case.sf == 7:
        ld = load_case(case, seed)
        row["load"] = ld
        errs.update(ld["errors"])
        lok = ld["tx_share"] >= GOAL_TX_SHARE and ld["block_worst"] >= GOAL_BLOCK_SHARE
        lok = lok and ld["duty_worst"] <= 1.0
        print(
            f"{lab} load: {_pct(ld['tx_share'])} of {ld['tx_due']} txs at a gateway within "
            f"5 min, worst of {ld['blocks']} blocks reached {_pct(ld['block_worst'])} of the "
            f"nodes, busiest node {_pct(ld['duty_worst'])} of its duty cycle "
            f"({'met' if lok else 'NOT met'}; {ld['duration_s'] / 60:.0f} min)",
            flush=True,
        )
    if errs:
        print(f"{lab} node errors: {len(errs)} nodes, first {next(iter(errs.items()))}")
    return row


def _cell(t: float | None) -> str:
    return "-" if t is None else f"{t:.0f}"


def table(rows: Sequence[dict[str, Any]]) -> None:
    print(
        "scale table: topology n SF | discovery s (goal) | airtime s: /naive /managed /flood "
        "/bound | steady s/node/h (managed) | load tx % blocks % duty %"
    )
    for r in rows:
        c: Case = r["case"]
        fw, nv, mg, lb, ld = r["fw"], r["naive"], r["managed"], r["lb"], r["load"]
        air = fw["discovery_airtime_s"]
        load_cells = (
            f"{100 * ld['tx_share']:.1f} {100 * ld['block_worst']:.1f} {100 * ld['duty_worst']:.0f}"
            if ld
            else "- - -"
        )
        print(
            f"  {c.kind:9s} {c.n:5d} {c.sf:2d} | {_cell(fw['discovery_s']):>5s} "
            f"({GOAL_DISCOVERY_S[c.sf]:.0f}) | {air:8.1f} {air / nv['airtime_s']:5.2f} "
            f"{air / mg['airtime_s']:5.2f} {air / lb['flood_s']:5.2f} {air / lb['task_s']:5.2f} | "
            f"{fw['steady_s_per_node_h']:5.2f} ({mg['steady_s_per_node_h']:.2f}) | {load_cells}"
        )


def main(
    sizes: Sequence[int] = SIZES,
    kinds: Sequence[str] = KINDS,
    sfs: Sequence[int] = SFS,
    seed: int = SEED,
) -> list[dict[str, Any]]:
    t0 = time.monotonic()
    print(
        "scale: tools/dessim, the unmodified firmware; EU868 868.1 MHz 1 % "
        f"({BUDGET_S_PER_H:.0f} s per node per hour); one gateway per "
        f"{scenario.NODES_PER_GATEWAY} nodes; seed {seed}",
        flush=True,
    )
    rows = [report(Case(k, n, sf), seed) for n in sizes for k in kinds for sf in sfs]
    table(rows)
    print(f"scale wall time: {time.monotonic() - t0:.0f} s")
    return rows


if __name__ == "__main__":
    main()
