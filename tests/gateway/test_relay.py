"""Relay over real gateways on loopback: INV/GETDATA/TX along a chain, dedupe, validator."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st
from peerkit import endpoint, objects_of, start_node, stop_node, view, wait_until

from loragate.bans import node_target
from loragate.events import EventKind
from loragate.relay import KIND_CODES, STORE_ENTRY_OVERHEAD, Relay, RelayLimits, object_hash
from loragate.session import PRIO_TX
from lorawire import messages


async def chain(tmp_path, validator=None, **kw):  # noqa: ANN001, ANN201
    c = await start_node(tmp_path, "127.3.0.1", outbound_target=0)
    b = await start_node(
        tmp_path, "127.2.0.1", outbound_target=0, connect=[endpoint(c)], validator=validator, **kw
    )
    a = await start_node(tmp_path, "127.1.0.1", outbound_target=0, connect=[endpoint(b)])
    await wait_until(lambda: a.peer_count == 1 and b.peer_count == 2 and c.peer_count == 1)
    return a, b, c


async def test_tx_from_a_reaches_c_through_b_once(tmp_path) -> None:
    a, b, c = await chain(tmp_path)
    try:
        got_c = objects_of(c)
        h = a.submit_local("tx", b"tx-1")
        await wait_until(lambda: c.relay.has(h))
        assert got_c == [("tx", b"tx-1")]
        assert c.relay.get(h) == b"tx-1"
        assert a.connected_ids() == {b.identity.id}  # there is no direct A-C link
        assert b.relay.relayed["tx"] == 1  # B served it to C once
        assert b.relay.received["tx"] == 1
        # The same tx again, pushed unsolicited by A: B sees a duplicate, relays nothing.
        inv_before = b.relay.relayed["inv"]
        assert a.submit_local("tx", b"tx-1") == h
        a.sessions()[0].send(messages.TX, {0: b"tx-1"}, PRIO_TX)
        await wait_until(lambda: b.relay.duplicates >= 1)
        await asyncio.sleep(0.2)
        assert b.relay.relayed["tx"] == 1 and b.relay.relayed["inv"] == inv_before
        assert got_c == [("tx", b"tx-1")]
        # A block takes the same path.
        hb = a.submit_local("block", b"block-1")
        await wait_until(lambda: c.relay.has(hb))
        assert b.relay.relayed["block"] == 1
        # B kept the GETDATA response time of A for A's score.
        peer_a = b.peer(a.identity.id)
        assert peer_a is not None
        assert b.scores.get(peer_a.score_key).response_ms is not None
        # Useful-data marks feed eviction protection.
        assert peer_a.slot.last_tx_at is not None and peer_a.slot.last_block_at is not None
    finally:
        for m in (a, b, c):
            await stop_node(m)


async def test_invalid_tx_earns_points_then_ban(tmp_path) -> None:
    def validator(kind: str, payload: bytes) -> bool | None:
        return not payload.startswith(b"bad")

    a, b, c = await chain(tmp_path, validator=validator, ban_threshold=250)
    sub = b.bus.subscribe()
    try:
        target = node_target(a.identity.id)
        a.submit_local("tx", b"bad-1")
        await wait_until(lambda: b.banman.points(target) >= 99)
        assert round(b.banman.points(target)) == 100
        assert a.identity.id in b.connected_ids()  # below the threshold: still connected
        a.submit_local("tx", b"bad-2")
        a.submit_local("tx", b"good-1")
        await wait_until(lambda: round(b.banman.points(target)) == 200)
        hgood = object_hash(b"good-1")
        await wait_until(lambda: c.relay.has(hgood))
        assert not c.relay.has(object_hash(b"bad-1")) and not c.relay.has(object_hash(b"bad-2"))
        a.submit_local("tx", b"bad-3")
        await wait_until(lambda: b.banman.is_banned(node_id=a.identity.id))
        assert b.banman.is_banned(host="127.1.0.1")  # the address goes with the node
        await wait_until(lambda: a.identity.id not in b.connected_ids())
        ev = b.banman.evidence(target)
        assert [e.misbehaviour for e in ev] == ["invalid_sync_data"] * 3
        kinds = []
        while not sub.queue.empty():
            kinds.append(sub.get_nowait().kind)
        assert EventKind.BANNED in kinds and EventKind.DISCONNECTED in kinds
        # A keeps redialling its manual peer; B refuses it before any handshake.
        await wait_until(lambda: b.stats["refused_banned"] >= 1)
        assert a.identity.id not in b.connected_ids()
        bans = await view(b).bans()
        assert {x["target"] for x in bans} == {str(target), "127.1.0.1"}
    finally:
        for m in (a, b, c):
            await stop_node(m)


class FakePeer:
    """Records what the relay sends (a unit check of the store bounds; the network
    behaviour is covered above)."""

    node_id = None
    host = None

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.sent: list[tuple[int, bytes, int]] = []

    def send_body(self, msg_type: int, body: bytes, prio: int = 0) -> bool:
        self.sent.append((msg_type, body, prio))
        return True


def test_object_store_and_seen_cache_are_bounded() -> None:
    entry = STORE_ENTRY_OVERHEAD + 15  # an 11-byte payload encodes to a 15-byte body
    for max_objects, max_bytes, held in ((10, 100 * entry, 10), (100, 7 * entry + 5, 7)):
        lim = RelayLimits(seen_max=50, store_max_objects=max_objects, store_max_bytes=max_bytes)
        r = Relay(limits=lim)
        hs = [r.submit_local("tx", b"%03d-payload" % i) for i in range(60)]  # 11 bytes each
        assert r.object_count == held and r.object_bytes == held * entry
        assert r.get(hs[-1]) is not None and r.get(hs[-held - 1]) is None
        assert r.seen_count == 50


def test_blocks_announced_before_transactions() -> None:
    r = Relay()
    p = FakePeer(1)
    r.add_peer(p)
    r.submit_local("tx", b"t1")
    r.submit_local("block", b"b1")  # no running loop: flushed at once, one INV each
    kinds = [(t, prio) for t, _, prio in p.sent]
    assert kinds[0][0] == messages.INV
    r2 = Relay()
    p2 = FakePeer(2)
    r2.add_peer(p2)

    async def both() -> None:
        r2.submit_local("tx", b"t1")
        r2.submit_local("block", b"b1")
        await asyncio.sleep(0)

    asyncio.run(both())
    invs = [messages.decode_body(t, body)[0] for t, body, _ in p2.sent]
    assert [inv[0][0] for inv in invs] == [messages.KIND_BLOCK, messages.KIND_TX]


@given(
    st.lists(
        st.tuples(st.sampled_from(["tx", "block"]), st.binary(min_size=1, max_size=64)),
        max_size=80,
    )
)
def test_relay_tables_never_exceed_capacity(objects: list[tuple[str, bytes]]) -> None:
    max_bytes = 5 * (STORE_ENTRY_OVERHEAD + 40)
    lim = RelayLimits(
        seen_max=20, store_max_objects=8, store_max_bytes=max_bytes, known_per_peer=10
    )
    r = Relay(limits=lim)
    p = FakePeer(1)
    r.add_peer(p)
    for kind, payload in objects:
        h = r.submit_local(kind, payload)
        assert r.has(h)
        assert r.object_count <= 8 and r.object_bytes <= max_bytes and r.seen_count <= 20
        assert r.known_count(p) <= 10
    # Asking for everything returns only what is still held, each at most once.
    items = [[KIND_CODES[k], object_hash(v)] for k, v in objects][-32:]
    p.sent.clear()
    if items:
        r.handle(p, messages.GETDATA, {0: items})
    assert len(p.sent) <= r.object_count
