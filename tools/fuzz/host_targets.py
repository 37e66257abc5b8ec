"""Fuzz targets that run on CPython only: the gateway's TCP frames as read off a
socket, its TOML config file and node key file, and the deploy tool's check of a
board's config.json (tools/deploy/fwconfig; a board reads what that accepted).
Registered in wire_targets.TARGETS beside the others, so the driver runs them the same
way. `board_configs()`: the configs the firmware targets start a node and a bridge with."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from loragate import config, keys
from loragate.transport import FrameStream, TransportError
from tools.deploy import fwconfig

from . import wire_targets as wt


class _NoWriter:
    """FrameStream's writer, never used while only reading."""

    def get_extra_info(self, name: str) -> None:
        return None


async def _read_all(data: bytes) -> list[bytes]:
    reader = asyncio.StreamReader(limit=1 << 20)
    reader.feed_data(data)
    reader.feed_eof()
    stream = FrameStream(reader, _NoWriter(), frame_timeout=1.0, idle_timeout=1.0)  # type: ignore[arg-type]
    frames = []
    while True:
        try:
            frames.append(await stream.read_frame())
        except EOFError:
            return frames


@wt.target("gateway.FrameStream.read_frame", allowed=(TransportError,), max_len=2400)
def _tcp(data: bytes) -> list[bytes]:
    loop = wt.once("loop", asyncio.new_event_loop)  # one loop for every input: cheaper
    result: list[bytes] = loop.run_until_complete(_read_all(data))
    return result


@wt.target("gateway.config.load", allowed=(config.ConfigError,), max_len=4096)
def _gateway_config(data: bytes) -> str:
    path = Path(wt.STATE["dir"] or ".") / "gateway.toml"
    path.write_bytes(data)
    return repr(config.load(path))


@wt.target("gateway.keys.load_identity", allowed=(keys.KeyFileError,), max_len=64)
def _key_file(data: bytes) -> bytes:
    path = Path(wt.STATE["dir"] or ".") / "node.key"
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return keys.load_identity(path).id


class OneLineConfigError(Exception):
    """fwconfig.ConfigError, after checking it is one line naming the config."""


@wt.target("deploy.fwconfig.load", allowed=(OneLineConfigError,), max_len=4096)
def _fwconfig(data: bytes) -> dict[str, Any]:
    path = Path(wt.STATE["dir"] or ".") / "config.json"
    path.write_bytes(data)
    try:
        return fwconfig.load(str(path))
    except fwconfig.ConfigError as e:
        text = str(e)
        if "\n" in text or not text.startswith("config"):
            raise AssertionError(f"not a one-line config error: {text[:80]!r}") from None
        raise OneLineConfigError() from None


CPYTHON_ONLY = (
    "gateway.FrameStream.read_frame",
    "gateway.config.load",
    "gateway.keys.load_identity",
    "deploy.fwconfig.load",
)

RAW_CONFIG: dict[str, Any] = {
    "board": "heltec-v3",
    "region": "EU868",
    "frequency_hz": 868_100_000,
    "sf": 7,
    "bandwidth_hz": 125000,
    "network_key": wt.NETWORK_KEY.hex(),
    "capacities": {"peers": 8, "bans": 4, "seen": 16, "key_cache": 4, "txqueue": 8},
}


def raw_config(role: str) -> dict[str, Any]:
    return dict(RAW_CONFIG, role=role, node={})


def board_configs() -> dict[str, dict[str, Any]]:
    """role -> the config.json the deploy tool would write for it."""
    return {r: fwconfig.board_config(fwconfig.validate(raw_config(r))) for r in ("node", "bridge")}
