"""Topologies for the simulated LoRa medium: who hears whom, how well, how lossy.

A topology file is JSON in one of two forms (they may be combined):

Positions with a log-distance path-loss model::

    {"nodes": {"a": [0, 0], "b": [3000, 0]},
     "model": {"path_loss_exponent": 2.7, "ref_loss_db": 40, "tx_power_dbm": 14,
               "noise_floor_dbm": -120, "loss": 0.0,
               "sensitivity_dbm": -130  (or per SF: {"7": -123, "12": -137}; optional)}}

    RSSI = tx_power - (ref_loss + 10 * n * log10(d / 1 m))     (d clamped to >= 1 m)
    SNR  = RSSI - noise_floor

Explicit links (each entry is both directions unless "oneway": true)::

    {"links": [["a", "b", {"rssi": -90, "snr": 5, "loss": 0.1}], ["b", "c"]],
     "nodes": ["a", "b", "c", "d"]}          (optional: adds nodes with no links)

    "corrupt" (0..1, default 0) is the share of the frames on that link that arrive
    with a bad payload CRC (the medium's fate "corrupted").

    A link without "snr" gets snr = rssi - noise_floor; without "rssi", rssi =
    noise_floor + snr; with neither, the model (positions) decides, else -> error.
    An explicit link overrides the path-loss model for that direction.

Link figures are for the model's reference power (`tx_power_dbm`); a node sending
at another power shifts RSSI and SNR by the difference. A frame is receivable when
the SNR is at or above the demodulation floor of the spreading factor in use
(SF7 -7.5 dB ... SF12 -20 dB, Semtech SX1276 datasheet table 13) and, when
`sensitivity_dbm` is given, the RSSI is at or above it.

Every malformed file raises ValueError with one line naming the file and field.
"""

from __future__ import annotations

import json
import math
import random as _random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorawire.simproto import MAX_NAME  # bytes, as in the REGISTER datagram

SNR_FLOOR_DB: dict[int, float] = {
    6: -5.0,
    7: -7.5,
    8: -10.0,
    9: -12.5,
    10: -15.0,
    11: -17.5,
    12: -20.0,
}
# Default model at SF7: grid neighbours hear each other, diagonals and two hops do not.
DEFAULT_SPACING_M = 4500.0

_MODEL_KEYS = {
    "path_loss_exponent",
    "ref_loss_db",
    "tx_power_dbm",
    "noise_floor_dbm",
    "loss",
    "sensitivity_dbm",
}
_LINK_KEYS = {"rssi", "snr", "loss", "oneway", "corrupt"}
_TOP_KEYS = {"nodes", "model", "links"}


@dataclass(frozen=True)
class Model:
    path_loss_exponent: float = 2.7
    ref_loss_db: float = 40.0
    tx_power_dbm: float = 14.0
    noise_floor_dbm: float = -120.0
    loss: float = 0.0
    sensitivity_dbm: dict[int, float] | None = None

    def path(self, d_m: float) -> tuple[float, float]:
        """(rssi, snr) at distance d_m for the reference power."""
        d = max(d_m, 1.0)
        rssi = self.tx_power_dbm - (self.ref_loss_db + 10 * self.path_loss_exponent * math.log10(d))
        return rssi, rssi - self.noise_floor_dbm

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path_loss_exponent": self.path_loss_exponent,
            "ref_loss_db": self.ref_loss_db,
            "tx_power_dbm": self.tx_power_dbm,
            "noise_floor_dbm": self.noise_floor_dbm,
            "loss": self.loss,
        }
        if self.sensitivity_dbm is not None:
            out["sensitivity_dbm"] = {str(k): v for k, v in sorted(self.sensitivity_dbm.items())}
        return out


@dataclass(frozen=True)
class Link:
    """One direction of a link, at the model's reference transmit power."""

    rssi: float
    snr: float
    loss: float
    corrupt: float = 0.0


