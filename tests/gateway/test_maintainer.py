"""Maintainer alone, over the real tables (partskit), real sessions on loopback and a real
SQLite file: the periodic pass and the batched write."""

from __future__ import annotations

import time
from pathlib import Path

from loragate.bans import net_target
from loragate.config import GatewayConfig
from loragate.events import EventKind
from loragate.maintainer import Maintainer
from loragate.netgroup import group_of
from loragate.peertable import ConnectedPeer, score_key
from loragate.pool import ConnectionPolicy, PeerSlot
from loragate.store import AsyncStore


def join(t, session, *, outbound: bool = True) -> ConnectedPeer:  # noqa: ANN001
    host = session.addr[0]
    slot = PeerSlot(session.addr, session.node_id, "full", outbound, group_of(host), time.time())
    peer = ConnectedPeer(session, slot, score_key(session.node_id, session.addr))
    t.table.add(peer)
    return peer


async def maintainer(t, tmp_path: Path, **cfg_kw) -> tuple[Maintainer, list[None], AsyncStore]:  # noqa: ANN001
    cfg = GatewayConfig(data_dir=tmp_path, **cfg_kw)
    store = await AsyncStore.open(cfg.db_path)
    woken: list[None] = []
    policy = ConnectionPolicy(cfg.outbound_target, cfg.inbound_cap, 2, cfg.preferred_kinds)
    m = Maintainer(
        cfg,
        t.tuning,
        table=t.table,
        scores=t.scores,
        book=t.book,
        banman=t.banman,
        policy=policy,
        store=store,
        telemetry=t.telemetry,
        wake=lambda: woken.append(None),
    )
    return m, woken, store


async def test_a_pass_counts_messages_reports_moves_and_writes_scores(
    tmp_path: Path, session_pair, tables
) -> None:
    t = tables()
    m, woken, store = await maintainer(t, tmp_path)
    try:
        ours, _ = await session_pair("127.11.0.2")
        peer = join(t, ours)
        t.scores.for_update(peer.score_key).handshake(False)
        t.scores.take_dirty()
        peer.valid = 40
        await m.maintain(persist=False)
        score = t.scores.get(peer.score_key)
        assert abs(score.valid - 40) < 0.01 and peer.valid == 0 and woken
        [moved] = [e for e in t.events if e.kind == EventKind.SCORE_CHANGED]
        assert moved.details["score"] == round(peer.slot.score, 2) and peer.last_score != 50
        await m.maintain(persist=False)  # nothing moved: no second report
        assert len([e for e in t.events if e.kind == EventKind.SCORE_CHANGED]) == 1
        await m.maintain(persist=True)
        stats = await store.run(lambda s: s.load_peer_stats())
        assert abs(stats[peer.score_key]["valid"] - 40) < 0.01
    finally:
        await store.close()


async def test_expired_bans_are_lifted_and_announced(tmp_path: Path, tables) -> None:
    t = tables()
    m, _, store = await maintainer(t, tmp_path)
    try:
        t.banman.ban(net_target("10.3.0.1"), duration_s=0.01, reason="short")
        time.sleep(0.02)
        await m.maintain(persist=False)
        assert not t.banman.is_banned(host="10.3.0.1")
        [ev] = [e for e in t.events if e.kind == EventKind.UNBANNED]
        assert ev.details == {"target": "10.3.0.1", "reason": "expired"}
    finally:
        await store.close()


async def test_rebalance_drops_the_worst_outbound_not_protected_inbound_peers(
    tmp_path: Path, session_pair, tables
) -> None:
    t = tables()
    m, _, store = await maintainer(t, tmp_path, outbound_target=1, inbound_cap=1)
    try:
        good = join(t, (await session_pair("127.11.1.2"))[0])
        bad = join(t, (await session_pair("127.11.1.3"))[0])
        inbound = [
            join(t, (await session_pair(f"127.11.{i}.2"))[0], outbound=False) for i in (2, 3)
        ]
        t.scores.for_update(good.score_key).message(True, count=20)
        t.scores.for_update(bad.score_key).message(False, count=5)
        await m.maintain(persist=False)
        left = list(t.table)
        assert good in left and bad not in left and all(p in left for p in inbound)
        gone = [e.details["reason"] for e in t.events if e.kind == EventKind.DISCONNECTED]
        assert gone == ["rebalance"]
    finally:
        await store.close()


async def test_persist_writes_the_books_changes(tmp_path: Path, tables) -> None:
    t = tables()
    m, _, store = await maintainer(t, tmp_path)
    try:
        assert t.book.add(("10.4.0.1", 8333), "127.9.9.9")
        await m.persist()
        rows = await store.run(lambda s: list(s.load_addresses()))
        assert [(r.host, r.port) for r in rows] == [("10.4.0.1", 8333)]
    finally:
        await store.close()
