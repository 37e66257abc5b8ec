"""A bridge board on real pseudo-terminals, for the mesh wing's tests.

Topology (tools/ptycable.py): board_sim.py opens the slave of pty A; the gateway's
pyserial opens `tmp_path/ttyBRIDGE`, a symlink to the slave of pty B; a relay thread in
this process joins master A <-> master B. Unplug closes pty B (the gateway's fd fails
with EIO as when a USB adapter is pulled); replug makes a new pty B and re-points the
symlink, so the device comes back under the same name. board_sim is a real process
speaking the link protocol. `Harness` runs a SerialLink and a MeshLink (and a shaper if
asked) against it; the `bridge` fixture (tests/gateway/mesh/conftest.py) makes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boardproc import BoardProc

from loragate.mesh.link import MeshLink
from loragate.mesh.serial import SerialLink
from loragate.mesh.shaper import MeshShaper
from tools.ptycable import PtyCable, holders

GATEWAY_ID = bytes.fromhex("0123456789abcdef")
# How long a fresh bridge link may take to say HELLO both ways. Only a guard against a
# link that never comes up: on a loaded machine one failed open already costs the
# SerialLink's backoff (0.2 s doubling), and 5 s was seen to run out.
READY_S = 30.0


async def ready(mesh: MeshLink, cable: PtyCable, timeout: float = READY_S) -> None:
    """Wait until `mesh` is ready; if it is not within `timeout`, fail naming why the
    serial port did not open and who holds the device (an "in use" lock has an owner)."""
    try:
        await mesh.wait_ready(timeout)
    except TimeoutError:
        serial = mesh.serial
        raise TimeoutError(
            f"bridge link not ready within {timeout:g} s: serial {serial.state}, "
            f"{serial.opens} opens, {serial.open_failures} failed, last error "
            f"{serial.last_error!r}; {cable.link_path} is open in {holders(cable.link_path)}"
        ) from None


def make_frame(src: bytes, seq: int, body: bytes = b"\x01") -> bytes:
    """A v1 broadcast frame (TX type); the tag is filler: nothing here verifies it."""
    return bytes((0x10, 0x12, 0x30)) + src + seq.to_bytes(2, "big") + body + b"T" * 8


def node(n: int) -> bytes:
    return bytes((0xA0, 0, 0, 0, 0, 0, 0, n))


class Harness:
    def __init__(self, tmp_path: Path, board_cfg: dict[str, Any] | None = None) -> None:
        self.link_path = tmp_path / "ttyBRIDGE"
        self.board_cfg = board_cfg or {}
        self.cable = PtyCable(self.link_path)
        self.board: BoardProc | None = None
        self.frames: list[tuple[bytes, int, float]] = []
        self.hellos: list[dict[str, Any]] = []
        self.stats: list[dict[str, Any]] = []
        self.states: list[str] = []
        self.frame_ev = asyncio.Event()
        self.serial: SerialLink | None = None
        self.mesh: MeshLink | None = None
        self.shaper: MeshShaper | None = None

    async def start(
        self,
        tx_timeout: float = 3.0,
        shaper: dict[str, Any] | None = None,
        ready_timeout: float = READY_S,
    ) -> None:
        self.cable.start()
        self.board = BoardProc(self.cable.board_path, self.board_cfg)
        await self.board.start()
        self.serial = SerialLink(
            str(self.link_path),
            115200,
            on_packet=lambda p: None,
            on_state=self.states.append,
            backoff_min=0.05,
            backoff_max=0.4,
            watch_interval=0.2,
        )
        self.mesh = MeshLink(
            self.serial,
            node_id=GATEWAY_ID,
            on_frame=self._on_frame,
            on_stats=self.stats.append,
            on_hello=self.hellos.append,
            tx_timeout=tx_timeout,
            hello_interval=0.2,
        )
        await self.mesh.start()
        await ready(self.mesh, self.cable, ready_timeout)
        if shaper is not None:
            self.shaper = MeshShaper(self.mesh, **shaper)
            await self.shaper.start()

    def _on_frame(self, frame: bytes, rssi: int, snr: float) -> None:
        self.frames.append((frame, rssi, snr))
        self.frame_ev.set()

    async def wait_frames(self, n: int, timeout: float = 5.0) -> None:
        async def until() -> None:
            while len(self.frames) < n:
                self.frame_ev.clear()
                await self.frame_ev.wait()

        await asyncio.wait_for(until(), timeout)

    async def stop(self) -> None:
        if self.shaper is not None:
            await self.shaper.close()
        if self.mesh is not None:
            await self.mesh.close()
        if self.board is not None:
            await self.board.stop()
        self.cable.close()


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async def loop() -> None:
        while not cond():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)


async def board_bans(board: BoardProc, expected: set[bytes], timeout: float = 5.0) -> None:
    """Wait until the board's ban table holds exactly `expected` (pushes may repeat)."""

    async def loop() -> None:
        while set((await board.ping())["bans"]) != {n.hex() for n in expected}:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), timeout)
