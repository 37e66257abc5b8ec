"""A serial cable made of two real pseudo-terminals, for tests of the gateway's serial side.

    board (board_sim / firmware on the unix port)          gateway (pyserial)
        opens  board_path = slave of pty A                     opens  link_path (symlink)
                         |                                               |  -> slave of pty B
                  master A  <==== relay in the test's event loop ====>  master B

Why two ptys: both ends must open a *path*, as on real hardware (the board its UART, the
gateway /dev/ttyUSB0), and a pty master has no path. Why a symlink: replugging a USB
adapter brings the device back under the same name, while a new pty gets a new
/dev/pts/N; the gateway opens `link_path`, which is re-pointed on replug.

* `unplug()` closes pty B (both ends): the gateway's fd reports EIO/hang-up, as when a USB
  serial adapter is pulled, and `link_path` dangles (points at a name that does not exist).
* `replug()` creates a new pty B and re-points `link_path` atomically.
* `inject(data)` puts bytes on the wire towards the gateway (line noise).
The cable keeps the slave fds open itself so the masters never read EIO while an end is
closed (e.g. while a board process restarts). Both slaves are put in raw mode at creation,
before anyone opens them, so no byte is echoed or translated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path

BUF_MAX = 1 << 20


class _Pty:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyCable:
    def __init__(self, link_path: Path) -> None:
        self.link_path = Path(link_path)
        self._a = _Pty()
        self._b: _Pty | None = None
        self.board_path = self._a.path
        self._to_a = bytearray()
        self._to_b = bytearray()
        self.bytes_to_gateway = 0
        self.bytes_to_board = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._a.master, self._read_a)
        self.replug()

    def _point(self, target: str) -> None:
        tmp = self.link_path.with_name(self.link_path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, self.link_path)

    def replug(self) -> None:
        assert self._loop is not None
        if self._b is not None:
            self.unplug()
        self._b = _Pty()
        self._to_b.clear()
        self._point(self._b.path)
        self._loop.add_reader(self._b.master, self._read_b)

    def unplug(self) -> None:
        assert self._loop is not None
        b, self._b = self._b, None
        if b is None:
            return
        self._loop.remove_reader(b.master)
        self._loop.remove_writer(b.master)
        # Point the name at nothing rather than at the old /dev/pts/N: that number may be
        # reused at once by another pty (another test), which the gateway must not open.
        self._point(str(self.link_path) + ".unplugged")
        b.close()
        self._to_b.clear()

    @property
    def plugged(self) -> bool:
        return self._b is not None

    def inject(self, data: bytes) -> None:
        """Bytes onto the wire towards the gateway (after what the board sent so far)."""
        self._send_b(data)

    def _read_a(self) -> None:
        try:
            data = os.read(self._a.master, 65536)
        except (BlockingIOError, OSError):
            return
        if self._b is not None:  # unplugged: the bytes fall on the floor
            self.bytes_to_gateway += len(data)
            self._send_b(data)

    def _read_b(self) -> None:
        b = self._b
        if b is None:
            return
        try:
            data = os.read(b.master, 65536)
        except (BlockingIOError, OSError):
            return
        self.bytes_to_board += len(data)
        self._to_a += data[: BUF_MAX - len(self._to_a)]
        self._flush(self._a.master, self._to_a)

    def _send_b(self, data: bytes) -> None:
        b = self._b
        if b is None:
            return
        self._to_b += data[: BUF_MAX - len(self._to_b)]
        self._flush(b.master, self._to_b)

    def _flush(self, fd: int, buf: bytearray) -> None:
        assert self._loop is not None
        try:
            n = os.write(fd, buf) if buf else 0
        except BlockingIOError:
            n = 0
        except OSError:
            buf.clear()
            n = 0
        del buf[:n]
        if buf:
            self._loop.add_writer(fd, self._flush, fd, buf)
        else:
            self._loop.remove_writer(fd)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._a.master)
            self._loop.remove_writer(self._a.master)
            self.unplug()
        self._a.close()
        with contextlib.suppress(FileNotFoundError):
            self.link_path.unlink()
