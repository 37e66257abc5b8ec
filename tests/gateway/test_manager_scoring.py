"""PeerManager: the score drives eviction and selection, throughput, maintenance (real
loopback sockets, real SQLite files)."""

from __future__ import annotations

import asyncio
import time

from peerkit import SlowPong, drain, fast_tuning, start_node, stop_node, wait_until

from loragate.bans import net_target
from loragate.events import EventKind
from loragate.netgroup import group_of
from loragate.session import PRIO_TX, HandshakeFailed, PeerSession
from loragate.store import AsyncStore
from loragate.transport import FrameStream
from lorawire import messages
from lorawire.identity import Identity
from lorawire.record import KIND_FULL, encode_record


def reject_bad(kind: str, payload: bytes) -> bool | None:
    return not payload.startswith(b"bad")


async def client(
    m,  # noqa: ANN001
    src: str,
    ident: Identity | None = None,
    cls: type[PeerSession] = PeerSession,
) -> PeerSession:
    ident = ident or Identity.generate()
    r, w = await asyncio.open_connection(*m.listen_addr, local_addr=(src, 0))
    host = bytes(int(x) for x in src.split("."))
    rec = encode_record({"kind": KIND_FULL, "seq": 1, "endpoints": [(host, 1)]}, ident)
    s = cls(FrameStream(r, w), ident, rec, outbound=True, handshake_timeout_s=3)
    await s.handshake()
    s.start()
    return s


def peer_of(m, ident: Identity):  # noqa: ANN001, ANN201
    return m.peer(ident.id)


async def test_low_score_inbound_peer_is_evicted_before_a_younger_better_one(tmp_path) -> None:
    cap = 16
    g = await start_node(
        tmp_path,
        "127.120.0.1",
        inbound_cap=cap,
        outbound_target=0,
        ban_threshold=100_000,
        validator=reject_bad,
        tuning=fast_tuning(maintenance_interval_s=0.2),
    )
    sub = g.bus.subscribe()
    clients: list[PeerSession] = []
    try:
        # Order the /16s by the gateway's keyed group rank: fillers take the 4 highest
        # (group protection), bad and good share the lowest.
        octets = sorted(
            range(121, 140), key=lambda o: g.policy.group_rank(group_of(f"127.{o}.0.1"))
        )
        low, fillers = octets[0], octets[-14:]
        for o in fillers:  # fast and oldest: ping and uptime protection cover them
            clients.append(await client(g, f"127.{o}.0.1"))
        bad = await client(g, f"127.{low}.0.1", cls=SlowPong)
        good = await client(g, f"127.{low}.0.2", cls=SlowPong)  # younger, same group
        clients += [bad, good]
        await wait_until(lambda: g.peer_count == cap)
        await wait_until(lambda: all(s.min_ping_ms is not None for s in g.sessions()))
        bad.send(messages.TX, {0: b"bad tx"}, PRIO_TX)
        await wait_until(lambda: g.relay.invalid == 1)
        await wait_until(
            lambda: peer_of(g, bad.identity).slot.score < peer_of(g, good.identity).slot.score - 5
        )
        assert not g.banman.is_banned(node_id=bad.identity.id)
        newcomer = await client(g, "127.141.0.1")
        clients.append(newcomer)
        await wait_until(lambda: bad.closed)
        assert not good.closed  # the old rule (newest of the group) would have taken it
        assert newcomer.identity.id in g.connected_ids() and g.peer_count == cap
        evicted = [e for e in drain(sub) if e.kind == EventKind.EVICTED]
        assert [e.details["node_id"] for e in evicted] == [bad.identity.hex_id()]
    finally:
        for s in clients:
            await s.close()
        await stop_node(g)


