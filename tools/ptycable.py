"""A serial cable made of two real pseudo-terminals, joined by a relay thread.

    board (bridge firmware / board_sim)                    gateway (pyserial)
        opens  board_path = slave of pty A                     opens  link_path (symlink)
                         |                                               |  -> slave of pty B
                  master A  <========== relay thread ==========>  master B

Why two ptys: both ends must open a *path*, as on real hardware (the board its UART, the
gateway /dev/ttyUSB0), and a pty master has no path. Why a symlink: replugging a USB
adapter brings the device back under the same name, while a new pty gets a new
/dev/pts/N; the gateway opens `link_path`, which is re-pointed on replug.

* `start()` plugs pty B in and starts the relay thread (it needs no event loop, so the
  demo's synchronous `Network` and asyncio tests use the same cable).
* `unplug()` closes pty B (both ends): the gateway's fd reports EIO/hang-up, as when a USB
  serial adapter is pulled, and `link_path` dangles (it points at a name that does not
  exist, never at the old /dev/pts/N, which another pty may reuse at once).
* `replug()` creates a new pty B and re-points `link_path` atomically.
* `inject(data)` puts bytes on the wire towards the gateway (line noise).

The cable keeps the slave fds open itself, so a master never reads EIO while an end is
closed (e.g. while a board process restarts). Both slaves are put in raw mode at creation,
before anyone opens them, so no byte is echoed or translated. Buffers are bounded
(`buf_max` bytes per direction; the excess is dropped, as a UART overrun would).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from pathlib import Path

BUF_MAX = 1 << 20
READ_SIZE = 65536


class RawPty:
    """A pseudo-terminal: slave in raw mode, master non-blocking, the slave's path."""

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
    """Two ptys joined by a relay thread (see the module docstring)."""

    def __init__(self, link_path: Path, buf_max: int = BUF_MAX) -> None:
        self.link_path = Path(link_path)
        self.buf_max = buf_max
        self._a = RawPty()
        self.board_path = self._a.path
        self._b: RawPty | None = None
        self._lock = threading.Lock()
        self._to_a = bytearray()
        self._to_b = bytearray()
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bytes_to_gateway = 0
        self.bytes_to_board = 0

    def start(self) -> PtyCable:
        """Plug the gateway's side in and start relaying."""
        self.replug()
        self._thread = threading.Thread(target=self._run, name="pty-cable", daemon=True)
        self._thread.start()
        return self

    def _point(self, target: str) -> None:
        tmp = self.link_path.with_name(self.link_path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, self.link_path)

    def _kick(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def unplug(self) -> None:
        """Close the gateway's side: its fd reports hang-up, the symlink dangles."""
        with self._lock:
            b, self._b = self._b, None
            self._to_b.clear()
            self._point(str(self.link_path) + ".unplugged")
        if b is not None:
            b.close()
        self._kick()

    def replug(self) -> None:
        """A new pty for the gateway's side, under the same symlink."""
        with self._lock:
            old, self._b = self._b, RawPty()
            self._to_b.clear()
            self._point(self._b.path)
        if old is not None:
            old.close()
        self._kick()

    @property
    def plugged(self) -> bool:
        return self._b is not None

    def inject(self, data: bytes) -> None:
        """Bytes onto the wire towards the gateway (after what the board sent so far)."""
        with self._lock:
            if self._b is not None:
                self._to_b += data[: self.buf_max - len(self._to_b)]
        self._kick()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                a, b = self._a.master, (self._b.master if self._b is not None else None)
                rfds = [self._wake_r, a] + ([b] if b is not None else [])
                wfds = ([a] if self._to_a else []) + ([b] if b is not None and self._to_b else [])
            try:
                r, w, _ = select.select(rfds, wfds, [], 0.5)
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            with self._lock:
                if self._wake_r in r:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                b_now = self._b.master if self._b is not None else None
                if a in r:
                    data = _read(a)
                    if b_now is not None and data:  # unplugged: the bytes fall on the floor
                        self.bytes_to_gateway += len(data)
                        self._to_b += data[: self.buf_max - len(self._to_b)]
                if b is not None and b == b_now and b in r:
                    data = _read(b)
                    if data:
                        self.bytes_to_board += len(data)
                        self._to_a += data[: self.buf_max - len(self._to_a)]
                _flush(a, self._to_a)
                if b_now is not None:
                    _flush(b_now, self._to_b)

    def close(self) -> None:
        self._stop.set()
        self._kick()
        if self._thread is not None:
            self._thread.join(2)
        with self._lock:
            if self._b is not None:
                self._b.close()
                self._b = None
            self._a.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            self.link_path.unlink()


def holders(path: str | Path) -> list[str]:
    """Who has the device behind `path` open, as "pid (command)": for a failure message
    when a port cannot be opened ("in use by another program"). Reads /proc (Linux);
    processes we may not inspect are skipped."""
    try:
        target = os.path.realpath(path, strict=True)
    except OSError:
        return []
    found = []
    for pid in (d for d in os.listdir("/proc") if d.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            hit = any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in fds)
            if hit:
                with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
                    found.append(f"{pid} ({f.read().strip()})")
        except OSError:
            continue
    return found


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, READ_SIZE)
    except (BlockingIOError, OSError):
        return b""


def _flush(fd: int, buf: bytearray) -> None:
    if not buf:
        return
    try:
        n = os.write(fd, buf)
    except BlockingIOError:
        return
    except OSError:
        buf.clear()
        return
    del buf[:n]
