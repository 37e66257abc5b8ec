"""SerialLink, the UART port to a bridge board, on real pseudo-terminals: exclusive open,
framing that loses only corrupted packets, noise counted, a clean close.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from bridgekit import GATEWAY_ID, Harness, make_frame, node, until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loragate.mesh.link import PRIO_TX
from loragate.mesh.serial import DISCONNECTED, SerialLink
from lorawire import link, uart


async def test_port_is_opened_exclusively(bridge: Any) -> None:
    h = await bridge()
    other = SerialLink(
        str(h.link_path), 115200, on_packet=lambda p: None, backoff_min=0.05, backoff_max=0.1
    )
    await other.start()
    try:
        await until(lambda: other.open_failures >= 2)
        assert not other.connected and "exclusively lock" in other.last_error
        assert other.opens == 0
    finally:
        await other.close()
    assert h.mesh is not None and h.mesh.ready


frame_st = st.tuples(
    st.integers(min_value=1, max_value=250),  # source
    st.binary(min_size=1, max_size=60),  # body
    st.binary(max_size=30),  # noise before the frame (may hold zeros)
    st.one_of(  # corruption inside the frame's wire bytes
        st.none(),
        st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(1, 255)),
        st.tuples(st.just("insert"), st.integers(min_value=0), st.integers(0, 255)),
    ),
)


def _wire(items: list[Any], base: int) -> tuple[bytes, list[bytes], list[bytes]]:
    out = bytearray()
    sent, intact = [], []
    for k, (src, body, noise, corrupt) in enumerate(items):
        f = make_frame(node(src), (base + k) % 65536, body)
        sent.append(f)
        packet = bytearray(
            b"\x00" + uart.encode_packet(link.encode(link.FRAME_UP, frame=f, rssi=-80, snr_q4=8))
        )
        if corrupt is None:
            intact.append(f)
        elif corrupt[0] == "flip":
            packet[corrupt[1] % len(packet)] ^= corrupt[2]
        else:
            packet.insert(corrupt[1] % (len(packet) + 1), corrupt[2])
        out += noise + packet
    return bytes(out), sent, intact


def test_random_bytes_on_the_uart_lose_only_the_corrupted_frames(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    h = Harness(tmp_path)
    loop.run_until_complete(h.start())
    marker_seq = [60000]
    try:

        @settings(
            max_examples=40,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(st.lists(frame_st, min_size=1, max_size=8))
        def check(items: list[Any]) -> None:
            marker_seq[0] += 1
            marker = make_frame(node(255), marker_seq[0] % 65536, b"end")
            stream, sent, intact = _wire(items, marker_seq[0] * 10)
            stream += b"\x00" + uart.encode_packet(
                link.encode(link.FRAME_UP, frame=marker, rssi=0, snr_q4=0)
            )

            async def run() -> list[bytes]:
                h.frames.clear()
                assert h.board is not None
                await h.board.cmd(cmd="raw", hex=stream.hex())

                async def until_marker() -> None:
                    while not any(f == marker for f, _, _ in h.frames):
                        h.frame_ev.clear()
                        await h.frame_ev.wait()

                await asyncio.wait_for(until_marker(), 5)
                return [f for f, _, _ in h.frames if f != marker]

            got = loop.run_until_complete(run())
            for f in intact:
                assert f in got
            it = iter(sent)  # what arrived is in order and was sent (nothing invented)
            assert all(any(f == s for s in it) for f in got)

        check()
        assert h.serial is not None and h.serial.garbage_bytes > 0
        assert h.mesh is not None and h.mesh.ready
    finally:
        loop.run_until_complete(h.stop())
        loop.close()


async def test_noise_bytes_are_counted(bridge: Any) -> None:
    h = await bridge({"stats_interval_s": 0})
    serial = h.serial
    before = serial.garbage_bytes
    await h.board.cmd(cmd="raw", hex=(b"\x55\xaa\x13" * 5).hex())
    await h.board.cmd(cmd="up", frames=[make_frame(node(1), 1).hex()])
    await h.wait_frames(1)
    # 15 noise bytes plus the delimiter that ended them (the next packet's lead-in).
    assert serial.garbage_bytes - before == 16
    assert serial.bad_cobs + serial.bad_crc >= 1


async def test_close_leaves_no_tasks_or_fds(tmp_path: Path) -> None:
    def fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    before_tasks = asyncio.all_tasks()
    before_fds = fds()
    h = Harness(tmp_path)
    await h.start(shaper={})
    assert h.shaper is not None and h.shaper.submit(make_frame(GATEWAY_ID, 1), PRIO_TX)
    await until(lambda: h.shaper is not None and h.shaper.stats.sent == 1)
    h.cable.unplug()  # close while reconnecting, too
    await until(lambda: h.states[-1:] == [DISCONNECTED])
    await h.stop()
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == before_tasks
    assert h.serial is not None and h.serial.state == "closed"
    leaked = fds() - before_fds
    # Entries that vanished when listed are fine; open ones are a leak.
    assert not [fd for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")]
