"""Per-peer token buckets over a real session: PEX requests (session) and INV items and
unsolicited objects (relay). The excess is dropped and earns FLOODING points."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from peerkit import fast_tuning, start_node, stop_node, wait_until

from loragate.bans import node_target
from loragate.relay import RelayLimits
from loragate.session import PRIO_CONTROL, PRIO_TX, PeerSession, SessionLimits
from loragate.transport import FrameStream
from lorawire import messages
from lorawire.identity import Identity
from lorawire.record import KIND_FULL, encode_record

FLOODING_POINTS = 25


async def client(m, src: str, got: list[tuple[int, Any]]) -> PeerSession:  # noqa: ANN001
    ident = Identity.generate()
    r, w = await asyncio.open_connection(*m.listen_addr, local_addr=(src, 0))
    host = bytes(int(x) for x in src.split("."))
    rec = encode_record({"kind": KIND_FULL, "seq": 1, "endpoints": [(host, 1)]}, ident)

    def on_message(session: PeerSession, msg_type: int, value: Any, data: bytes) -> None:
        got.append((msg_type, value))

    s = PeerSession(
        FrameStream(r, w), ident, rec, outbound=True, handshake_timeout_s=3, on_message=on_message
    )
    await s.handshake()
    s.start()
    return s


def points(m, s: PeerSession) -> int:  # noqa: ANN001
    return round(m.banman.points(node_target(s.identity.id)))


async def test_pex_requests_above_the_burst_are_dropped_and_cost_points(tmp_path) -> None:
    tuning = fast_tuning(session=SessionLimits(pex_rate=0.01, pex_burst=2))
    g = await start_node(tmp_path, "127.160.0.1", outbound_target=0, tuning=tuning)
    got: list[tuple[int, Any]] = []
    try:
        s = await client(g, "127.161.0.1", got)
        await wait_until(lambda: g.peer_count == 1)
        for _ in range(6):
            s.send(messages.PEX_REQUEST, {0: 4, 1: []}, PRIO_CONTROL)
        await wait_until(lambda: points(g, s) > 0)
        await asyncio.sleep(0.2)  # let any further (wrong) answers arrive
        answers = [v for t, v in got if t == messages.PEX_RESPONSE]
        assert len(answers) == 2  # the burst; the other four were dropped
        assert g.sessions()[0].dropped_in == 4
        # One report per flood_report_interval_s: 4 drops in a burst cost 25 points once.
        assert points(g, s) == FLOODING_POINTS
        assert g.stats["misbehaviour_flooding"] == 1
        assert not g.banman.is_banned(node_id=s.identity.id)
        await s.close()
    finally:
        await stop_node(g)


async def test_inv_items_above_the_burst_are_dropped_and_cost_points(tmp_path) -> None:
    tuning = fast_tuning(relay=RelayLimits(inv_item_rate=0.01, inv_item_burst=10))
    g = await start_node(tmp_path, "127.162.0.1", outbound_target=0, tuning=tuning)
    got: list[tuple[int, Any]] = []
    try:
        s = await client(g, "127.163.0.1", got)
        await wait_until(lambda: g.peer_count == 1)
        hashes = [hashlib.sha256(b"tx %d" % i).digest() for i in range(15)]
        s.send(messages.INV, {0: [[messages.KIND_TX, h] for h in hashes[:10]]}, PRIO_TX)
        await wait_until(lambda: any(t == messages.GETDATA for t, _ in got))
        assert points(g, s) == 0  # within the burst
        s.send(messages.INV, {0: [[messages.KIND_TX, h] for h in hashes[10:]]}, PRIO_TX)
        await wait_until(lambda: g.relay.dropped["inv"] == 5)
        await wait_until(lambda: points(g, s) == FLOODING_POINTS)
        await asyncio.sleep(0.2)
        asked = [bytes(h) for t, v in got if t == messages.GETDATA for _, h in v[0]]
        assert sorted(asked) == sorted(hashes[:10])  # nothing of the dropped INV was asked
        await s.close()
    finally:
        await stop_node(g)


async def test_unsolicited_objects_above_the_burst_are_dropped_and_cost_points(tmp_path) -> None:
    tuning = fast_tuning(relay=RelayLimits(object_rate=0.01, object_burst=3))
    g = await start_node(tmp_path, "127.164.0.1", outbound_target=0, tuning=tuning)
    got: list[tuple[int, Any]] = []
    try:
        s = await client(g, "127.165.0.1", got)
        await wait_until(lambda: g.peer_count == 1)
        payloads = [b"unsolicited %d" % i for i in range(7)]
        for p in payloads:
            s.send(messages.TX, {0: p}, PRIO_TX)
        await wait_until(lambda: g.relay.dropped["object"] == 4)
        assert g.relay.received["tx"] == 3
        stored = [p for p in payloads if g.relay.get(hashlib.sha256(p).digest()) is not None]
        assert stored == payloads[:3]
        await wait_until(lambda: points(g, s) == FLOODING_POINTS)
        assert g.stats["misbehaviour_flooding"] == 1
        await s.close()
    finally:
        await stop_node(g)
