"""The peer manager's tables, alone: connected peers (real sessions over loopback TCP),
scores, records, mesh peers."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from loragate.events import EventKind
from loragate.netgroup import group_of
from loragate.peertable import (
    ConnectedPeer,
    MeshPeer,
    MeshPeerTable,
    RecordTable,
    ScoreTable,
    score_key,
    settled_score,
)
from loragate.pool import PeerSlot
from loragate.scoring import DEFAULT_WEIGHTS, PeerScore, node_key
from lorawire.identity import Identity
from lorawire.record import KIND_MESH, decode_record, encode_record


def connected(session, connected_at: float) -> ConnectedPeer:  # noqa: ANN001
    host, port = session.addr
    slot = PeerSlot((host, port), session.node_id, "full", True, group_of(host), connected_at)
    return ConnectedPeer(session, slot, score_key(session.node_id, session.addr))


async def test_forget_settles_the_session_into_the_score_once(session_pair, tables) -> None:
    t = tables()
    ours, _ = await session_pair("127.7.0.1")
    departed: list[tuple[ConnectedPeer, float]] = []
    t.table.on_departure.add(lambda peer, up: departed.append((peer, up)))
    peer = connected(ours, time.time() - 120)
    t.table.add(peer)
    t.scores.for_update(peer.score_key).handshake(True)
    peer.valid = 7  # valid messages maintenance has not counted yet
    assert t.table.by_id(ours.node_id) is peer and t.table.get(ours.serial) is peer
    preview = settled_score(t.scores, peer, time.time())
    before = t.scores.get(peer.score_key).score()
    t.table.forget(peer, "test")
    after = t.scores.get(peer.score_key)
    assert after.up_s >= 119 and after.valid >= 7 * 0.99
    # What the view showed while it ran is what the table keeps once it has gone.
    assert preview is not None and abs(preview - after.score()) < 0.01 and preview != before
    assert len(t.table) == 0 and t.table.by_id(ours.node_id) is None
    assert [round(up) for _, up in departed] == [120]
    [ev] = [e for e in t.events if e.kind == EventKind.DISCONNECTED]
    assert ev.details["reason"] == "test" and ev.details["node_id"] == ours.node_id.hex()
    t.table.forget(peer, "again")  # a second departure changes nothing
    assert len(departed) == 1 and t.scores.get(peer.score_key).valid == after.valid


async def test_drop_takes_the_peer_out_now_and_closes_its_session(session_pair, tables) -> None:
    t = tables()
    ours, theirs = await session_pair("127.7.0.2")
    peer = connected(ours, time.time())
    t.table.add(peer)
    assert t.table.has_addr(ours.addr) and t.table.node_ids() == {ours.node_id}
    t.table.drop(peer, "banned")
    assert len(t.table) == 0 and not t.table.has_addr(ours.addr)
    await ours.wait_closed()
    assert ours.close_reason == "banned"


def test_score_table_is_bounded_and_forgets_dirty_keys_it_evicts() -> None:
    scores = ScoreTable(DEFAULT_WEIGHTS, maxlen=3)
    for i in range(5):
        scores.for_update(f"k{i}").message(True)
    assert len(scores) == 3 and "k0" not in scores and "k4" in scores
    assert sorted(key for key, _, _ in scores.take_dirty()) == ["k2", "k3", "k4"]
    assert scores.take_dirty() == []  # taken
    assert scores.get("k9") is None and "k9" not in scores  # a read creates nothing
    assert not scores.load("bad", {"hs_ok": "many"})
    assert scores.load("k1", PeerScore(DEFAULT_WEIGHTS).to_dict()) and scores.take_dirty() == []


@given(st.lists(st.integers(0, 20), max_size=200))
def test_score_table_keeps_the_most_recently_touched(keys: list[int]) -> None:
    scores = ScoreTable(DEFAULT_WEIGHTS, maxlen=5)
    for k in keys:
        scores.for_update(f"k{k}")
    recent: list[int] = []
    for k in reversed(keys):
        if k not in recent:
            recent.append(k)
    assert {f"k{k}" for k in recent[:5]} == {f"k{k}" for k in range(21) if f"k{k}" in scores}


def test_record_table_keeps_only_newer_sequences() -> None:
    ident = Identity.generate()
    records = RecordTable(maxlen=2)
    old, new = (decode_record(encode_record({"kind": 0, "seq": n}, ident)) for n in (1, 2))
    assert records.hold(new) and not records.hold(old)
    assert records.get(ident.id) is new and ident.id in records
    for _ in range(3):
        records.hold(decode_record(encode_record({"kind": 0, "seq": 1}, Identity.generate())))
    assert len(records) == 2 and ident.id not in records  # the oldest went first


def test_mesh_peer_table_forgets_the_least_recently_heard() -> None:
    table = MeshPeerTable(maxlen=2)
    recs = [
        decode_record(encode_record({"kind": KIND_MESH, "seq": 1}, Identity.generate()))
        for _ in range(3)
    ]
    for rec in recs:
        table.heard(MeshPeer(rec, bytes(8), -90.0, 5.0, 1, time.time()))
    table.heard(MeshPeer(recs[1], bytes(8), -80.0, 6.0, 0, time.time()))  # heard again
    assert [p.record.id for p in table] == [recs[2].id, recs[1].id]
    assert table.get(recs[1].id).rssi == -80.0 and table.get(recs[0].id) is None


def test_score_keys() -> None:
    node = bytes.fromhex("0102030405060708")
    assert score_key(node, ("127.0.0.1", 1)) == node_key(node) == "node:0102030405060708"
    assert score_key(None, ("::1", 8333)) == "[::1]:8333"
