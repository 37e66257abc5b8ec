"""The peer manager's periodic maintenance pass and its batched persistence.

`MaintenanceMixin` is the part of `manager.PeerManager` that keeps the
tables fresh and writes them out:

* **Maintenance** every `maintenance_interval_s`: ban expiry (UNBANNED, reason
  "expired"), addrman collision resolution, throughput sampling (bytes received per
  second since the last pass, from the session's byte counter; passes with less than
  `throughput_min_bytes` are idle and not sampled), score refresh (SCORE_CHANGED when
  a score moves by >= 1), rebalancing, metrics gauges; every `persist_interval_s` the
  book's changed rows and the dirty peer stats are written in one batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from loragate.events import EventKind
from loragate.peercore import ConnectedPeer, ManagerCore, join_addr
from loragate.scoring import PeerScore
from lorawire.identity import id_hex

# One logger for the whole peer manager: log lines keep naming "loragate.manager".
log = logging.getLogger("loragate.manager")


class MaintenanceMixin(ManagerCore):
    """Ban expiry, score refresh, throughput sampling, rebalancing, persistence."""

    # ---- maintenance -----------------------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tuning.maintenance_interval_s)
            try:
                await self.maintain()
            except Exception:
                log.exception("maintenance")

    async def maintain(self, persist: bool | None = None) -> None:
        now = time.time()
        for ban in self.banman.expire(now):
            self._emit(EventKind.UNBANNED, target=str(ban.target), reason="expired")
        self.book.resolve_collisions(now)
        for peer in list(self._peers.values()):
            score = self.score_for(peer.score_key)
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
                self._emit(
                    EventKind.SCORE_CHANGED,
                    node_id=id_hex(peer.session.node_id or b""),
                    address=join_addr(peer.slot.addr),
                    score=round(s, 2),
                )
            if peer.session.outbound:
                self.book.connected(peer.slot.addr, now)
        self._rebalance()
        self._metric("set_addrman", self.book.new_count, self.book.tried_count)
        self._metric("set_bans", len(self.banman))
        counts: Counter[tuple[str, str]] = Counter(
            (p.slot.kind, "out" if p.slot.outbound else "in") for p in self._peers.values()
        )
        self._metric("set_peers", dict(counts))
        mono = time.monotonic()
        if persist or (
            persist is None and mono - self._last_persist >= self.tuning.persist_interval_s
        ):
            self._last_persist = mono
            await self.persist()
        self._wake.set()

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
        regular = [
            p
            for p in self._peers.values()
            if p.slot.outbound and not p.slot.manual and not p.slot.feeler
        ]
        extra = len(regular) - self.cfg.outbound_target
        if extra > 0:
            for p in sorted(regular, key=lambda p: p.slot.score)[:extra]:
                self._drop(p, "rebalance")
        inbound = [p for p in self._peers.values() if not p.slot.outbound]
        while len(inbound) > self.cfg.inbound_cap:
            victim = self.policy.inbound_to_evict(self._slots(), time.time())
            if victim is None:
                break
            match = [p for p in inbound if p.slot is victim]
            if not match:
                break
            self._emit(
                EventKind.EVICTED, address=join_addr(victim.addr), reason="inbound above the cap"
            )
            self._drop(match[0], "evicted")
            inbound.remove(match[0])

    async def persist(self) -> None:
        """Write the book's changed rows and the dirty peer stats in one batch."""
        changes = self.book.take_changes()
        stats: list[tuple[str, dict[str, Any], float]] = []
        for key in self._dirty_scores:
            s = self._scores.get(key)
            if s is not None:
                stats.append((key, s.to_dict(), s.updated))
        self._dirty_scores.clear()

        def run(st: Any) -> None:
            st.write_address_changes(changes.full, changes.upserts, changes.deletes)
            for key, data, updated in stats:
                st.queue_peer_stats(key, data, updated)
            st.flush()

        await self.store.run(run)
