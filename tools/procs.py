"""Child processes in their own process groups, and how to end them.

* `spawn(argv, cwd=..., env=...)` starts a child in a new session (so its process group
  is its own), stdout and stderr merged into one text pipe, line-buffered.
* `child_options()`: the keyword arguments that do the same for any other way of
  starting a child (`subprocess.Popen`/`run`, `asyncio.create_subprocess_exec`): a new
  session, and on Linux the child dies with us. A child in its own session gets none of
  the signals sent to ours, and atexit never runs when we are SIGKILLed (a timeout, the
  OOM killer, a killed test run), so before exec the child asks the kernel for SIGKILL
  when its parent dies (`prctl(PR_SET_PDEATHSIG)`, prctl(2)), and exits at once if that
  already happened. The kernel ties this to the *thread* that started the child, so it
  is set only for children started from the main thread (`DIES_WITH_PARENT`: whether
  this platform has it at all).
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
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


# Looked up once here: the function runs between fork and exec, where nothing may be
# imported or loaded.
_prctl = _load_prctl()
DIES_WITH_PARENT = _prctl is not None


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child die with this process, or None where it
    cannot (no prctl, or not the main thread: see the module docstring)."""
    prctl = _prctl
    if prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request: too late
            os._exit(1)

    return in_child


def child_options(*, new_session: bool = True) -> dict[str, Any]:
    """Keyword arguments for starting a child that dies with us, in a session of its
    own unless `new_session` is False (then it also gets our terminal's Ctrl-C)."""
    opts: dict[str, Any] = {"start_new_session": new_session}
    fn = die_with_parent()
    if fn is not None:
        opts["preexec_fn"] = fn
    return opts


def spawn(
    argv: list[str],
    *,
    cwd: str | Path,
    env: dict[str, str],
    stdin: int | IO[Any] | None = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """Start `argv` in a new session, dying with us; its output (stdout + stderr) on
    `proc.stdout`."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        **child_options(),
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
