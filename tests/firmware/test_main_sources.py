"""main.py on a board: it refuses, in one line, to start from .py sources of ours.

A board compiles a .py module when it imports it, and our modules do not compile within
an ESP32's 15 KB C stack; so on any platform but the unix port main.py stops with one
line and exit code 2 when the first copy of our packages on sys.path is .py sources.
The unix port (sys.platform "linux") is allowed to, for development. To run main.py as a
board would, each test puts a board's filesystem in a directory (main.py at its root,
the packages beside it, as `tools.deploy flash` lays them out) and runs main.py under
the real interpreter with `sys` seen as an ESP32's: a stand-in module whose platform is
"esp32", installed in sys.modules before main.py's own `import sys`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools.board import mpytree
from upy import run_upy

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"loranode": ROOT / "firmware" / "loranode", "lorawire": ROOT / "shared" / "lorawire"}

AS_ESP32 = """\
import sys
_sys = sys


class _Esp32Sys:
    platform = "esp32"
    argv = []

    def __getattr__(self, name):
        return getattr(_sys, name)


_sys.modules["sys"] = _Esp32Sys()
exec(open("main.py").read(), {"__name__": "__main__"})
"""


def _board_fs(root: Path, suffix: str) -> Path:
    """A board's filesystem: main.py and our packages as `suffix` files."""
    board = root / "board-fs"
    board.mkdir()
    shutil.copy(ROOT / "firmware" / "main.py", board / "main.py")
    (board / "as_esp32.py").write_text(AS_ESP32)
    if suffix == ".py":
        for name, src in PACKAGES.items():
            shutil.copytree(src, board / name, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        tree = mpytree.ensure()
        for name in PACKAGES:
            shutil.copytree(tree / name, board / name)
    return board


def _run_as_board(board: Path):  # noqa: ANN202 - an UpyResult
    # sys.path as a board has it: the filesystem root first (the script's folder here),
    # then frozen modules; nothing of the repository
    return run_upy(
        script=board / "as_esp32.py",
        cwd=board,
        check=False,
        heap="512K",
        env={"MICROPYPATH": ".frozen"},
    )


@pytest.mark.upy
def test_main_refuses_py_sources_on_a_board_in_one_line(tmp_path: Path) -> None:
    result = _run_as_board(_board_fs(tmp_path, ".py"))
    assert result.returncode == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("firmware: ") and "holds our packages as .py sources" in lines[0]
    assert "deploy .mpy files (make flash)" in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.upy
def test_main_starts_from_mpy_files_on_a_board(tmp_path: Path) -> None:
    """The same board with .mpy files passes the check and gets as far as its config
    (none here: one line from the boot sequence, not the sources refusal)."""
    result = _run_as_board(_board_fs(tmp_path, ".mpy"))
    assert result.returncode == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("config: cannot read config.json"), (
        result.output
    )