async def test_outbound_dials_the_better_scored_of_two_addresses(tmp_path) -> None:
    good = await start_node(tmp_path, "127.142.0.1", outbound_target=0)
    bad = await start_node(tmp_path, "127.143.0.1", outbound_target=0)
    g = await start_node(tmp_path, "127.144.0.1", outbound_target=1)
    sub = g.bus.subscribe()
    try:
        # What g remembers of the two nodes from earlier sessions.
        g.score_for(f"node:{good.identity.id.hex()}").message(True, count=50)
        worse = g.score_for(f"node:{bad.identity.id.hex()}")
        worse.handshake(False)
        worse.message(False, count=3)
        for node in (bad, good):
            assert g.book.add(node.listen_addr, "127.250.0.1", node_id=node.identity.id)
        await wait_until(lambda: g.peer_count == 1)
        assert g.connected_ids() == {good.identity.id}
        connected = [e for e in drain(sub) if e.kind == EventKind.CONNECTED]
        assert connected and connected[0].details["node_id"] == good.identity.hex_id()
        assert connected[0].details["direction"] == "out"
    finally:
        for m in (g, good, bad):
            await stop_node(m)


async def test_throughput_is_sampled_in_maintenance(tmp_path) -> None:
    g = await start_node(
        tmp_path, "127.145.0.1", outbound_target=0, tuning=fast_tuning(maintenance_interval_s=3600)
    )
    try:
        busy = await client(g, "127.146.0.1")
        idle = await client(g, "127.147.0.1")
        await wait_until(lambda: g.peer_count == 2)
        await wait_until(lambda: all(s.latency_ms is not None for s in g.sessions()))
        first = g.score_for(peer_of(g, busy.identity).score_key)
        assert first.throughput_bps is None
        before = first.components()[1]
        for i in range(10):
            busy.send(messages.TX, {0: bytes([i]) * 1000}, PRIO_TX)
        await wait_until(lambda: g.relay.received["tx"] == 10)
        await g.maintainer.maintain()
        score = g.score_for(peer_of(g, busy.identity).score_key)
        bps = score.throughput_bps
        assert bps is not None and bps > 0
        w = g.scores.weights
        ref = w.throughput_ref_bps
        assert score.latency_ms is not None
        lat = w.latency_ref_ms / (w.latency_ref_ms + score.latency_ms)
        # Performance is now the mean of the latency and throughput terms.
        assert abs(score.components()[1] - (lat + bps / (bps + ref)) / 2) < 1e-9
        assert score.components()[1] != before
        assert g.score_for(peer_of(g, idle.identity).score_key).throughput_bps is None
        await busy.close()
        await idle.close()
    finally:
        await stop_node(g)


async def test_maintenance_emits_score_changes(tmp_path) -> None:
    g = await start_node(
        tmp_path,
        "127.148.0.1",
        outbound_target=0,
        ban_threshold=100_000,
        validator=reject_bad,
        tuning=fast_tuning(maintenance_interval_s=3600),
    )
    sub = g.bus.subscribe()
    try:
        s = await client(g, "127.149.0.1")
        await wait_until(lambda: g.peer_count == 1)
        start = peer_of(g, s.identity).slot.score
        s.send(messages.TX, {0: b"bad one"}, PRIO_TX)
        await wait_until(lambda: g.relay.invalid == 1)
        await g.maintainer.maintain()
        events = drain(sub)
        assert EventKind.CONNECTED in [e.kind for e in events]
        changed = [e for e in events if e.kind == EventKind.SCORE_CHANGED]
        assert len(changed) == 1 and changed[0].details["node_id"] == s.identity.hex_id()
        first = changed[0].details["score"]
        assert abs(first - start) >= 1
        assert abs(peer_of(g, s.identity).slot.score - first) < 0.01
        await g.maintainer.maintain()  # nothing moved since: no new event
        assert not [e for e in drain(sub) if e.kind == EventKind.SCORE_CHANGED]
        for i in range(3):  # more invalid data: the score falls, and that is reported
            s.send(messages.TX, {0: b"bad %d" % i}, PRIO_TX)
        await wait_until(lambda: g.relay.invalid == 4)
        await g.maintainer.maintain()
        changed = [e for e in drain(sub) if e.kind == EventKind.SCORE_CHANGED]
        assert len(changed) == 1 and changed[0].details["score"] <= first - 1
        await s.close()
    finally:
        await stop_node(g)


