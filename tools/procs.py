"""Child processes in their own process groups, and how to end them.

* `spawn(argv, cwd=..., env=...)` starts a child in a new session (so its process group
  is its own), stdout and stderr merged into one text pipe, line-buffered.
* `end_process(proc, steps)` sends each signal of `steps` to the child's group in turn
  and waits the step's seconds, until the child has exited; `sweep=True` then SIGKILLs
  whatever the child left in its group.
* `kill(proc)` SIGKILLs the group, no goodbye (a crash or a power cut).
* `LiveSet()` holds the objects that own running children; at interpreter exit it calls
  `stop()` on every one still in it, so no child is orphaned.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol


def spawn(
    argv: list[str],
    *,
    cwd: str | Path,
    env: dict[str, str],
    stdin: int | IO[Any] | None = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """Start `argv` in a new session; its output (stdout + stderr) on `proc.stdout`."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )


def signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    """`sig` to the child's process group (to the child alone if the group is gone)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def end_process(
    proc: subprocess.Popen[Any] | None,
    steps: Sequence[tuple[int, float]],
    *,
    sweep: bool = False,
) -> int | None:
    """Per (signal, seconds) step: the signal to the group, then wait; the exit status."""
    if proc is None:
        return None
    for sig, wait in steps:
        if proc.poll() is not None:
            break
        signal_group(proc, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
    if sweep:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.poll()


def kill(proc: subprocess.Popen[Any] | None, wait: float = 5.0) -> None:
    """SIGKILL the child's group if the child still runs, and reap it."""
    if proc is not None and proc.poll() is None:
        signal_group(proc, signal.SIGKILL)
        proc.wait(wait)


def send_line(proc: subprocess.Popen[str] | None, text: str) -> bool:
    """`text` and a newline on the child's stdin; False if the child cannot take it."""
    if proc is None or proc.poll() is not None or proc.stdin is None:
        return False
    try:
        proc.stdin.write(text + "\n")
        proc.stdin.flush()
        return True
    except (OSError, ValueError):
        return False


class Stoppable(Protocol):
    def stop(self) -> None: ...


class LiveSet:
    """Owners of running children; each is stopped at interpreter exit if still here."""

    def __init__(self) -> None:
        self._live: set[Stoppable] = set()
        atexit.register(self.stop_all)

    def add(self, owner: Stoppable) -> None:
        self._live.add(owner)

    def discard(self, owner: Stoppable) -> None:
        self._live.discard(owner)

    def stop_all(self) -> None:
        for owner in list(self._live):
            owner.stop()
