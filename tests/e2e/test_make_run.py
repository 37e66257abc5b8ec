"""`make run` (python -m tools.demo): the live view shows the network, Ctrl-C stops it all.

The demo runs as a subprocess in its own session with `--plain` (snapshots on stdout, as
when the output is not a terminal). Once a snapshot shows mesh peers, internet peers and
a ban with its reason, the test sends SIGINT to the demo's process group -- what Ctrl-C
in a terminal does -- and expects exit status 0 and no process left that was started
for this run (any process whose command line or working directory is inside the run's
work directory), found by scanning /proc.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from demoproc import ctrl_c, kill_group

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.upy]

SHOW_TIMEOUT_S = 180.0  # the demo shares 2 cores with the rest of the suite


def processes_in(workdir: Path) -> list[tuple[int, str]]:
    """(pid, command line) of live processes whose cmdline or cwd mentions workdir."""
    found = []
    needle = str(workdir)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(") ", 1)[-1][:1]
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                cwd = ""
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if state in ("Z", "X"):
            continue
        if needle in cmd or cwd.startswith(needle):
            found.append((int(entry), cmd))
    return found


def last_snapshot(text: str) -> str:
    parts = text.split("----- ")
    return parts[-1] if len(parts) > 1 else ""


def shows_everything(snapshot: str) -> bool:
    mesh_rows = re.findall(r"^\s+mesh\s+n\d\s+[0-9a-f]{16}\s+mesh via bridge", snapshot, re.M)
    inet_rows = re.findall(
        r"^\s+internet\s+peer\d\s+[0-9a-f]{16}\s+127\.1[12]\.0\.1", snapshot, re.M
    )
    bans = re.findall(r"^\s+(node:[0-9a-f]{16}|127\.13\.0\.1).*: \S*malformed", snapshot, re.M)
    return len(mesh_rows) >= 2 and len(inet_rows) >= 1 and len(bans) >= 1


def test_makefile_run_rule_starts_the_demo() -> None:
    # Under `make test` the outer make's MAKEFLAGS/MAKELEVEL would add directory lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", "run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    ).stdout
    assert out.strip().splitlines()[-1].endswith("python -m tools.demo")


def test_demo_shows_the_network_and_ctrl_c_stops_every_process() -> None:
    # a data dir as a user has it: pytest's tmp_path under xdist (popen-gwN and the test's
    # name) is wider than the full layout's line, which then gives way to the compact one
    workdir = Path(tempfile.mkdtemp(prefix="demo-")) / "demo"
    # the full layout: pytest-xdist's workers set COLUMNS=80 LINES=24, which gives the
    # compact one (tests/e2e/test_demo_terminal.py checks that on a real 80x24 pty)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "shared"), str(ROOT / "gateway")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.demo", "--duration", "120", "--plain"]
        + ["--workdir", str(workdir), "--speed", "10"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    chunks: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            chunks.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + SHOW_TIMEOUT_S
        while not shows_everything(last_snapshot("".join(chunks))):
            assert proc.poll() is None, "the demo exited early:\n" + "".join(chunks)[-3000:]
            assert time.monotonic() < deadline, "no full view:\n" + "".join(chunks)[-3000:]
            time.sleep(0.5)
        snap = last_snapshot("".join(chunks))
        assert "mesh discovery:" in "".join(chunks)
        assert "AIRTIME of the bridge radio" in snap and "RELAYED" in snap
        assert "Ctrl-C stops everything" in snap
        running = processes_in(workdir)
        # medium + 8 nodes + bridge + gateway + 3 peers + bad node (the scan sees them)
        assert len(running) >= 15, running
        rc = ctrl_c(proc)  # Ctrl-C: the terminal signals the whole group
    finally:
        kill_group(proc)
    reader.join(5)
    text = "".join(chunks)
    assert rc == 0, text[-3000:]
    assert "stopped." in text
    assert "Traceback" not in text
    left = processes_in(workdir)
    assert not left, f"processes survived: {left}"
    shutil.rmtree(workdir.parent, ignore_errors=True)