async def test_short_ban_expires_in_maintenance(tmp_path) -> None:
    g = await start_node(
        tmp_path, "127.150.0.1", outbound_target=0, tuning=fast_tuning(maintenance_interval_s=3600)
    )
    sub = g.bus.subscribe()
    try:
        await g.ban(net_target("127.151.0.1"), 0.3, "short")
        try:
            s = await client(g, "127.151.0.1")
        except HandshakeFailed:
            pass
        else:  # pragma: no cover - a banned address must not get in
            await s.close()
            raise AssertionError("banned address completed a handshake")
        assert g.stats["refused_banned"] == 1
        await asyncio.sleep(0.35)
        await g.maintainer.maintain()
        unbanned = [e for e in drain(sub) if e.kind == EventKind.UNBANNED]
        assert [e.details["reason"] for e in unbanned] == ["expired"]
        assert "127.151.0.1" in unbanned[0].details["target"]
        assert g.banman.find_ban(host="127.151.0.1") is None
        s = await client(g, "127.151.0.1")
        await wait_until(lambda: g.peer_count == 1)
        assert EventKind.CONNECTED in [e.kind for e in drain(sub)]
        await s.close()
    finally:
        await stop_node(g)


async def test_rebalance_drops_the_worst_outbound_peer(tmp_path) -> None:
    p1 = await start_node(tmp_path, "127.152.0.1", outbound_target=0)
    p2 = await start_node(tmp_path, "127.153.0.1", outbound_target=0)
    g = await start_node(
        tmp_path,
        "127.154.0.1",
        outbound_target=2,
        ban_threshold=100_000,
        validator=reject_bad,
        tuning=fast_tuning(maintenance_interval_s=3600),
    )
    sub = g.bus.subscribe()
    try:
        g.add_addresses([p1.listen_addr, p2.listen_addr])
        await wait_until(lambda: g.peer_count == 2)
        assert all(s.outbound for s in g.slots())
        p2.submit_local("tx", b"bad from p2")  # announced, fetched, rejected by g
        await wait_until(lambda: g.relay.invalid == 1)
        await g.maintainer.maintain()
        assert g.peer_count == 2  # at the target: nothing to rebalance
        g.cfg.outbound_target = g.policy.outbound_target = 1
        await g.maintainer.maintain()
        assert g.connected_ids() == {p1.identity.id}
        gone = [e for e in drain(sub) if e.kind == EventKind.DISCONNECTED]
        assert [(e.details["node_id"], e.details["reason"]) for e in gone] == [
            (p2.identity.hex_id(), "rebalance")
        ]
    finally:
        for m in (g, p1, p2):
            await stop_node(m)


async def test_peer_stats_persist_in_maintenance_and_reload(tmp_path) -> None:
    ident = Identity.generate()
    g = await start_node(
        tmp_path,
        "127.155.0.1",
        name="g",
        identity=ident,
        outbound_target=0,
        tuning=fast_tuning(maintenance_interval_s=3600, persist_interval_s=3600),
    )
    try:
        s = await client(g, "127.156.0.1")
        await wait_until(lambda: g.peer_count == 1)
        for i in range(3):
            s.send(messages.TX, {0: b"tx %d" % i}, PRIO_TX)
        await wait_until(lambda: g.relay.received["tx"] == 3)
        key = f"node:{s.identity.id.hex()}"
        await g.maintainer.maintain(persist=True)
        kept = g.scores.get(key).to_dict()
        # Written while the gateway runs: a second connection to the file sees the row.
        reader = await AsyncStore.open(g.cfg.db_path)
        try:
            stats = await reader.run(lambda st: st.load_peer_stats())
        finally:
            await reader.close()
        assert stats[key]["hs_ok"] == kept["hs_ok"] and stats[key]["valid"] >= 3
        await s.close()
    finally:
        await stop_node(g)
    t0 = time.time()
    g2 = await start_node(tmp_path, "127.155.0.1", name="g", identity=ident, outbound_target=0)
    try:
        score = g2.scores.get(key)
        assert score is not None
        assert score.valid >= 3 * 0.99 and score.hs_ok > 0.99
        assert score.updated <= t0
    finally:
        await stop_node(g2)
