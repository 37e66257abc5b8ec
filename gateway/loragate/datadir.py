"""The data dir's lock: who may write the gateway's database outside a running gateway.

`<data dir>/gateway.lock` is locked with flock(2), exclusively, by

* a gateway (`loragate run`), from before it opens its database, through reading its
  bans at start, until after it has closed the database at exit: the whole time it keeps
  its own copy of the ban tables;
* the CLI, only for the moment of an offline command (`ban`, `unban`, `clearbanned` and
  the reads) against a gateway that does not answer on its control socket.

So an acknowledged offline ban either comes before a gateway reads its bans (which then
restores it) or finds the lock held, and then waits for the gateway's control socket
(`cli._ask`): it never falls into the window between a gateway's read of its bans and
the opening of its control socket, nor into the window at exit between the socket's
close and the last write. This is Bitcoin Core's `.lock` in its data dir
(`LockDirectory`), taken before anything else is opened.

The kernel drops the lock when its holder exits, however it exits (`kill -9` too): a
crashed gateway never leaves the data dir locked. The holder writes its pid into the
file, for messages only (the lock, not the file's content, is what counts). flock locks
belong to an open file: two `DataDirLock`s in one process exclude each other too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

LOCK_NAME = "gateway.lock"


class DataDirLock:
    """The flock on `<data_dir>/gateway.lock` (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; False (at once) if someone does. Creates the
        file (0600) but not the data dir; OSError if the file cannot be opened."""
        if self._fd >= 0:
            raise RuntimeError(f"{self.path} is already locked by this object")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        self._fd = fd
        with contextlib.suppress(OSError):  # the pid is for messages only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return True

    def release(self) -> None:
        """Let go of the lock (the file stays: removing it would race a new holder)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)  # closing the only descriptor of the open file drops the flock

    def holder(self) -> int | None:
        """The pid the holder wrote into the file (None: unreadable or none yet)."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def describe_holder(self) -> str:
        pid = self.holder()
        return "another process" if pid is None else f"process {pid}"

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
