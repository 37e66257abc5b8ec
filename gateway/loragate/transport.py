"""Length-prefixed frames over a TCP stream, with the limits that keep a peer honest.

Wire: a 4-byte big-endian length, then that many bytes (one lorawire frame). A length of
zero or above `max_frame` is a protocol error, found before any buffer is allocated; a
frame must arrive whole within `frame_timeout` once its first byte is there (so a
slow-loris peer cannot hold a connection open a byte at a time), and some frame must
arrive within `idle_timeout`.
"""

from __future__ import annotations

import asyncio
import struct

MAX_TCP_FRAME = 65536
LENGTH = struct.Struct(">I")


class TransportError(Exception):
    """The stream broke the framing rules; `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class FrameStream:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_frame: int = MAX_TCP_FRAME,
        frame_timeout: float = 10.0,
        idle_timeout: float = 90.0,
        write_timeout: float = 10.0,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.max_frame = max_frame
        self.frame_timeout = frame_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def peer_address(self) -> tuple[str, int]:
        peer = self.writer.get_extra_info("peername")
        return (peer[0], peer[1]) if peer else ("?", 0)

    async def read_frame(self) -> bytes:
        """The next frame; TransportError on a framing fault, EOFError on a clean close."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
        try:
            async with asyncio.timeout(self.idle_timeout):
                first = await self.reader.read(1)
        except TimeoutError:
            raise TransportError("idle_timeout", f"no frame for {self.idle_timeout}s") from None
        if not first:
            raise EOFError("peer closed the connection")
        try:
            async with asyncio.timeout(self.frame_timeout):
                rest = await self.reader.readexactly(LENGTH.size - 1)
                (length,) = LENGTH.unpack(first + rest)
                if length == 0 or length > self.max_frame:
                    raise TransportError("bad_length", f"length prefix {length}")
                body = await self.reader.readexactly(length)
        except TimeoutError:
            detail = f"frame not complete in {self.frame_timeout}s"
            raise TransportError("stalled", detail) from None
        except asyncio.IncompleteReadError:
            raise TransportError("truncated", "connection closed inside a frame") from None
        self.bytes_in += LENGTH.size + length
        return body

    async def write_frame(self, frame: bytes) -> None:
        if not 0 < len(frame) <= self.max_frame:
            raise ValueError(f"frame of {len(frame)} bytes is outside 1..{self.max_frame}")
        self.writer.write(LENGTH.pack(len(frame)) + frame)
        try:
            async with asyncio.timeout(self.write_timeout):
                await self.writer.drain()
        except TimeoutError:
            raise TransportError("write_stalled", "peer is not reading") from None
        self.bytes_out += LENGTH.size + len(frame)

    async def close(self) -> None:
        if self.writer.is_closing():
            return
        self.writer.close()
        try:
            async with asyncio.timeout(2.0):
                await self.writer.wait_closed()
        except (TimeoutError, OSError):
            pass
