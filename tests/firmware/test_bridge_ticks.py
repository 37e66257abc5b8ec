"""Bridge deadlines across a ticks_ms wrap, on the MicroPython unix port.

A deadline computed as `ticks_ms() + REOPEN_MS` lies outside the ticks range when taken
just before the wrap; MicroPython's ticks_diff then answers garbage (about -7e13 on the
64-bit unix port), so the UART would never be reopened. ticks_add keeps it in range.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from nodekit import config

from upy import run_upy

pytestmark = pytest.mark.upy


def test_uart_reopen_deadline_survives_a_ticks_wrap(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        cfg = config({"state_dir": str(tmp_path), "stdin": False}, role="bridge")
        code = f"""
import time
from loranode import bridge as bmod
from loranode.uart_port import UartPort
from lorawire.identity import Identity

cfg = {cfg!r}
port = UartPort(path={os.ttyname(slave)!r})
b = bmod.Bridge(cfg, Identity.generate(), None, port)
period = time.ticks_add(0, -1) + 1
now = [time.ticks_add(0, -5)]  # 5 ms before the wrap
bmod.ticks_ms = lambda: now[0]
b._uart_failed()  # closes the port, sets the reopen deadline
print(0 <= b._reopen_at < period)
now[0] = time.ticks_add(now[0], bmod.REOPEN_MS - 1)
print(time.ticks_diff(now[0], b._reopen_at))
now[0] = time.ticks_add(now[0], 1)
print(time.ticks_diff(now[0], b._reopen_at))
try:
    port.read_available()
    print("read on a closed port returned")
except OSError as e:
    print("OSError", e.errno)
"""
        r = run_upy(code, timeout=60)
        assert r.stdout.split() == ["True", "-1", "0", "OSError", "9"]
    finally:
        os.close(master)
        os.close(slave)
