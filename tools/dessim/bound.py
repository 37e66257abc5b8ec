"""Lower bounds on the airtime of discovery, computed from the topology.

* `greedy_cds(graph)`: a connected dominating set by Guha and Khuller's first greedy
  algorithm (1998): start from a node of highest degree; repeatedly turn black the
  grey node (a neighbour of the black ones) that has the most white (not yet dominated)
  neighbours, ties to the first in the graph's order. The black nodes are connected
  and every node is black or next to a black one: they are relays that reach every
  node. (Finding the smallest such set is NP-hard; the greedy one is within
  2(1 + H(max degree)) of it, so "lower bound" here is in the issue's sense: the
  fewest relays a flood needs, approximately.)
* `flood_bound`: a record that every node must hear costs at least |CDS| transmissions
  (the issue's lower bound per record).
* `discovery_bound`: what discovery needs and nothing more, one record per frame: every
  node transmits its own record once (its neighbours learn it), each record travels to
  the nearest gateway (d - 1 more transmissions for a node d hops away), and each
  gateway's record reaches every node (its own frame plus |CDS| - 1 relays).
"""

from __future__ import annotations

from collections.abc import Sequence

Graph = dict[str, list[str]]


def greedy_cds(g: Graph) -> list[str]:
    """A connected dominating set of a connected graph (see the module docstring)."""
    names = list(g)
    if not names:
        return []
    if len(names) == 1:
        return names
    order = {x: i for i, x in enumerate(names)}
    start = max(names, key=lambda x: (len(g[x]), -order[x]))
    black = [start]
    dominated = {start, *g[start]}
    grey = set(g[start])
    while len(dominated) < len(names):
        best, gain = None, -1
        for x in sorted(grey, key=order.__getitem__):
            w = sum(1 for y in g[x] if y not in dominated)
            if w > gain:
                best, gain = x, w
        if best is None or gain <= 0:
            raise ValueError("graph is not connected: no connected dominating set")
        black.append(best)
        grey.discard(best)
        for y in g[best]:
            if y not in dominated:
                dominated.add(y)
                grey.add(y)
    return black


def is_connected_dominating(g: Graph, nodes: Sequence[str]) -> bool:
    s = set(nodes)
    if not s:
        return False
    if any(x not in s and not any(y in s for y in g[x]) for x in g):
        return False
    first = next(iter(s))
    seen = {first}
    stack = [first]
    while stack:
        x = stack.pop()
        for y in g[x]:
            if y in s and y not in seen:
                seen.add(y)
                stack.append(y)
    return seen == s


def flood_bound(g: Graph, records: int) -> int:
    """Transmissions for `records` records that must each reach every node."""
    return records * len(greedy_cds(g))


def discovery_bound(g: Graph, hops_to_gateway: dict[str, int], gateways: int) -> int:
    """Transmissions discovery needs at least (see the module docstring), given every
    node's hop distance to its nearest gateway (`tools.meshsim.topology.hop_distances`).
    A gateway's own frame is one of the n; its flood needs |CDS| - 1 relays more."""
    upward = sum(d - 1 for d in hops_to_gateway.values() if d > 1)
    return len(g) + upward + gateways * max(len(greedy_cds(g)) - 1, 0)