@dataclass
class Topology:
    nodes: dict[str, tuple[float, float] | None]
    model: Model = field(default_factory=Model)
    links: dict[tuple[str, str], Link] = field(default_factory=dict)
    _hearers: dict[tuple[str, int, float], list[tuple[str, Link]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _order: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _shape: tuple[int, int, Model] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _cells: dict[float, dict[tuple[int, int], list[str]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def link(self, a: str, b: str) -> Link | None:
        """Reference-power link a -> b, or None when the two have no path at all."""
        if a == b or a not in self.nodes or b not in self.nodes:
            return None
        explicit = self.links.get((a, b))
        if explicit is not None:
            return explicit
        pa, pb = self.nodes[a], self.nodes[b]
        if pa is None or pb is None:
            return None
        rssi, snr = self.model.path(math.dist(pa, pb))
        return Link(rssi, snr, self.model.loss)

    def reception(self, a: str, b: str, sf: int, tx_power_dbm: float) -> Link | None:
        """What b receives when a sends at `tx_power_dbm` with `sf`; None if out of range."""
        base = self.link(a, b)
        if base is None:
            return None
        delta = tx_power_dbm - self.model.tx_power_dbm
        rssi, snr = base.rssi + delta, base.snr + delta
        if snr < SNR_FLOOR_DB.get(sf, SNR_FLOOR_DB[12]):
            return None
        sens = self.model.sensitivity_dbm
        if sens is not None and sf in sens and rssi < sens[sf]:
            return None
        return Link(rssi, snr, base.loss, base.corrupt)

    def neighbours(self, a: str, sf: int = 7, tx_power_dbm: float | None = None) -> list[str]:
        p = self.model.tx_power_dbm if tx_power_dbm is None else tx_power_dbm
        return sorted(b for b, _ in self.hearers(a, sf, p))

    def hearers(self, a: str, sf: int, tx_power_dbm: float) -> list[tuple[str, Link]]:
        """Every node that receives `a` sending with `sf` at `tx_power_dbm`, with the link,
        in the order of `nodes`; computed once per (a, sf, power) (replacing nodes, links
        or the model starts the cache again; editing a link in place does not). Where
        every node has a position, only those within the model's radio range (and
        explicit links) are tried, through a grid of cells one range wide, so a large
        mesh costs O(n)."""
        shape = (len(self.nodes), len(self.links), self.model)
        if shape != self._shape:  # nodes, links or model replaced: start again
            self._shape = shape
            self._hearers.clear()
            self._cells.clear()
            self._order.clear()
            self._order.update((b, i) for i, b in enumerate(self.nodes))
        key = (a, sf, tx_power_dbm)
        cache = self._hearers
        out = cache.get(key)
        if out is not None:
            return out
        if a not in self.nodes:
            return []
        order = self._order
        reach = radio_range_m(self.model, sf, tx_power_dbm)
        pa = self.nodes[a]
        if pa is None or any(p is None for p in self.nodes.values()):
            cands: set[str] = set(self.nodes)
        else:
            cands = set(self._near(pa, reach))
        cands.update(b for (x, b) in self.links if x == a)
        cands.discard(a)
        out = []
        for b in sorted(cands, key=order.__getitem__):
            link = self.reception(a, b, sf, tx_power_dbm)
            if link is not None:
                out.append((b, link))
        cache[key] = out
        return out

    def _near(self, p: tuple[float, float], reach: float) -> list[str]:
        size = max(reach, 1.0)
        grid = self._cells.get(size)
        if grid is None:
            grid = {}
            for b, q in self.nodes.items():
                assert q is not None
                grid.setdefault((math.floor(q[0] / size), math.floor(q[1] / size)), []).append(b)
            self._cells[size] = grid
        cx, cy = math.floor(p[0] / size), math.floor(p[1] / size)
        out: list[str] = []
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                out.extend(grid.get((cx + dx, cy + dy), ()))
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model.to_dict()}
        if all(p is not None for p in self.nodes.values()):
            out["nodes"] = {n: list(p) for n, p in self.nodes.items() if p is not None}
        else:
            out["nodes"] = sorted(self.nodes)
            if any(p is not None for p in self.nodes.values()):
                raise ValueError("cannot serialise a topology mixing placed and unplaced nodes")
        if self.links:
            out["links"] = [[a, b, _link_options(lk)] for (a, b), lk in sorted(self.links.items())]
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def _link_options(lk: Link) -> dict[str, Any]:
    opts: dict[str, Any] = {"rssi": lk.rssi, "snr": lk.snr, "loss": lk.loss, "oneway": True}
    if lk.corrupt:
        opts["corrupt"] = lk.corrupt
    return opts


# -- parsing ----------------------------------------------------------------------


def _num(v: Any, where: str, src: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"{src}: {where}: expected a number, got {v!r}")
    return float(v)


def _prob(v: Any, where: str, src: str) -> float:
    p = _num(v, where, src)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{src}: {where}: {where.rsplit('.', 1)[-1]} {v!r} outside 0..1")
    return p


def _name(v: Any, where: str, src: str) -> str:
    if not isinstance(v, str) or not v or len(v.encode()) > MAX_NAME:
        raise ValueError(f"{src}: {where}: node name must be a string of 1..{MAX_NAME} bytes")
    return v


def _model(d: Any, src: str) -> Model:
    if d is None:
        return Model()
    if not isinstance(d, dict):
        raise ValueError(f"{src}: model: expected an object")
    unknown = set(d) - _MODEL_KEYS
    if unknown:
        raise ValueError(f"{src}: model: unknown key {sorted(unknown)[0]!r}")
    kw: dict[str, Any] = {}
    for k in ("path_loss_exponent", "ref_loss_db", "tx_power_dbm", "noise_floor_dbm"):
        if k in d:
            kw[k] = _num(d[k], f"model.{k}", src)
    if "path_loss_exponent" in kw and kw["path_loss_exponent"] <= 0:
        raise ValueError(f"{src}: model.path_loss_exponent: must be > 0")
    if "loss" in d:
        kw["loss"] = _prob(d["loss"], "model.loss", src)
    if "sensitivity_dbm" in d:
        s = d["sensitivity_dbm"]
        if isinstance(s, dict):
            sens: dict[int, float] = {}
            for k, v in s.items():
                try:
                    sf = int(k)
                except ValueError:
                    sf = -1
                if sf not in SNR_FLOOR_DB:
                    raise ValueError(f"{src}: model.sensitivity_dbm: {k!r} is not an SF 6..12")
                sens[sf] = _num(v, f"model.sensitivity_dbm[{k!r}]", src)
            kw["sensitivity_dbm"] = sens
        else:
            val = _num(s, "model.sensitivity_dbm", src)
            kw["sensitivity_dbm"] = dict.fromkeys(SNR_FLOOR_DB, val)
    return Model(**kw)


def from_dict(data: Any, source: str = "topology") -> Topology:
    """Build and validate a Topology from parsed JSON; ValueError (one line) if bad."""
    src = source
    if not isinstance(data, dict):
        raise ValueError(f"{src}: expected a JSON object at the top level")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ValueError(
            f"{src}: unknown key {sorted(unknown)[0]!r} (expected nodes, model, links)"
        )
    if "nodes" not in data and "links" not in data:
        raise ValueError(f"{src}: needs 'nodes' (positions) or 'links'")
    model = _model(data.get("model"), src)
    nodes: dict[str, tuple[float, float] | None] = {}
    raw_nodes = data.get("nodes", {})
    if isinstance(raw_nodes, dict):
        for n, pos in raw_nodes.items():
            _name(n, f"nodes[{n!r}]", src)
            if not isinstance(pos, list) or len(pos) != 2:
                raise ValueError(f"{src}: nodes[{n!r}]: position must be [x_m, y_m]")
            nodes[n] = (
                _num(pos[0], f"nodes[{n!r}][0]", src),
                _num(pos[1], f"nodes[{n!r}][1]", src),
            )
    elif isinstance(raw_nodes, list):
        for i, n in enumerate(raw_nodes):
            nodes[_name(n, f"nodes[{i}]", src)] = None
    else:
        raise ValueError(f"{src}: nodes: expected an object of positions or a list of names")
    links: dict[tuple[str, str], Link] = {}
    raw_links = data.get("links", [])
    if not isinstance(raw_links, list):
        raise ValueError(f"{src}: links: expected a list")
    for i, entry in enumerate(raw_links):
        where = f"links[{i}]"
        if not isinstance(entry, list) or len(entry) not in (2, 3):
            raise ValueError(f"{src}: {where}: expected [a, b] or [a, b, {{...}}]")
        a, b = _name(entry[0], where, src), _name(entry[1], where, src)
        if a == b:
            raise ValueError(f"{src}: {where}: a link from {a!r} to itself")
        opts = entry[2] if len(entry) == 3 else {}
        if not isinstance(opts, dict):
            raise ValueError(f"{src}: {where}: link options must be an object")
        bad = set(opts) - _LINK_KEYS
        if bad:
            raise ValueError(f"{src}: {where}: unknown key {sorted(bad)[0]!r}")
        for n in (a, b):
            if n not in nodes:
                if isinstance(raw_nodes, dict) and raw_nodes:
                    raise ValueError(f"{src}: {where}: node {n!r} has no position in 'nodes'")
                nodes[n] = None
        rssi = _num(opts["rssi"], f"{where}.rssi", src) if "rssi" in opts else None
        snr = _num(opts["snr"], f"{where}.snr", src) if "snr" in opts else None
        loss = _prob(opts["loss"], f"{where}.loss", src) if "loss" in opts else model.loss
        corrupt = _prob(opts["corrupt"], f"{where}.corrupt", src) if "corrupt" in opts else 0.0
        oneway = opts.get("oneway", False)
        if not isinstance(oneway, bool):
            raise ValueError(f"{src}: {where}.oneway: expected true or false")
        if rssi is None and snr is None:
            if nodes[a] is None or nodes[b] is None:
                raise ValueError(f"{src}: {where}: needs 'rssi' or 'snr' (no positions to model)")
            pa, pb = nodes[a], nodes[b]
            assert pa is not None and pb is not None
            rssi, snr = model.path(math.dist(pa, pb))
        elif rssi is None:
            assert snr is not None
            rssi = model.noise_floor_dbm + snr
        elif snr is None:
            snr = rssi - model.noise_floor_dbm
        link = Link(rssi, snr, loss, corrupt)
        links[(a, b)] = link
        if not oneway and (b, a) not in links:
            links[(b, a)] = link
    if not nodes:
        raise ValueError(f"{src}: no nodes")
    return Topology(nodes=nodes, model=model, links=links)


def load(path: str | Path) -> Topology:
    """Read a topology file; every problem is a one-line ValueError."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ValueError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    return from_dict(data, str(p))


# -- generators -------------------------------------------------------------------


def _names(n: int, names: list[str] | None, prefix: str) -> list[str]:
    if n < 1:
        raise ValueError(f"need at least one node, got {n}")
    if names is None:
        return [f"{prefix}{i}" for i in range(n)]
    if len(names) != n or len(set(names)) != n:
        raise ValueError(f"names: expected {n} distinct names")
    return [_name(x, "names", "generator") for x in names]


def line(
    n: int,
    spacing: float = DEFAULT_SPACING_M,
    *,
    model: Model | None = None,
    names: list[str] | None = None,
    prefix: str = "n",
) -> Topology:
    """n nodes on a line, `spacing` metres apart (default: each hears only its neighbours)."""
    ns = _names(n, names, prefix)
    pos: dict[str, tuple[float, float] | None] = {x: (i * spacing, 0.0) for i, x in enumerate(ns)}
    return Topology(pos, model or Model())


def grid(
    n: int,
    spacing: float = DEFAULT_SPACING_M,
    *,
    model: Model | None = None,
    names: list[str] | None = None,
    prefix: str = "n",
) -> Topology:
    """n nodes on a square grid (ceil(sqrt(n)) columns), row by row."""
    ns = _names(n, names, prefix)
    cols = math.ceil(math.sqrt(n))
    pos: dict[str, tuple[float, float] | None] = {
        x: ((i % cols) * spacing, (i // cols) * spacing) for i, x in enumerate(ns)
    }
    return Topology(pos, model or Model())


def random(
    n: int,
    seed: int = 0,
    area: float = 10000.0,
    *,
    model: Model | None = None,
    names: list[str] | None = None,
    prefix: str = "n",
) -> Topology:
    """n nodes placed uniformly in an area x area square (metres); same seed, same layout."""
    ns = _names(n, names, prefix)
    rng = _random.Random(seed)
    pos: dict[str, tuple[float, float] | None] = {
        x: (rng.uniform(0, area), rng.uniform(0, area)) for x in ns
    }
    return Topology(pos, model or Model())


def radio_range_m(model: Model, sf: int, tx_power_dbm: float | None = None) -> float:
    """The distance at which the model's SNR falls to the SF's demodulation floor."""
    p = model.tx_power_dbm if tx_power_dbm is None else tx_power_dbm
    floor = SNR_FLOOR_DB.get(sf, SNR_FLOOR_DB[12])
    # snr(d) = p - ref_loss - 10 n log10(d) - noise_floor >= floor
    budget = p - model.ref_loss_db - model.noise_floor_dbm - floor
    return float(10 ** (budget / (10 * model.path_loss_exponent)))


def hop_distances(topology: Topology, sources: list[str], sf: int = 7) -> dict[str, int]:
    """Links from the nearest of `sources` to every node reachable at SF `sf`."""
    p = topology.model.tx_power_dbm
    dist = dict.fromkeys(sources, 0)
    frontier = list(sources)
    while frontier:
        nxt = []
        for a in frontier:
            for b, _ in topology.hearers(a, sf, p):
                if b not in dist:
                    dist[b] = dist[a] + 1
                    nxt.append(b)
        frontier = nxt
    return dist


def components(topology: Topology, sf: int = 7) -> list[list[str]]:
    """The connected components of the topology's links at SF `sf` (each sorted)."""
    seen: set[str] = set()
    out = []
    for a in topology.nodes:
        if a not in seen:
            comp = sorted(hop_distances(topology, [a], sf))
            seen.update(comp)
            out.append(comp)
    return out


def geometric(
    n: int,
    seed: int = 0,
    degree: float = 10.0,
    sf: int = 7,
    *,
    model: Model | None = None,
    prefix: str = "n",
    tries: int = 200,
) -> Topology:
    """A random geometric graph: n nodes uniform in a square sized so that a node has
    `degree` neighbours on average at SF `sf` (the model's radio range), redrawn (seed,
    1), (seed, 2), ... until it is connected. Same arguments, same topology."""
    m = model or Model()
    r = radio_range_m(m, sf)
    side = math.sqrt(n * math.pi * r * r / max(degree, 1e-9))
    for attempt in range(tries):
        topo = random(n, seed=seed * 1000 + attempt, area=side, model=m, prefix=prefix)
        if n == 1 or len(components(topo, sf)) == 1:
            return topo
    raise ValueError(f"no connected geometric graph of {n} nodes (degree {degree}, {tries} tries)")
