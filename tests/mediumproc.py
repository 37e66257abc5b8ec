"""The meshsim medium as a subprocess on loopback, for tests that talk to it from
CPython (SimRadio) and from unix-port processes at once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tools import procs
from tools.meshsim import medium as medium_mod

ROOT = Path(__file__).resolve().parent.parent


class MediumProc:
    """`python -m tools.meshsim` on an ephemeral port: `with MediumProc(topo, dir) as m`."""

    def __init__(self, topology: dict[str, Any], workdir: Path, speed: float = 1.0) -> None:
        self.path = workdir / "topology.json"
        self.path.write_text(json.dumps(topology))
        self.speed = speed
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> MediumProc:
        argv = [sys.executable, "-m", "tools.meshsim", "--topology", str(self.path)]
        argv += ["--port", "0", "--speed", str(self.speed)]
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"PYTHONPATH": f"{ROOT}:{ROOT / 'shared'}", "PATH": "/usr/bin:/bin"},
            **procs.child_options(new_session=False),
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first.startswith("meshsim listening on"):
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.__exit__()
            raise RuntimeError(f"medium did not start: {first}{err}")
        self.port = int(first.split(":")[1].split()[0])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.communicate(timeout=30)

    def stats(self) -> dict[str, Any]:
        """The medium's STATS_JSON answer (counters and per-node figures)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(bytes([medium_mod.T_STATS_JSON]), ("127.0.0.1", self.port))
            data = s.recv(65536)
        assert data[0] == medium_mod.T_STATS_JSON_REPLY
        out: dict[str, Any] = json.loads(data[1:])
        return out
