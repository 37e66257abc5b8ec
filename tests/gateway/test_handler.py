"""MessageHandler alone, over the real tables (partskit) and real sessions on loopback:
PEX, records, discovery entry points, relay reports, misbehaviour into bans."""

from __future__ import annotations

import asyncio
import time

from peerkit import wait_until

from loragate.bans import BanPolicy, Misbehaviour, net_target, node_target
from loragate.events import EventKind
from loragate.netgroup import group_of
from loragate.peertable import ConnectedPeer, score_key
from loragate.pool import PeerSlot
from loragate.scoring import node_key
from loragate.session import PRIO_CONTROL, PeerSession
from lorawire import messages
from lorawire.identity import Identity
from lorawire.record import KIND_FULL, KIND_MESH, decode_record, encode_record


def join(t, session: PeerSession) -> ConnectedPeer:  # noqa: ANN001
    """Seat an established session in the table, as the connector does."""
    host = session.addr[0]
    slot = PeerSlot(session.addr, session.node_id, "full", True, group_of(host), time.time())
    peer = ConnectedPeer(session, slot, score_key(session.node_id, session.addr))
    t.table.add(peer)
    t.relay.add_peer(session)
    return peer


def record_with_endpoint(host: str, port: int, seq: int = 1) -> bytes:
    packed = bytes(int(x) for x in host.split("."))
    ident = Identity.generate()
    return encode_record({"kind": KIND_FULL, "seq": seq, "endpoints": [(packed, port)]}, ident)


async def test_pex_answers_with_our_record_first_then_verified_ones(session_pair, tables) -> None:
    t = tables(("127.8.0.1", 8333))
    t.own.make_record(1)
    handler = t.handler()
    got: list[dict[int, list[object]]] = []

    def on_theirs(s: PeerSession, mtype: int, value: object, data: bytes) -> None:
        if mtype == messages.PEX_RESPONSE:
            got.append(value)

    ours, theirs = await session_pair(
        "127.8.0.2", on_message=handler.on_message, theirs={"on_message": on_theirs}
    )
    join(t, ours)
    held = [decode_record(record_with_endpoint(f"10.0.{i}.1", 8333)) for i in range(3)]
    no_endpoint = decode_record(encode_record({"kind": KIND_MESH, "seq": 1}, Identity.generate()))
    for rec in (*held, no_endpoint):
        t.records.hold(rec)
    skip = held[0].id[: messages.PREFIX_LEN]  # the asker says it holds this one
    theirs.send(messages.PEX_REQUEST, {0: 16, 1: [skip]}, PRIO_CONTROL)
    await wait_until(lambda: got)
    [value] = got
    ids = [decode_record(v).id for v in value[0]]
    assert ids[0] == t.own.identity.id
    assert sorted(ids[1:]) == sorted(r.id for r in held[1:])  # no endpoint-less record


async def test_a_forged_record_bans_its_sender_and_drops_it(session_pair, tables) -> None:
    t = tables(policy=BanPolicy(threshold=100))
    handler = t.handler()
    ours, theirs = await session_pair("127.8.1.2", on_message=handler.on_message)
    join(t, ours)
    forged = dict(decode_record(record_with_endpoint("127.8.9.1", 9000)).value)
    forged[6] = bytes(64)  # a signature of zeros
    theirs.send(messages.ANNOUNCE, forged, PRIO_CONTROL)
    await wait_until(lambda: len(t.table) == 0)
    assert t.banman.is_banned(node_id=ours.node_id) and t.banman.is_banned(host="127.8.1.2")
    assert t.book.get(("127.8.9.1", 9000)) is None  # nothing it said entered the book
    [ev] = t.banman.evidence(node_target(ours.node_id))
    assert ev.misbehaviour == "bad_signature" and ev.reason == "peer record: bad_signature"
    assert EventKind.BANNED in t.kinds() and t.scores.get(node_key(ours.node_id)).invalid > 0
    await ours.wait_closed()


async def test_announced_endpoints_enter_the_book_with_the_sender_as_source(
    session_pair, tables
) -> None:
    t = tables()
    handler = t.handler()
    woken: list[None] = []
    handler.on_new_addresses.add(lambda: woken.append(None))
    ours, theirs = await session_pair("127.8.2.2", on_message=handler.on_message)
    join(t, ours)
    theirs.send(messages.ANNOUNCE, decode_record(record_with_endpoint("10.9.0.1", 8333)).value)
    await wait_until(lambda: t.book.get(("10.9.0.1", 8333)) is not None)
    assert woken and [e.details["source"] for e in t.events if e.kind == "discovered"] == [
        "127.8.2.2"
    ]


def test_addresses_from_discovery(tables) -> None:
    t = tables()
    handler = t.handler()
    woken: list[None] = []
    handler.on_new_addresses.add(lambda: woken.append(None))
    src = "127.9.9.9"  # the resolver that answered
    new = handler.add_addresses([("10.1.0.1", 8333), ("bad host", 1), ("10.2.0.1", 8333)], src)
    assert new == 2 and len(t.book) == 2 and len(woken) == 1
    assert handler.add_addresses([("10.1.0.1", 8333)], src) == 0 and len(woken) == 1
    assert [e.details["address"] for e in t.events] == ["10.1.0.1:8333", "10.2.0.1:8333"]


def test_mesh_announcements_make_mesh_peers(tables) -> None:
    t = tables()
    handler = t.handler()
    node, bridge = Identity.generate(), bytes.fromhex("b0a4d00000000001")
    raw = encode_record({"kind": KIND_MESH, "seq": 5}, node)
    rec = handler.add_mesh_announcement(raw, bridge, -90.0, 4.0, 2)
    assert rec is not None and t.mesh_peers.get(node.id).hops == 2 and node.id in t.records
    assert t.scores.get(node_key(node.id)).rssi == -90.0
    older = encode_record({"kind": KIND_MESH, "seq": 4}, node)
    assert handler.add_mesh_announcement(older, bridge, -70.0, 9.0, 0) is None
    assert t.mesh_peers.get(node.id).rssi == -90.0 and t.stats["mesh_records_refused"] == 1
    own = encode_record({"kind": 2, "seq": 1}, t.own.identity)
    assert handler.add_mesh_announcement(own, bridge, -50.0, 9.0, 0) is None


class Seat:
    """A relay peer that is not a TCP peer of the table (as the mesh wing's seat is)."""

    serial = -1
    node_id = bytes.fromhex("0a0b0c0d0e0f1011")
    host = None

    def send_body(self, msg_type: int, body: bytes, prio: int = 0) -> bool:
        return True


async def test_invalid_objects_are_charged_to_tcp_peers_only(session_pair, tables) -> None:
    t = tables(policy=BanPolicy(threshold=1000), validator=lambda kind, payload: False)
    t.handler()
    ours, _ = await session_pair("127.8.3.2")
    join(t, ours)
    seat = Seat()
    t.relay.add_peer(seat)
    t.relay.handle(seat, messages.TX, {0: b"bad from the mesh"})
    assert t.banman.points(node_target(seat.node_id)) == 0  # the mesh wing judges its own
    t.relay.handle(ours, messages.TX, {0: b"bad from tcp"})
    assert round(t.banman.points(node_target(ours.node_id))) == 100  # the id is proven
    assert t.stats["misbehaviour_invalid_sync_data"] == 1


async def test_a_ban_drops_every_covered_peer_and_lifting_it_is_announced(
    session_pair, tables
) -> None:
    t = tables()
    handler = t.handler()
    inside = [join(t, (await session_pair(f"127.8.4.{i}"))[0]) for i in (2, 3)]
    assert [p.session.host for p in inside] == ["127.8.4.2", "127.8.4.3"]
    outside = join(t, (await session_pair("127.9.4.2"))[0])
    ban = t.banman.ban(net_target("127.8.0.0/16"), duration_s=60, reason="test")
    handler.apply_ban(ban)
    assert [p for p in t.table] == [outside]
    await asyncio.gather(*(p.session.wait_closed() for p in inside))
    assert handler.lift_ban(ban.target, "manual") and not handler.lift_ban(ban.target, "manual")
    assert [e.details.get("reason") for e in t.events if e.kind == EventKind.UNBANNED] == ["manual"]


def test_misbehaviour_without_a_target_costs_nothing(tables) -> None:
    t = tables()
    assert t.handler().misbehaving(Misbehaviour.REPLAY, None, None, "nobody") == []
    assert t.stats["misbehaviour_replay"] == 1 and len(t.banman) == 0
