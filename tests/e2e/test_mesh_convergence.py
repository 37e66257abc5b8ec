"""A 10-node multi-hop mesh of real unix-port nodes on the meshsim medium converges, and the
launcher leaves no process behind (API and CLI, SIGINT included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.meshsim.launcher import Mesh, hops_diameter

ROOT = Path(__file__).resolve().parents[2]
# simulated seconds allowed for a 10-node line to converge (observed: about 100-350)
CONVERGENCE_BOUND_S = 1200.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes only once reaped; Popen.wait reaps ours
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _procs_under(directory: Path) -> list[int]:
    """Pids whose working directory lies inside `directory` (the node processes)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(directory)):
            out.append(int(entry.name))
    return out


@pytest.mark.slow
@pytest.mark.upy
def test_ten_node_line_converges(tmp_path: Path) -> None:
    speed = 20.0
    mesh = Mesh(10, "line", tmp_path, speed=speed, seed=1)
    diameter = hops_diameter(mesh.topology, mesh.sf)
    assert diameter == 9  # multi-hop: the ends are nine links apart, hop limit is 3
    with mesh:
        ok = mesh.wait_until(lambda m: m.converged(), timeout=55)
        conv = mesh.convergence_s()
        air = mesh.airtime()
        print(f"\n10-node line (diameter {diameter}, speed {speed}): converged={ok}")
        print(f"convergence: {conv} simulated s")
        for name, ms in air.items():
            print(f"  {name}: airtime {ms} ms")
        assert ok, f"knowledge {mesh.knowledge()}/90"
        assert conv is not None and 0 < conv < CONVERGENCE_BOUND_S
        for node in mesh.nodes:
            s = node.status
            assert s is not None
            a = s["airtime"]
            assert a["used_ms"] <= a["budget_ms"] and a["bg_used_ms"] <= a["bg_budget_ms"]
            assert s["counters"]["points"] == 0  # honest nodes never blame each other
        pids = mesh.pids()
    assert not [p for p in pids if _alive(p)]


@pytest.mark.slow
@pytest.mark.upy
def test_launcher_stop_leaves_no_process(tmp_path: Path) -> None:
    mesh = Mesh(3, "grid", tmp_path, speed=10.0)
    mesh.start()
    pids = mesh.pids()
    assert len(pids) == 4 and all(_alive(p) for p in pids)
    # a node that ignores `quit` (stopped with SIGSTOP) still goes: SIGINT, then SIGKILL
    os.kill(mesh.nodes[1].proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
    mesh.stop(timeout=2.0)
    assert not [p for p in pids if _alive(p)]
    assert _procs_under(tmp_path) == []
    mesh.stop()  # idempotent


@pytest.mark.slow
@pytest.mark.upy
def test_launcher_cli_sigint_stops_everything(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "tools.meshsim.launcher", "--nodes", "3", "--topology", "line"]
    cmd += ["--speed", "10", "--timeout", "60", "--workdir", str(tmp_path)]
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'shared'}")
    p = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while len(_procs_under(tmp_path)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_procs_under(tmp_path)) == 3
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode in (0, 130), err
    assert "Traceback" not in err
    assert _procs_under(tmp_path) == []
