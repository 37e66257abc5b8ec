"""Fixtures of the mesh wing's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from bridgekit import Harness


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
