"""A killed test run leaves no process behind (issue 15, finding 6).

Children run in sessions of their own (so a signal to their group reaches everything
they started), which also means nothing reaches them when the process that started
them dies without cleaning up: SIGKILL, a timeout's os._exit, the OOM killer. Before
the fix, killing a pytest run mid-scenario left the meshsim medium and every unix-port
node running. Now each child asks the kernel for SIGKILL when its parent dies
(PR_SET_PDEATHSIG, tools/procs.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tools import procs

ROOT = Path(__file__).resolve().parents[2]

INNER = """
import os
from pathlib import Path

from tools.meshsim.launcher import Mesh


def test_mid_scenario(tmp_path):
    mesh = Mesh(3, "line", tmp_path / "mesh", speed=10.0).start()
    Path(os.environ["PIDFILE"]).write_text(" ".join(map(str, mesh.pids())))
    # Mid-scenario until the outer test kills this run (the mesh never "converges"
    # to an impossible state; the deadline only bounds a run nobody kills).
    mesh.wait_until(lambda m: False, timeout=300)
"""


def alive(pid: int) -> bool:
    """Running, stopped or sleeping; False once gone or a zombie (dead, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(pred, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.skipif(not procs.DIES_WITH_PARENT, reason="needs Linux prctl(PR_SET_PDEATHSIG)")
def test_sigkill_of_a_pytest_run_mid_scenario_leaves_no_process(tmp_path: Path) -> None:
    inner = tmp_path / "test_inner.py"
    inner.write_text(textwrap.dedent(INNER))
    pidfile = tmp_path / "pids"
    env = dict(os.environ, PIDFILE=str(pidfile), PYTHONPATH=f"{ROOT}:{ROOT / 'shared'}")
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    argv += ["-o", "addopts=", "--rootdir", str(tmp_path), str(inner)]
    run = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        wait_for(lambda: pidfile.exists() or run.poll() is not None, 120, "no mesh started")
        assert run.poll() is None, run.communicate()[0]
        pids = [int(p) for p in pidfile.read_text().split()]
        assert len(pids) == 4 and all(alive(p) for p in pids)  # medium + 3 nodes
        run.send_signal(signal.SIGKILL)  # the run alone, as a timeout or the OOM killer would
        run.wait(10)
        try:
            wait_for(lambda: not any(alive(p) for p in pids), 10, "children still running")
        except AssertionError:
            left = [p for p in pids if alive(p)]
            raise AssertionError(f"{len(left)} of {len(pids)} children outlived the run") from None
    finally:
        for pid in pids:  # only what this test's run started, by pid
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if run.poll() is None:
            run.kill()
        run.communicate()
