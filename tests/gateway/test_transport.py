"""TCP framing against real sockets on loopback: limits, stalls and clean closes."""

from __future__ import annotations

import asyncio
import struct

import pytest

from loragate.transport import FrameStream, TransportError


async def _pair(**limits: float) -> tuple[FrameStream, FrameStream, asyncio.Server]:
    """A server-side FrameStream with `limits`, and a plain client-side one."""
    accepted: asyncio.Future[FrameStream] = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(FrameStream(reader, writer, **limits))  # type: ignore[arg-type]

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return await accepted, FrameStream(reader, writer), server


async def _close(*items: FrameStream | asyncio.Server) -> None:
    for item in items:
        if isinstance(item, FrameStream):
            await item.close()
        else:
            item.close()
            await item.wait_closed()


async def test_frames_round_trip_over_tcp() -> None:
    stream, client, server = await _pair()
    payloads = [b"x", b"\x00" * 1000, bytes(range(256)) * 10]
    for payload in payloads:
        await client.write_frame(payload)
    assert [await stream.read_frame() for _ in payloads] == payloads
    assert stream.bytes_in == client.bytes_out == sum(4 + len(p) for p in payloads)
    await client.close()
    with pytest.raises(EOFError):
        await stream.read_frame()
    await _close(stream, server)


@pytest.mark.parametrize("length", [0, 65537, 0xFFFFFFFF])
async def test_absurd_length_prefix_is_refused(length: int) -> None:
    stream, client, server = await _pair()
    client.writer.write(struct.pack(">I", length))
    with pytest.raises(TransportError) as err:
        await stream.read_frame()
    assert err.value.reason == "bad_length"
    await _close(stream, client, server)


async def test_slow_loris_is_cut_off() -> None:
    stream, client, server = await _pair(frame_timeout=0.3)
    client.writer.write(struct.pack(">I", 100) + b"abc")  # then nothing more
    with pytest.raises(TransportError) as err:
        await stream.read_frame()
    assert err.value.reason == "stalled"
    await _close(stream, client, server)


async def test_idle_peer_times_out() -> None:
    stream, client, server = await _pair(idle_timeout=0.2)
    with pytest.raises(TransportError) as err:
        await stream.read_frame()
    assert err.value.reason == "idle_timeout"
    await _close(stream, client, server)


async def test_close_inside_a_frame_is_truncation() -> None:
    stream, client, server = await _pair()
    client.writer.write(struct.pack(">I", 10) + b"12345")
    await client.close()
    with pytest.raises(TransportError) as err:
        await stream.read_frame()
    assert err.value.reason == "truncated"
    await _close(stream, server)


async def test_empty_or_oversize_frames_are_not_written() -> None:
    stream, client, server = await _pair()
    for bad in (b"", bytes(65537)):
        with pytest.raises(ValueError):
            await client.write_frame(bad)
    assert client.bytes_out == 0
    await _close(stream, client, server)
