"""`make run` on a real 80x24 terminal: every frame fits, and it shows where the gateway is.

The demo (python -m tools.demo, no --plain) runs on a pseudo-terminal whose window size
is set to 80 columns by 24 lines, as a small terminal would report it (TIOCSWINSZ; no
COLUMNS/LINES in the environment). Each frame starts by clearing the screen; the test
waits for a frame with mesh peers, internet peers and a ban, checks that no frame is
wider than 80 columns or taller than 23 lines plus the newline that ends it (a 24th line
would scroll the first one away), and that the frame names the gateway's data dir, its
metrics URL and the CLI command. Then Ctrl-C (SIGINT to the process group) stops it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import pytest
from demoproc import ctrl_c, kill_group

ROOT = Path(__file__).resolve().parents[2]
CLEAR = "\x1b[2J\x1b[H"
COLUMNS, LINES = 80, 24

pytestmark = [pytest.mark.slow, pytest.mark.upy("pypi")]  # the view, not the interpreter


def complete(frame: str) -> bool:
    return (
        bool(re.search(r"^  n\d +mesh ", frame, re.M))
        and bool(re.search(r"^  peer\d +inet ", frame, re.M))
        and bool(re.search(r"^BANS [1-9]", frame, re.M))
    )


def test_the_demo_fits_an_80x24_terminal() -> None:
    # a data dir a user could have: pytest's tmp_path under xdist (popen-gwN, the test's
    # name) is wider than 80 columns, and the view cuts only a path wider than the terminal
    workdir = Path(tempfile.mkdtemp(prefix="demo-")) / "demo"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "shared"), str(ROOT / "gateway")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.demo", "--duration", "150", "--speed", "10",
         "--workdir", str(workdir)],
        cwd=ROOT, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    out: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other side closed
                return
            if not data:
                return
            out.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def frames() -> list[str]:
        text = b"".join(out).decode(errors="replace").replace("\r\n", "\n")
        return text.split(CLEAR)[1:]

    try:
        deadline = time.monotonic() + 120
        while not any(complete(f) for f in frames()[:-1]):  # the last may be half written
            assert proc.poll() is None, b"".join(out).decode(errors="replace")[-3000:]
            assert time.monotonic() < deadline, (frames() or [""])[-1]
            time.sleep(0.5)
        rc = ctrl_c(proc)
    finally:
        kill_group(proc)
        reader.join(5)
        os.close(master)
        shutil.rmtree(workdir.parent, ignore_errors=True)
    shown = frames()
    assert rc == 0 and len(shown) >= 2
    for frame in shown[:-1]:  # the last one is followed by the stop messages
        lines = frame.removesuffix("\n").split("\n")
        assert len(lines) <= LINES - 1, frame
        assert max(len(line) for line in lines) <= COLUMNS, max(lines, key=len)
        assert "\x1b" not in frame  # no escape sequence beside the clear
    full = next(f for f in shown if complete(f))
    gateway = workdir / "gateway"
    # whole, on the label's line or (a long path) on a line of its own
    lines = full.splitlines()
    assert f"  data dir {gateway}" in lines or f"    {gateway}" in lines, full
    assert re.search(r"^  metrics +http://127\.0\.0\.1:\d+/metrics$", full, re.M), full
    cli = re.search(r"^  cli +(\S*loragate status --data-dir)( \\\n +| )(\S+)$", full, re.M)
    assert cli is not None and cli[3] == str(gateway), full
    assert (
        "AIR [" in full and "RELAYED" in full and full.rstrip().endswith("Ctrl-C stops everything.")
    )
