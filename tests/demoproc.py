"""Stopping a demo started in its own session, as a terminal would (tests/e2e)."""

from __future__ import annotations

import os
import signal
import subprocess


def ctrl_c(proc: subprocess.Popen, timeout_s: float = 60) -> int:
    """SIGINT to the whole process group -- what Ctrl-C in a terminal does; its status."""
    os.killpg(proc.pid, signal.SIGINT)
    return proc.wait(timeout_s)


def kill_group(proc: subprocess.Popen) -> None:
    """What a test leaves behind when it failed before `ctrl_c`: nothing."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
