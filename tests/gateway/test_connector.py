"""Connector alone (with a MessageHandler over the real tables, partskit), on real
loopback TCP: the listener and its limits, outbound dials, the handshake into the
table, departures into backoff."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from peerkit import fast_tuning, wait_until

from loragate.bans import BanPolicy, net_target
from loragate.config import GatewayConfig
from loragate.connector import Connector
from loragate.events import EventKind
from loragate.pool import Backoff, ConnectionPolicy
from loragate.session import HandshakeFailed, PeerSession
from loragate.transport import FrameStream
from lorawire.identity import Identity
from lorawire.record import KIND_FULL, encode_record


class Node:
    """Tables, handler and connector of one gateway, nothing else."""

    def __init__(self, tables: Any, host: str, **cfg_kw: Any) -> None:
        tuning = cfg_kw.pop("tuning", None) or fast_tuning(backoff_base_s=30.0)
        self.cfg = GatewayConfig(data_dir=Path("/nonexistent"), listen_host=host, listen_port=0)
        for key, value in cfg_kw.items():
            setattr(self.cfg, key, value)
        self.t = tables((host, 0), tuning=tuning, policy=BanPolicy(threshold=100))
        cfg = self.cfg
        self.policy = ConnectionPolicy(cfg.outbound_target, cfg.inbound_cap, 2, ["full"])
        self.backoff = Backoff(tuning.backoff_base_s, tuning.backoff_max_s, 0.0)
        self.handler = self.t.handler()
        t = self.t
        self.connector = Connector(
            cfg,
            t.own,
            tuning,
            table=t.table,
            scores=t.scores,
            records=t.records,
            book=t.book,
            banman=t.banman,
            policy=self.policy,
            backoff=self.backoff,
            relay=t.relay,
            handler=self.handler,
            telemetry=t.telemetry,
            stats=t.stats,
        )

    async def start(self) -> None:
        await self.connector.start()
        self.t.own.make_record(1)
        await self.connector.serve()


@pytest.fixture
async def nodes(tables) -> AsyncIterator[Any]:  # noqa: ANN001
    made: list[Node] = []

    async def make(host: str, **cfg_kw: Any) -> Node:
        n = Node(tables, host, **cfg_kw)
        await n.start()
        made.append(n)
        return n

    yield make
    for n in made:
        await n.connector.stop()


async def client(node: Node, src: str) -> PeerSession:
    ident = Identity.generate()
    packed = bytes(int(x) for x in src.split("."))
    rec = encode_record({"kind": KIND_FULL, "seq": 1, "endpoints": [(packed, 1)]}, ident)
    r, w = await asyncio.open_connection(*node.t.own.listen_addr, local_addr=(src, 0))
    s = PeerSession(FrameStream(r, w), ident, rec, outbound=True, handshake_timeout_s=3)
    await s.handshake()
    s.start()
    return s


async def test_an_address_in_the_book_is_dialled_and_both_ends_seat_it(nodes) -> None:
    a = await nodes("127.21.0.1", outbound_target=1)
    b = await nodes("127.22.0.1", outbound_target=0)
    assert a.t.book.add(b.t.own.listen_addr, "127.9.9.9")
    a.connector.wake()
    await wait_until(lambda: len(a.t.table) == 1 and len(b.t.table) == 1)
    [pa], [pb] = list(a.t.table), list(b.t.table)
    assert pa.session.node_id == b.t.own.identity.id and pa.slot.outbound
    assert pb.session.node_id == a.t.own.identity.id and not pb.slot.outbound
    assert a.t.book.get(b.t.own.listen_addr).in_tried  # a completed handshake: tried
    assert a.t.relay.peer_count == 1 and b.t.relay.peer_count == 1
    assert EventKind.CONNECTED in a.t.kinds() and EventKind.CONNECTED in b.t.kinds()
    # The dialler asked for peers at once; the answer brought the listener's record.
    await wait_until(lambda: b.t.own.identity.id in a.t.records)


async def test_a_banned_address_is_closed_before_any_handshake(nodes) -> None:
    g = await nodes("127.23.0.1")
    g.t.banman.ban(net_target("127.24.0.1"), duration_s=60, reason="test")
    with pytest.raises(HandshakeFailed):
        await client(g, "127.24.0.1")
    assert g.t.stats["refused_banned"] == 1 and len(g.t.table) == 0
    s = await client(g, "127.25.0.1")  # another address is welcome
    await wait_until(lambda: len(g.t.table) == 1)
    await s.close()
    await wait_until(lambda: len(g.t.table) == 0)


async def test_a_connection_flood_costs_the_address_points(nodes) -> None:
    g = await nodes("127.26.0.1", tuning=fast_tuning(conn_rate=0.1, conn_burst=2))
    writers = []
    for _ in range(6):
        _, w = await asyncio.open_connection(*g.t.own.listen_addr, local_addr=("127.27.0.1", 0))
        writers.append(w)
    target = net_target("127.27.0.1")
    await wait_until(lambda: g.t.banman.is_banned(host="127.27.0.1"))
    ev = g.t.banman.evidence(target)  # 4 x 25 points: the ban threshold of 100
    assert (
        [e.misbehaviour for e in ev] == ["flooding"] * 4 == ["flooding"] * g.t.stats["refused_rate"]
    )
    for w in writers:
        w.close()


async def test_a_short_outbound_session_backs_the_address_off(nodes) -> None:
    a = await nodes("127.28.0.1", outbound_target=1)
    b = await nodes("127.29.0.1", outbound_target=0)
    addr = b.t.own.listen_addr
    a.t.book.add(addr, "127.9.9.9")
    a.connector.wake()
    await wait_until(lambda: len(a.t.table) == 1)
    assert a.backoff.failures(addr) == 0  # the handshake reset it
    [peer] = list(b.t.table)
    b.t.table.drop(peer, "test")  # the far end hangs up at once
    await wait_until(lambda: len(a.t.table) == 0)
    assert a.backoff.failures(addr) == 1 and not a.backoff.ready(addr, 0.0)
    assert a.connector.fill_outbound() == 0  # backing off: not dialled again yet


async def test_a_second_connection_of_a_connected_node_is_closed(nodes) -> None:
    g = await nodes("127.30.0.1")
    first = await client(g, "127.31.0.1")
    await wait_until(lambda: len(g.t.table) == 1)
    again = PeerSession(
        FrameStream(*await asyncio.open_connection(*g.t.own.listen_addr)),
        first.identity,
        first.record,
        outbound=True,
        handshake_timeout_s=3,
    )
    await again.handshake()
    again.start()
    await wait_until(lambda: again.closed)
    assert g.t.stats["duplicates"] == 1 and len(g.t.table) == 1 and not first.closed
    await first.close()
