"""Topologies and gateway placement for the discrete-event simulator.

* `make_topology(kind, n, seed)`: "grid" (tools.meshsim.topology.grid: 4.5 km spacing,
  so at SF7 each node hears its 2-4 grid neighbours), "geometric" (a random geometric
  graph, connected, mean degree GEOMETRIC_DEGREE at SF7), "line", or anything
  tools.meshsim.launcher.make_topology accepts. Positions are fixed; a higher SF reaches
  farther over the same positions (at SF10 a grid node hears its second ring too).
* `place_gateways(topology, k, sf)`: k gateways spread out by farthest-point
  traversal in hops, starting from the node closest to the centre of the graph.
* `gateways_for(n)`: one gateway per started 100 nodes (the issue's rule).
* `graph(topology, sf)`: adjacency lists at an SF.
"""

from __future__ import annotations

from ..meshsim import topology as topo
from ..meshsim.launcher import make_topology as launcher_topology
from ..meshsim.topology import Topology

GEOMETRIC_DEGREE = 10.0
NODES_PER_GATEWAY = 100

Graph = dict[str, list[str]]


def make_topology(kind: str, n: int, seed: int = 0) -> Topology:
    if kind == "geometric":
        return topo.geometric(n, seed=seed, degree=GEOMETRIC_DEGREE)
    return launcher_topology(kind, n, seed)


def graph(topology: Topology, sf: int) -> Graph:
    """Who hears whom at SF `sf` (reference power), in topology order."""
    p = topology.model.tx_power_dbm
    return {a: [b for b, _ in topology.hearers(a, sf, p)] for a in topology.nodes}


def gateways_for(n: int) -> int:
    return max(1, -(-n // NODES_PER_GATEWAY))


def place_gateways(topology: Topology, k: int, sf: int = 7, rounds: int = 8) -> list[str]:
    """k node names, spread out: farthest-point traversal in hops from a centre of the
    graph, then a few rounds of moving each gateway to the centre of the nodes nearest
    to it (so no node is much farther from a gateway than it has to be). Deterministic."""
    names = list(topology.nodes)
    if k >= len(names):
        return names
    far_away = len(names)
    dist = {a: topo.hop_distances(topology, [a], sf) for a in names}  # all pairs, once

    def centre(members: list[str]) -> str:
        return min(members, key=lambda a: max(dist[a].get(m, far_away) for m in members))

    def farthest(chosen: list[str]) -> str:
        return max(names, key=lambda x: min(dist[g].get(x, far_away) for g in chosen))

    chosen = [centre(names)]
    while len(chosen) < k:
        chosen.append(farthest(chosen))
    for _ in range(rounds):
        clusters: dict[str, list[str]] = {g: [] for g in chosen}
        for x in names:
            clusters[min(chosen, key=lambda g: dist[g].get(x, far_away))].append(x)
        moved = list(dict.fromkeys(centre(c) for c in clusters.values() if c))
        while len(moved) < k:  # two centres fell on one node: add the farthest again
            moved.append(farthest(moved))
        if moved == chosen:
            break
        chosen = moved
    return chosen
