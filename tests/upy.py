"""Run code inside a MicroPython unix port: the PyPI 64-bit port or a board-shaped build.

The interpreter is the one `LORACHAIN_MICROPYTHON` names (tools.board.interpreters; the
`upy` marker's fixture in conftest.py sets it per test). Its module path comes from
`interpreters.module_path`: the sources of `shared/` and `firmware/` on the PyPI port,
their .mpy files on the plain board-shaped build, the frozen modules on the frozen one,
so tests see exactly the code a board runs in each of those ways.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tools import procs
from tools.board import interpreters

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "shared"
FIRMWARE = ROOT / "firmware"
DEFAULT_HEAP = "2M"
DEFAULT_TIMEOUT = 120.0


def current() -> interpreters.Interpreter:
    """The interpreter this test runs firmware on."""
    return interpreters.current()


def micropython_binary() -> str:
    """The current unix-port interpreter; a missing one is an error, never a skip."""
    return interpreters.binary()


def micropython_path(*extra: Path | str) -> str:
    return interpreters.module_path(interpreters.current(), *extra)


@dataclass
class UpyResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class MicroPythonError(AssertionError):
    """A script under the unix port failed; the message carries its traceback."""


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


def run_upy(
    code: str | None = None,
    *,
    script: Path | str | None = None,
    module: str | None = None,
    args: list[str] | None = None,
    heap: str = DEFAULT_HEAP,
    timeout: float = DEFAULT_TIMEOUT,
    path: list[Path | str] | None = None,
    check: bool = True,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
) -> UpyResult:
    """Run `code`, a `script` file or a `module` under the unix port.

    With `check` (the default), a non-zero exit or a MicroPython traceback raises
    MicroPythonError showing the output, so a failing firmware test shows why.
    """
    argv = [micropython_binary(), "-X", f"heapsize={heap}"]
    if code is not None:
        argv += ["-c", code]
    elif script is not None:
        argv.append(str(script))
    elif module is not None:
        argv += ["-m", module]
    else:
        raise ValueError("give code, script or module")
    argv += args or []
    run_env = dict(os.environ)
    run_env["MICROPYPATH"] = micropython_path(*(path or []))
    run_env.update(env or {})
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=run_env,
            cwd=str(cwd) if cwd is not None else None,
            **procs.child_options(new_session=False),
        )
    except subprocess.TimeoutExpired as e:  # show what it printed before it hung
        out, err = (_text(x) for x in (e.stdout, e.stderr))
        raise MicroPythonError(
            f"micropython timed out after {timeout} s\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
        ) from None
    result = UpyResult(proc.returncode, proc.stdout, proc.stderr)
    if check and (proc.returncode != 0 or "Traceback (most recent call last)" in result.output):
        raise MicroPythonError(
            f"micropython exited {proc.returncode}\n--- stdout ---\n{proc.stdout}"
            f"\n--- stderr ---\n{proc.stderr}"
        )
    return result
