"""A mesh of unmodified firmware nodes in one process, on one simulated air.

`FirmwareMesh(spec)` builds, for every node of the topology, what the launcher of the
multi-process meshsim builds (tools/meshsim/launcher.py): a board config validated and
completed by the deploy tool's schema (tools/deploy/fwconfig.py), an identity, a
`loranode.node.Node` on a `VirtualRadio` and a `VirtualClock` (tools/dessim/host.py);
the gateways (`spec.gateways`) announce record kind gateway and keep a peer table large
enough for the whole mesh (`gateway_capacity`, default n: the Raspberry Pi behind a
bridge board keeps every node). `run(until_s)` advances the virtual clock; nothing
sleeps. Everything random comes from `spec.seed`: keys, boot times, the nodes' entropy
(tools/dessim/hostside.py) and the link loss streams of the air.

Every frame put on the air is logged (`frames`: time, sender index, message type,
hop count, time on air in ms), so airtime can be split by purpose afterwards.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loranode.app import App
from loranode.node import Node
from lorawire.identity import Identity

from ..deploy import fwconfig
from ..meshsim.air import Air, Params, Transmission
from ..meshsim.launcher import BANDWIDTH_HZ, region_frequency
from ..meshsim.topology import Topology
from .events import EventQueue
from .host import FirmwareHost, VirtualClock, VirtualRadio
from .hostside import substitutes


@dataclass
class MeshSpec:
    topology: Topology
    gateways: Sequence[str] = ()
    sf: int = 7
    seed: int = 0
    region: str = "EU868"
    announce_min_s: int = 30
    announce_max_s: int = 600
    node_options: dict[str, Any] = field(default_factory=dict)
    capacities: dict[str, int] = field(default_factory=dict)
    gateway_capacity: int | None = None
    boot_spread_s: float = 2.0  # nodes boot at uniform random times in [0, spread)
    clock_start: int = 0  # every node's clock reads this tick at boot
    app: Callable[[str, EventQueue], App | None] | None = None  # the node's application


@dataclass
class Frame:
    t: float
    sender: int
    msg_type: int
    hops: int
    airtime_ms: float
    length: int


class FirmwareMesh:
    def __init__(self, spec: MeshSpec, workdir: str | Path | None = None) -> None:
        self.spec = spec
        self.topology = spec.topology
        self.names = list(spec.topology.nodes)
        self.n = len(self.names)
        self.rng = random.Random(f"dessim/{spec.seed}")
        self.queue = EventQueue()
        self.air = Air(spec.topology, spec.seed)
        self.frames: list[Frame] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dessim-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.gateways = set(spec.gateways)
        unknown = self.gateways - set(self.names)
        if unknown:
            raise ValueError(f"gateways not in the topology: {sorted(unknown)}")
        self.network_key = self.rng.randbytes(32).hex()
        self.frequency_hz = region_frequency(spec.region, BANDWIDTH_HZ)
        base = self._config({})
        gw = self._config({"kind": "gateway"})
        gw["capacities"] = dict(gw["capacities"], peers=spec.gateway_capacity or max(self.n, 32))
        self.hosts: list[FirmwareHost] = []
        self.by_name: dict[str, FirmwareHost] = {}
        with substitutes(self.rng):
            for i, name in enumerate(self.names):
                host = self._make_host(i, name, gw if name in self.gateways else base)
                self.hosts.append(host)
                self.by_name[name] = host
        for host in self.hosts:
            self.queue.at(self.rng.uniform(0.0, spec.boot_spread_s), host.boot)

    # -- building ------------------------------------------------------------------

    def _config(self, opts: dict[str, Any]) -> dict[str, Any]:
        s = self.spec
        raw: dict[str, Any] = {
            "board": "heltec-v3",
            "region": s.region,
            "frequency_hz": self.frequency_hz,
            "sf": s.sf,
            "bandwidth_hz": BANDWIDTH_HZ,
            "network_key": self.network_key,
            "announce_interval_min_s": s.announce_min_s,
            "announce_interval_max_s": s.announce_max_s,
        }
        if s.capacities:
            raw["capacities"] = dict(s.capacities)
        node = {"status_interval_s": 0, "stdin": False}
        node.update(s.node_options)
        node.update(opts)
        raw["node"] = node
        return fwconfig.board_config(fwconfig.validate(raw))

    def _make_host(self, i: int, name: str, cfg: dict[str, Any]) -> FirmwareHost:
        state = self.workdir / name
        state.mkdir(parents=True, exist_ok=True)
        cfg = dict(cfg)
        cfg["node"] = dict(cfg["node"], state_dir=str(state))
        ident = Identity(self.rng.randbytes(32))
        params = Params(
            cfg["frequency_hz"], cfg["sf"], cfg["bandwidth_hz"], cfg["tx_power_dbm"],
            cfg["coding_rate"],
        )  # fmt: skip
        radio = VirtualRadio(name, params)
        clock = VirtualClock(self.queue, self.spec.clock_start)
        app = self.spec.app(name, self.queue) if self.spec.app is not None else None
        node = Node(cfg, ident, radio, app=app, name=name, clock=clock)
        return FirmwareHost(i, node, radio, clock, self.queue, self.air, self._on_tx)

    def _on_tx(self, host: FirmwareHost, data: bytes, tx: Transmission) -> None:
        self.frames.append(
            Frame(tx.start, host.index, data[1], data[2] & 0x0F, tx.airtime_ms, len(data))
        )

    # -- running -------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.queue.now

    def run(self, until_s: float) -> None:
        with substitutes(self.rng):
            self.queue.run(until_s)

    def run_until(
        self, done: Callable[[FirmwareMesh], bool], limit_s: float, step_s: float = 5.0
    ) -> float | None:
        """Run in steps of step_s until done(self) holds (the time it first held, to the
        step) or limit_s passes (None)."""
        while self.now < limit_s:
            self.run(min(limit_s, self.now + step_s))
            if done(self):
                return self.now
        return None

    def call(self, name: str, fn: Callable[[Node], Any]) -> Any:
        """Run fn(node) as an entry into node `name` (its app sending, say) and let it act."""
        host = self.by_name[name]
        with substitutes(self.rng):
            out = fn(host.node)
            host.after()
        return out

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> FirmwareMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- figures -------------------------------------------------------------------

    def nodes(self) -> list[Node]:
        return [h.node for h in self.hosts]

    def errors(self) -> dict[str, list[str]]:
        return {h.name: h.errors for h in self.hosts if h.errors}

    def airtime_ms(self, since: float = 0.0, until: float | None = None) -> list[float]:
        """Time on air per node (index order) of the frames that started in [since, until)."""
        out = [0.0] * self.n
        for f in self.frames:
            if f.t >= since and (until is None or f.t < until):
                out[f.sender] += f.airtime_ms
        return out

    def verified_ids(self, node: Node) -> set[bytes]:
        pt = node.peers
        return {pt.ids[s] for s in pt.slots() if pt.rec[s] is not None}

    def fully_converged(self) -> bool:
        """Every node holds the verified record of every other node (meshsim's test)."""
        ids = {h.node.id for h in self.hosts}
        return all(ids - {h.node.id} <= self.verified_ids(h.node) for h in self.hosts)

    def last_new_s(self) -> float | None:
        """Simulated second of the latest first verification of a peer, any node."""
        out = None
        for h in self.hosts:
            t = h.node.last_new
            if t is not None:
                s = h.clock.sim_s(t)
                out = s if out is None else max(out, s)
        return out

    def boot_times(self) -> list[float]:
        return [(h.clock.origin_ms + h.clock.start) / 1000.0 for h in self.hosts]
