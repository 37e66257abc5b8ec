"""The peer manager: builds its parts over shared tables and wires them, in one place.

`PeerManager(cfg, identity, store)` owns no logic of its own beyond the life cycle;
the parts stand alone, each with its own test module:

```
PeerManager: builds, wires, start / stop
  |-- Connector       listener, dials, feelers, eviction --> MessageHandler (session hooks)
  |-- MessageHandler  messages, PEX, records, misbehaviour --> BanManager, Relay, AddrMan
  |-- Maintainer      periodic pass, batched writes --> AsyncStore
  +-- shared by the three: PeerTable, ScoreTable, RecordTable, MeshPeerTable
```

The connector installs the handler's `on_message` on every session; the handler tells
the connector about new book entries and the table tells it about departures through
listeners; the maintainer wakes the connector after each pass. The tables, the
`BanManager`, the `Relay` and the `AddrMan` are shared by reference.

Life cycle (`start`): bans restored from the store, the address book and peer scores
loaded, the listener bound, our own record signed (kind gateway, endpoint = the bound
listen address, sequence one higher than at the last start, kept in the store's kv
table as `record_seq`), then the listener opened and the loops started. `stop` closes
every connection and writes the book and the scores.

What a running gateway shows the control socket is `liveview.RunningGatewayView`'s
business, not the manager's; the mesh wing (`loragate.mesh`) uses the manager through
the narrow `mesh.host.MeshHost` interface and is wired by `runner`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import Counter
from typing import TYPE_CHECKING

from loragate.addrman import AddrMan, load_addrman
from loragate.bans import Ban, BanManager, BanTarget, policy_from
from loragate.config import GatewayConfig
from loragate.connector import Connector
from loragate.events import EventBus
from loragate.handler import MessageHandler
from loragate.maintainer import Maintainer
from loragate.ownnode import Addr, OwnNode
from loragate.peertable import (
    ConnectedPeer,
    MeshPeerTable,
    PeerTable,
    RecordTable,
    ScoreTable,
    join_addr,
)
from loragate.pool import Backoff, ConnectionPolicy, PeerSlot
from loragate.relay import Relay, Validator
from loragate.scoring import weights_from
from loragate.session import PeerSession
from loragate.store import AsyncStore
from loragate.telemetry import Telemetry
from loragate.tuning import ManagerTuning
from loragate.validation import DefaultValidator
from lorawire.identity import Identity
from lorawire.record import Record

if TYPE_CHECKING:
    from loragate.metrics import GatewayMetrics

log = logging.getLogger(__name__)

RECORD_SEQ_KEY = "record_seq"


class PeerManager:
    """Internet peers of one gateway (see the module docstring)."""

    def __init__(
        self,
        cfg: GatewayConfig,
        identity: Identity,
        store: AsyncStore,
        metrics: GatewayMetrics | None = None,
        bus: EventBus | None = None,
        *,
        validator: Validator | None = None,
        tuning: ManagerTuning | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.tuning = t = tuning or ManagerTuning()
        rng = rng or random.Random()
        self.telemetry = Telemetry(metrics, bus)
        self.stats: Counter[str] = Counter()
        self.own = OwnNode(identity, (cfg.listen_host, cfg.listen_port))
        # The shared tables.
        self.book = AddrMan(rng=rng)
        self.banman = BanManager(policy_from(cfg.bans, cfg.peer_prefix), sink=store)
        self.scores = ScoreTable(weights_from(cfg.score), t.scores_max)
        self.records = RecordTable(t.records_max)
        self.mesh_peers = MeshPeerTable(t.mesh_max)
        self.table = PeerTable(self.scores, self.telemetry)
        self.relay = Relay(validator=DefaultValidator(cfg.relay, validator), limits=t.relay)
        self.policy = ConnectionPolicy(
            cfg.outbound_target, cfg.inbound_cap, cfg.max_outbound_per_group, cfg.preferred_kinds
        )
        self.backoff = Backoff(t.backoff_base_s, t.backoff_max_s, t.backoff_jitter, rng=rng)
        # The parts, each given exactly what it works on.
        self.handler = MessageHandler(
            self.own,
            t,
            table=self.table,
            scores=self.scores,
            records=self.records,
            mesh_peers=self.mesh_peers,
            book=self.book,
            banman=self.banman,
            relay=self.relay,
            telemetry=self.telemetry,
            stats=self.stats,
            rng=rng,
        )
        self.connector = Connector(
            cfg,
            self.own,
            t,
            table=self.table,
            scores=self.scores,
            records=self.records,
            book=self.book,
            banman=self.banman,
            policy=self.policy,
            backoff=self.backoff,
            relay=self.relay,
            handler=self.handler,
            telemetry=self.telemetry,
            stats=self.stats,
        )
        self.maintainer = Maintainer(
            cfg,
            t,
            table=self.table,
            scores=self.scores,
            book=self.book,
            banman=self.banman,
            policy=self.policy,
            store=store,
            telemetry=self.telemetry,
            wake=self.connector.wake,
            mesh_peers=self.mesh_peers,
        )
        # What discovery, our node and the mesh wing hand in (the parts' own methods):
        # addresses from discovery; verified mesh announcements and proven faults
        # (MessageHandler); objects our node made (Relay); scores to change (ScoreTable).
        self.add_addresses = self.handler.add_addresses
        self.add_mesh_announcement = self.handler.add_mesh_announcement
        self.mesh_heard = self.handler.mesh_heard
        self.misbehaving = self.handler.misbehaving
        self.submit_local = self.relay.submit_local
        self.score_for = self.scores.for_update
        self.started_at: float | None = None
        self._running = False
        self._stopping = False

    # ---- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        bans, counts = await self.store.load_bans()
        self.banman.restore(bans, counts)
        self.banman.expire()
        log.info("restored %d bans from the database", len(self.banman))
        await self.store.run(lambda s: load_addrman(s, into=self.book))
        stats = await self.store.run(lambda s: s.load_peer_stats())
        for key, data in stats.items():
            self.scores.load(key, data)
        raw = await self.store.get_kv(RECORD_SEQ_KEY)
        seq = (int.from_bytes(raw, "big") if raw else 0) + 1
        await self.store.set_kv(RECORD_SEQ_KEY, seq.to_bytes(8, "big"))
        await self.connector.start()
        self.own.make_record(seq)
        self.started_at = time.time()
        await self.connector.serve()
        self.maintainer.start()
        self._running = True
        self.telemetry.metric("set_bans", len(self.banman))
        log.info("gateway %s listening on %s", self.identity.hex_id(), join_addr(self.listen_addr))

    async def stop(self) -> None:
        """Close the listener and every connection, then persist the book and scores."""
        if self._stopping:
            return
        self._stopping = True
        await self.maintainer.stop()
        await self.connector.stop()
        self.relay.close()
        if self._running:
            with contextlib.suppress(Exception):
                await self.maintainer.persist()

    # ---- who we are --------------------------------------------------------------------

    @property
    def identity(self) -> Identity:
        return self.own.identity

    @property
    def record(self) -> Record | None:
        """Our own signed record (None before `start`)."""
        return self.own.record

    @property
    def listen_addr(self) -> Addr:
        return self.own.listen_addr

    @property
    def bus(self) -> EventBus:
        return self.telemetry.bus

    # ---- manual bans -------------------------------------------------------------------

    async def ban(self, target: BanTarget, duration_s: float | None, reason: str) -> Ban:
        """Ban `target` now (None: permanently), drop whoever it covers, persist it."""
        ban = self.banman.ban(
            target, duration_s=duration_s, permanent=duration_s is None, reason=reason
        )
        self.handler.apply_ban(ban)
        await self.store.drain()
        return ban

    async def unban(self, target: BanTarget) -> bool:
        """Lift the ban on `target`; False if there was none."""
        removed = self.handler.lift_ban(target, "manual")
        if removed:
            await self.store.drain()
        return removed

    # ---- manual connections ------------------------------------------------------------

    def disconnect(self, node_id: bytes | None = None, addr: Addr | None = None) -> bool:
        """Drop the connection to a node id or address now; False if none matched. A
        manual peer is dialled again (as Bitcoin Core's disconnectnode leaves addnode)."""
        for peer in self.table:
            if (node_id is not None and peer.session.node_id == node_id) or (
                addr is not None and peer.slot.addr == addr
            ):
                self.table.drop(peer, "disconnected by the operator")
                return True
        return False

    def connect(self, addr: Addr) -> bool:
        """Keep a connection to `addr` (a manual peer until the gateway stops)."""
        return self.connector.add_manual(addr)

    def forget_manual(self, addr: Addr) -> bool:
        return self.connector.remove_manual(addr)

    def manual_peers(self) -> list[Addr]:
        return list(self.connector.manual)

    async def clear_bans(self) -> int:
        """Lift every ban (Bitcoin Core's clearbanned); how many there were."""
        targets = [b.target for b in self.banman.bans()]
        removed = sum(1 for t in targets if self.handler.lift_ban(t, "manual: clear all"))
        if removed:
            await self.store.drain()
        return removed

    # ---- small queries -----------------------------------------------------------------

    @property
    def peer_count(self) -> int:
        return len(self.table)

    def peer(self, node_id: bytes) -> ConnectedPeer | None:
        return self.table.by_id(node_id)

    def sessions(self) -> list[PeerSession]:
        return [p.session for p in self.table]

    def slots(self) -> list[PeerSlot]:
        return self.table.slots()

    def connected_ids(self) -> set[bytes]:
        return self.table.node_ids()
