"""Fixtures of the mesh wing's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from bridgekit import Harness
from meshkit import NETKEY
from peerkit import start_node, stop_node

from loragate.mesh.link import MeshLink
from loragate.mesh.serial import SerialLink
from loragate.mesh.side import MeshSide


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    """`await bridge(board_cfg, **start_kw)`: a board process on a pty cable with a
    SerialLink and a MeshLink on the gateway's end, ready; all stopped afterwards."""
    made: list[Harness] = []

    async def make(board_cfg: dict[str, Any] | None = None, **kw: Any) -> Harness:
        h = Harness(tmp_path, board_cfg)
        made.append(h)
        await h.start(**kw)
        return h

    yield make
    for h in made:
        await h.stop()


@pytest.fixture
async def wing(tmp_path: Path) -> AsyncIterator[MeshSide]:
    """A started mesh wing on a started gateway (real SQLite, loopback TCP) whose bridge
    never connects: frames are handed to its receiver directly. Closed afterwards."""
    gw = await start_node(
        tmp_path, "127.62.0.1", name="gw", outbound_target=0, network_key=NETKEY.hex()
    )
    link = MeshLink(SerialLink(str(tmp_path / "absent"), 115200), node_id=gw.identity.id)
    side = MeshSide(gw.cfg, gw, link)
    await side.start()
    yield side
    await side.close()
    await stop_node(gw)
