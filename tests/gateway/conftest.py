"""Fixtures of the gateway's tests (this folder and tests/gateway/mesh).

Helpers that are not fixtures live in modules beside this file (peerkit: gateways on
loopback; partskit: the peer manager's tables without a manager; viewkit: a
running-gateway view; boardproc, bridgekit: a bridge board on a pseudo-terminal);
pytest puts this folder on the import path for the tests under it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from partskit import Tables, build_tables
from peerkit import start_node, stop_node
from viewkit import LiveView

from loragate.manager import PeerManager
from loragate.session import PeerSession
from loragate.transport import FrameStream
from lorawire.identity import Identity
from lorawire.record import KIND_FULL, encode_record


@pytest.fixture
async def live_view() -> AsyncIterator[Callable[..., Awaitable[LiveView]]]:
    """`await live_view(db_path, cls=LiveView)`: a LiveView on that database, closed
    after the test."""
    made: list[LiveView] = []

    async def make(db: Path, cls: type[LiveView] = LiveView) -> LiveView:
        view = await cls.open(db)
        made.append(view)
        return view

    yield make
    for view in made:
        await view.close()


@pytest.fixture
async def gateways(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[PeerManager]]]:
    """`await gateways(host, **kw)`: a started PeerManager on `host` (peerkit.start_node
    arguments), stopped after the test whatever happened."""
    made: list[PeerManager] = []

    async def make(host: str, **kw: Any) -> PeerManager:
        m = await start_node(tmp_path, host, **kw)
        made.append(m)
        return m

    yield make
    for m in reversed(made):
        await stop_node(m)


SessionPair = tuple[PeerSession, PeerSession]


def _record(ident: Identity, host: str, port: int) -> bytes:
    packed = bytes(int(x) for x in host.split("."))
    return encode_record({"kind": KIND_FULL, "seq": 1, "endpoints": [(packed, port)]}, ident)


@pytest.fixture
async def session_pair() -> AsyncIterator[Callable[..., Awaitable[SessionPair]]]:
    """`await session_pair(peer_host, **hooks)`: the gateway's end and the peer's end of
    one established, started session over loopback TCP. Ours dials the peer, which
    listens on `peer_host` (its record names that endpoint), so ours.host is peer_host
    and ours.node_id the peer's id. `hooks` (on_message, on_misbehaviour, on_closed) go
    on ours, `theirs` on the peer's end. Both are closed after the test."""
    servers: list[asyncio.Server] = []
    sessions: list[PeerSession] = []

    async def make(
        peer_host: str = "127.0.0.1", theirs: dict[str, Any] | None = None, **hooks: Any
    ) -> SessionPair:
        accepted: asyncio.Future[PeerSession] = asyncio.get_running_loop().create_future()
        peer_id = Identity.generate()

        async def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            port = w.get_extra_info("sockname")[1]
            record = _record(peer_id, peer_host, port)
            s = PeerSession(FrameStream(r, w), peer_id, record, outbound=False, **(theirs or {}))
            await s.handshake()
            accepted.set_result(s)

        server = await asyncio.start_server(accept, peer_host, 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection(peer_host, port)
        ours_id = Identity.generate()
        ours = PeerSession(
            FrameStream(r, w), ours_id, _record(ours_id, "127.0.0.1", 1), outbound=True, **hooks
        )
        await ours.handshake()
        other = await asyncio.wait_for(accepted, 5)
        sessions.extend((ours, other))
        ours.start()
        other.start()
        return ours, other

    yield make
    for s in sessions:
        await s.close()
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
def tables() -> Callable[..., Tables]:
    """`tables(listen=..., tuning=..., policy=..., validator=...)`: the peer manager's
    shared tables (partskit.Tables), built without a PeerManager."""
    return build_tables
