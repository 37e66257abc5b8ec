"""The CPython stand-in board (board_sim.py) as a subprocess, for the gateway's tests."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lorawire import compose
from lorawire import frame as wframe
from tools import procs

BOARD_SIM = str(Path(__file__).resolve().parent / "board_sim.py")
SHARED = str(Path(__file__).resolve().parents[2] / "shared")  # lorawire, for the subprocess


class BoardProc:
    """board_sim.py as a subprocess: JSON commands in on stdin, JSON events out on stdout."""

    def __init__(self, path: str, cfg: dict[str, Any] | None = None) -> None:
        self.path = path
        self.cfg = cfg or {}
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ping = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            BOARD_SIM,
            self.path,
            json.dumps(self.cfg),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([SHARED, os.environ.get("PYTHONPATH", "")]),
            },
            **procs.child_options(new_session=False),
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_event(lambda e: e["ev"] == "ready")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.events.append(json.loads(line))
            self._changed.set()

    async def cmd(self, **kw: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(kw).encode() + b"\n")
        await self.proc.stdin.drain()

    async def wait_event(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 8.0, start: int = 0
    ) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            i = start
            while True:
                while i < len(self.events):
                    if pred(self.events[i]):
                        return self.events[i]
                    i += 1
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    wait = wait_event

    async def up(self, frames: list[bytes], rssi: int = -90, snr_q4: int = 24) -> None:
        await self.cmd(cmd="up", frames=[f.hex() for f in frames], rssi=rssi, snr_q4=snr_q4)

    def sent(self) -> list[tuple[wframe.Frame, Any, bytes]]:
        """Frames the board transmitted for the gateway: (header, decoded body, bytes)."""
        out = []
        for e in self.events:
            if e["ev"] == "tx":
                data = bytes.fromhex(e["frame"])
                f, value = compose.parse(data)
                out.append((f, value, data))
        return out

    async def ping(self) -> dict[str, Any]:
        self._ping += 1
        n = self._ping
        await self.cmd(cmd="ping", id=n)
        return await self.wait_event(lambda e: e["ev"] == "pong" and e["id"] == n)

    def of(self, ev: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["ev"] == ev]

    async def stop(self, kill: bool = False) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            if kill:
                proc.kill()
            else:
                try:
                    await self.cmd(cmd="quit")
                except (BrokenPipeError, ConnectionResetError):
                    pass
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        self.proc = None
