"""Application load on a simulated firmware mesh, and what discovery has achieved.

Load (the issue's sync traffic): every node sends one TX_BYTES-byte transaction
upstream (`port.send_upstream(TX, ...)`, gossip priority) every TX_INTERVAL_S, the first
at a random moment of the first interval; every gateway broadcasts one BLOCK of
BLOCK_BYTES bytes (one frame) every BLOCK_INTERVAL_S at block priority, the same block
from every gateway. `LoadApp` is each node's application: it keeps when each
transaction (gateways) and each block (nodes) first arrived. A transaction counts as
delivered when any gateway's application receives it; a block reaches a node when its
application receives it from any gateway.

Discovery (`routed`, `gateway_share`): a node is routed when it holds a verified
gateway record (`best_gateway()`) -- for the v1 protocol the next hop is the gateway
itself (a neighbour), the neighbour whose PEX answer carried the record, or unknown (a
relayed announce: unicasts then go by scoped flooding); the gateways together know a
node when one of them holds its verified record.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loranode.app import App
from loranode.txqueue import BLOCKS, GOSSIP
from lorawire import messages as msg

from .events import EventQueue
from .world import FirmwareMesh

TX_BYTES = 150
TX_INTERVAL_S = 600.0
BLOCK_BYTES = 200
BLOCK_INTERVAL_S = 600.0
TX_DEADLINE_S = 300.0
_TX_HEAD = struct.Struct(">HI")  # sender index, counter
_BLOCK_HEAD = struct.Struct(">4sI")  # b"BLK0", block number


class LoadApp(App):
    """Records first arrivals of transactions and blocks, with the simulated time. As
    MeshSpec.app: `MeshSpec(..., app=LoadApp.factory)`."""

    def __init__(self, clock_s: Callable[[], float]) -> None:
        self.clock_s = clock_s
        self.txs: dict[tuple[int, int], float] = {}
        self.blocks: dict[int, float] = {}

    @classmethod
    def factory(cls, name: str, queue: EventQueue) -> LoadApp:
        return cls(lambda: queue.now)

    def on_message(self, peer_id: bytes, msg_type: int, fields: dict[int, Any]) -> None:
        raw = fields.get(0)
        if not isinstance(raw, bytes):
            return
        if msg_type == msg.TX and len(raw) >= _TX_HEAD.size:
            self.txs.setdefault(_TX_HEAD.unpack_from(raw), self.clock_s())
        elif msg_type == msg.BLOCK and raw[:4] == b"BLK0" and len(raw) >= _BLOCK_HEAD.size:
            self.blocks.setdefault(_BLOCK_HEAD.unpack_from(raw)[1], self.clock_s())


@dataclass
class Load:
    """Schedules the load on `mesh` (whose MeshSpec.app made LoadApps) from `start_s`."""

    mesh: FirmwareMesh
    start_s: float = 0.0
    sent: dict[tuple[int, int], float] = field(default_factory=dict)
    blocks_sent: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = self.mesh
        for h in m.hosts:
            if h.name not in m.gateways:
                first = self.start_s + m.rng.uniform(0.0, TX_INTERVAL_S)
                m.queue.at(first, self._tx, h.index, 0)
        if m.gateways:
            m.queue.at(self.start_s + BLOCK_INTERVAL_S / 2, self._block, 0)

    def _tx(self, index: int, k: int) -> None:
        m = self.mesh
        h = m.hosts[index]
        raw = _TX_HEAD.pack(index, k) + bytes(TX_BYTES - _TX_HEAD.size)
        self.sent[(index, k)] = m.now
        h.node.port.send_upstream(msg.TX, {0: raw}, GOSSIP)
        h.after()
        m.queue.at(m.now + TX_INTERVAL_S, self._tx, index, k + 1)

    def _block(self, k: int) -> None:
        m = self.mesh
        raw = _BLOCK_HEAD.pack(b"BLK0", k) + bytes(BLOCK_BYTES - _BLOCK_HEAD.size)
        self.blocks_sent[k] = m.now
        for name in sorted(m.gateways):
            h = m.by_name[name]
            h.node.port.send(None, msg.BLOCK, {0: raw}, BLOCKS)
            h.after()
        m.queue.at(m.now + BLOCK_INTERVAL_S, self._block, k + 1)

    # -- figures -------------------------------------------------------------------

    def tx_delivery(self, deadline_s: float = TX_DEADLINE_S) -> tuple[int, int]:
        """(transactions delivered to a gateway within deadline_s, transactions sent
        at least deadline_s before now)."""
        m = self.mesh
        arrived: dict[tuple[int, int], float] = {}
        for name in m.gateways:
            app = m.by_name[name].node.app
            for key, t in app.txs.items():
                if key not in arrived or t < arrived[key]:
                    arrived[key] = t
        due = [(k, t) for k, t in self.sent.items() if t + deadline_s <= m.now]
        ok = sum(1 for k, t in due if k in arrived and arrived[k] - t <= deadline_s)
        return ok, len(due)

    def block_reach(self) -> list[float]:
        """Per block sent at least one interval ago: the share of nodes it reached."""
        m = self.mesh
        nodes = [h for h in m.hosts if h.name not in m.gateways]
        out = []
        for k, t in sorted(self.blocks_sent.items()):
            if t + BLOCK_INTERVAL_S <= m.now:
                got = sum(1 for h in nodes if k in h.node.app.blocks)
                out.append(got / max(len(nodes), 1))
        return out


def routed(mesh: FirmwareMesh) -> float:
    """Share of the non-gateway nodes holding a verified gateway record."""
    nodes = [h.node for h in mesh.hosts if h.name not in mesh.gateways]
    if not nodes:
        return 1.0
    return sum(1 for n in nodes if n.best_gateway() is not None) / len(nodes)


def gateway_share(mesh: FirmwareMesh) -> float:
    """Share of the non-gateway nodes whose verified record some gateway holds."""
    gws = [mesh.by_name[g].node for g in mesh.gateways]
    others = {h.node.id for h in mesh.hosts if h.name not in mesh.gateways}
    if not others:
        return 1.0
    known: set[bytes] = set()
    for g in gws:
        known |= mesh.verified_ids(g) & others
    return len(known) / len(others)


def discovered(mesh: FirmwareMesh, share: float = 0.99) -> bool:
    """The discovery goal: every node routed and the gateways know `share` of the nodes."""
    return routed(mesh) >= 1.0 and gateway_share(mesh) >= share
