"""Run a benchmark snippet under the MicroPython unix port and read its figures back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools import procs

ROOT = Path(__file__).resolve().parents[2]


def run_micropython(code: str, heap: str = "2M", timeout: float = 300.0) -> str:
    """Run `code` with shared/ and firmware/ on the path; return stdout or raise."""
    binary = Path(sys.executable).with_name("micropython")
    env = dict(os.environ)
    env["MICROPYPATH"] = f"{ROOT / 'shared'}:{ROOT / 'firmware'}:.frozen"
    proc = subprocess.run(
        [str(binary), "-X", f"heapsize={heap}", "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **procs.child_options(new_session=False),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"micropython failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout
