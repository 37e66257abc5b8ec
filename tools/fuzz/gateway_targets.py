"""Fuzz targets of the gateway (CPython only): TCP frames as read off a socket, the
TOML config file and the node key file. Registered in wire_targets.TARGETS beside the
others, so the driver runs them the same way."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from loragate import config, keys
from loragate.transport import FrameStream, TransportError

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


GATEWAY_ONLY = (
    "gateway.FrameStream.read_frame",
    "gateway.config.load",
    "gateway.keys.load_identity",
)
