"""The peer manager's periodic pass and its batched persistence.

`Maintainer` keeps the tables fresh and writes them out:

* **Maintenance** every `maintenance_interval_s`: ban expiry (UNBANNED, reason
  "expired"), addrman collision resolution, the valid messages of each peer counted
  into its score, throughput sampling (bytes received per second since the last pass,
  from the session's byte counter; passes with less than `throughput_min_bytes` are
  idle and not sampled), score refresh (SCORE_CHANGED when a score moves by >= 1),
  rebalancing (above the outbound target the lowest-score regular outbound peer goes;
  above the inbound cap, the peer `ConnectionPolicy.inbound_to_evict` names), metrics
  gauges.
* **Persistence** every `persist_interval_s` (and at stop): the book's changed rows and
  the dirty peer scores, in one batch on the store's worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from loragate.addrman import AddrMan
from loragate.bans import BanManager
from loragate.config import GatewayConfig
from loragate.events import EventKind
from loragate.peertable import ConnectedPeer, MeshPeerTable, PeerTable, ScoreTable, join_addr
from loragate.pool import ConnectionPolicy
from loragate.scoring import PeerScore
from loragate.session import cancel_all
from loragate.store import AsyncStore, Store
from loragate.telemetry import Telemetry
from loragate.tuning import ManagerTuning
from lorawire.identity import id_hex
from lorawire.record import KIND_NAMES

log = logging.getLogger(__name__)


class Maintainer:
    def __init__(
        self,
        cfg: GatewayConfig,
        tuning: ManagerTuning,
        *,
        table: PeerTable,
        scores: ScoreTable,
        book: AddrMan,
        banman: BanManager,
        policy: ConnectionPolicy,
        store: AsyncStore,
        telemetry: Telemetry,
        wake: Callable[[], None],
        mesh_peers: MeshPeerTable | None = None,
    ) -> None:
        self.cfg = cfg
        self.tuning = tuning
        self.table = table
        self.scores = scores
        self.book = book
        self.banman = banman
        self.policy = policy
        self.store = store
        self.telemetry = telemetry
        self.mesh_peers = mesh_peers
        self._wake = wake  # the outbound loop: slots may have come free
        self._last_persist = time.monotonic()
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._last_persist = time.monotonic()
        self._loop = asyncio.create_task(self._run(), name="loragate-maintenance")

    async def stop(self) -> None:
        """End the periodic pass (the caller persists once the peers are gone)."""
        if self._loop is not None:
            await cancel_all([self._loop])
            self._loop = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tuning.maintenance_interval_s)
            try:
                await self.maintain()
            except Exception:
                log.exception("maintenance")

    async def maintain(self, persist: bool | None = None) -> None:
        """One pass; `persist` True/False forces/skips the write, None: when it is due."""
        now = time.time()
        for ban in self.banman.expire(now):
            self.telemetry.emit(EventKind.UNBANNED, target=str(ban.target), reason="expired")
        self.book.resolve_collisions(now)
        for peer in self.table:
            score = self.scores.for_update(peer.score_key)
            if peer.valid:
                score.message(True, now, peer.valid)
                peer.valid = 0
            if peer.session.latency_ms is not None:
                peer.slot.min_ping_ms = peer.session.min_ping_ms
            self._sample_throughput(peer, score, now)
            s = score.score(now)
            peer.slot.score = s
            if abs(s - peer.last_score) >= 1.0:
                peer.last_score = s
                self.telemetry.emit(
                    EventKind.SCORE_CHANGED,
                    node_id=id_hex(peer.session.node_id or b""),
                    address=join_addr(peer.slot.addr),
                    score=round(s, 2),
                )
            if peer.session.outbound:
                self.book.connected(peer.slot.addr, now)
        self._rebalance()
        self.telemetry.metric("set_addrman", self.book.new_count, self.book.tried_count)
        self.telemetry.metric("set_bans", len(self.banman))
        counts: Counter[tuple[str, str]] = Counter(
            (p.slot.kind, "out" if p.slot.outbound else "in") for p in self.table
        )
        for mp in self.mesh_peers or ():
            counts[(KIND_NAMES[mp.record.kind], "mesh")] += 1
        self.telemetry.metric("set_peers", dict(counts))
        mono = time.monotonic()
        if persist or (
            persist is None and mono - self._last_persist >= self.tuning.persist_interval_s
        ):
            self._last_persist = mono
            await self.persist()
        self._wake()

    def _sample_throughput(self, peer: ConnectedPeer, score: PeerScore, now: float) -> None:
        """Feed the bytes/s the peer sent us since the last sample into its score.

        Only intervals in which the peer sent at least `throughput_min_bytes` count: an
        idle peer (pings only) says nothing about how fast it delivers, and must not
        look slow for being quiet."""
        mono = time.monotonic()
        got = peer.session.stream.bytes_in
        dt = mono - peer.tp_at
        if dt <= 0:
            return
        sent = got - peer.tp_bytes
        peer.tp_bytes = got
        peer.tp_at = mono
        if sent >= self.tuning.throughput_min_bytes:
            score.throughput(sent / dt, now)

    def _rebalance(self) -> None:
        peers = list(self.table)
        regular = [p for p in peers if p.slot.outbound and not p.slot.manual and not p.slot.feeler]
        extra = len(regular) - self.cfg.outbound_target
        if extra > 0:
            for p in sorted(regular, key=lambda p: p.slot.score)[:extra]:
                self.table.drop(p, "rebalance")
        inbound = [p for p in peers if not p.slot.outbound]
        while len(inbound) > self.cfg.inbound_cap:
            victim = self.policy.inbound_to_evict(self.table.slots(), time.time())
            if victim is None:
                break
            match = [p for p in inbound if p.slot is victim]
            if not match:
                break
            self.telemetry.emit(
                EventKind.EVICTED, address=join_addr(victim.addr), reason="inbound above the cap"
            )
            self.table.drop(match[0], "evicted")
            inbound.remove(match[0])

    async def persist(self) -> None:
        """Write the book's changed rows and the dirty peer scores in one batch."""
        changes = self.book.take_changes()
        stats = self.scores.take_dirty()

        def run(st: Store) -> Any:
            st.write_address_changes(changes.full, changes.upserts, changes.deletes)
            for key, data, updated in stats:
                st.queue_peer_stats(key, data, updated)
            st.flush()

        await self.store.run(run)
