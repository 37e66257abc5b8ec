"""Build the board-shaped interpreters: `python -m tools.board build` (`make board`).

Steps, each skipped when its output is up to date:
  1. the source: MICROPY_SRC as it is, or the vendored tarball (sha256 checked)
     unpacked into build/board/src;
  2. mpy-cross from that source (the frozen build compiles our modules with it);
  3. the unix port twice, with the variant in tools/board/variant, `-m32`, into
     build/board/plain and build/board/frozen. MicroPython's own make rules rebuild the
     frozen one whenever a frozen source changed.

A machine without a 32-bit toolchain or without the source gets one line saying what
to install and exit status 2; with LORACHAIN_REQUIRE_BOARD unset, `--if-possible` turns
that into a note and exit 0 (what `make test` uses on a developer machine).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import click

from tools.board.interpreters import BOARD_NAMES, board_path, build_hint
from tools.board.paths import BUILD, ROOT, TARBALL, TARBALL_SHA256

VARIANT = ROOT / "tools" / "board" / "variant"
SRC_DIR = BUILD / "src"
MANIFESTS = {"plain": "manifest_plain.py", "frozen": "manifest_frozen.py"}
REQUIRE_ENV = "LORACHAIN_REQUIRE_BOARD"


class BuildError(Exception):
    """Something the build needs is missing; str() is one line for the user."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_tree() -> Path:
    """The MicroPython source to build from (unpacking the tarball if needed)."""
    given = os.environ.get("MICROPY_SRC")
    if given:
        top = Path(given).resolve()
        if not (top / "ports" / "unix" / "Makefile").exists():
            raise BuildError(f"MICROPY_SRC={given} is not a MicroPython checkout (no ports/unix)")
        return top
    if not TARBALL.exists():
        raise BuildError(build_hint())
    top = SRC_DIR / "micropython"
    stamp = SRC_DIR / ".sha256"
    if stamp.exists() and stamp.read_text().strip() == TARBALL_SHA256 and top.exists():
        return top
    digest = _sha256(TARBALL)
    if digest != TARBALL_SHA256:
        raise BuildError(f"{TARBALL.name}: sha256 {digest[:16]}… is not the vendored source")
    shutil.rmtree(SRC_DIR, ignore_errors=True)
    SRC_DIR.mkdir(parents=True)
    with tarfile.open(TARBALL) as tar:
        tar.extractall(SRC_DIR, filter="data")
    stamp.write_text(TARBALL_SHA256 + "\n")
    return top


def check_toolchain() -> None:
    """Compile and link an empty 32-bit program, or say what to install."""
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise BuildError(f"no C compiler ({cc}): install gcc and gcc-multilib")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.c"
        src.write_text("#include <stdio.h>\n#include <math.h>\nint main(void){return 0;}\n")
        r = subprocess.run(
            [cc, "-m32", str(src), "-lm", "-o", str(Path(tmp) / "t")], capture_output=True
        )
        if r.returncode != 0:
            raise BuildError(
                "the C compiler cannot build 32-bit programs: "
                "install gcc-multilib (Debian: apt-get install gcc-multilib)"
            )


def _make(args: list[str], log: Path) -> None:
    jobs = str(os.cpu_count() or 2)
    with log.open("w") as out:
        r = subprocess.run(["make", "-j", jobs, *args], stdout=out, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise BuildError(f"build failed (log: {log}):\n" + "\n".join(tail))


def build(names: tuple[str, ...] = BOARD_NAMES) -> list[Path]:
    check_toolchain()
    top = source_tree()
    BUILD.mkdir(parents=True, exist_ok=True)
    mpy_cross_build = BUILD / "mpy-cross"
    mpy_cross = mpy_cross_build / "mpy-cross"
    _make(["-C", str(top / "mpy-cross"), f"BUILD={mpy_cross_build}"], BUILD / "mpy-cross.log")
    out = []
    for name in names:
        dest = board_path(name).parent
        _make(
            [
                "-C",
                str(top / "ports" / "unix"),
                f"VARIANT_DIR={VARIANT}",
                f"VARIANT=lorachain-{name}",
                f"BUILD={dest}",
                f"FROZEN_MANIFEST={VARIANT / MANIFESTS[name]}",
                f"MICROPY_MPYCROSS={mpy_cross}",
                "CFLAGS_EXTRA=-m32",
                "LDFLAGS_EXTRA=-m32",
            ],
            BUILD / f"{name}.log",
        )
        out.append(board_path(name))
    return out


@click.group()
def cli() -> None:
    """The board-shaped 32-bit MicroPython (see tools/board/__init__.py)."""


@cli.command("build")
@click.option(
    "--if-possible",
    is_flag=True,
    help=f"A missing toolchain or source is a note, not an error (unless {REQUIRE_ENV}=1).",
)
def build_cmd(if_possible: bool) -> None:
    """Build both interpreters into build/board/."""
    try:
        for path in build():
            click.echo(f"board: {path}")
    except BuildError as e:
        lines = str(e).splitlines()
        if if_possible and not os.environ.get(REQUIRE_ENV) and len(lines) == 1:
            click.echo(f"board: skipped, {lines[0]} (the board-shaped tests will skip)")
            return
        click.echo(f"board: {lines[0]}", err=True)
        for line in lines[1:]:
            click.echo(line, err=True)
        sys.exit(2)


@cli.command("path")
@click.argument("name", type=click.Choice(BOARD_NAMES))
def path_cmd(name: str) -> None:
    """Print the path of a built interpreter."""
    click.echo(board_path(name))


if __name__ == "__main__":
    cli()
