"""firmware/manifest.py freezes exactly what the deploy tool ships, plus the LoRa drivers.

The manifest is evaluated by MicroPython's own manifest tool (tools/manifestfile.py of
the vendored source, as `make -C ports/esp32 FROZEN_MANIFEST=...` evaluates it), once as
a board build includes it (no unix-port radio) and once as the board-shaped unix build
does (sim_radio=True). A module added to or left out of one list but not the other
would give a board firmware with other code than `tools.deploy flash` puts on a stock
one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tools.board import mpytree
from tools.deploy import romfs

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "firmware" / "manifest.py"
DRIVER_PACKAGES = {"lora", "sx127x", "sx126x", "async_modem"}


def _frozen(top: Path, **options: bool) -> set[str]:
    """Target paths of every module the manifest freezes (a board's import paths)."""
    sys.path.insert(0, str(top / "tools"))  # manifestfile is a script of the source tree
    try:
        import manifestfile
    finally:
        sys.path.remove(str(top / "tools"))
    path_vars = {
        "MPY_DIR": str(top),
        "MPY_LIB_DIR": str(top / "lib" / "micropython-lib"),
        "PORT_DIR": str(top / "ports" / "unix"),
        "BOARD_DIR": None,
    }
    m = manifestfile.ManifestFile(manifestfile.MODE_FREEZE, path_vars)
    m.include(str(MANIFEST), port_manifest=False, **options)
    return {f.target_path for f in m.files()}


@pytest.fixture(scope="module")
def source_tree() -> Path:
    lib = mpytree.lora_source()  # the MicroPython source `make board` unpacked
    if lib is None:
        pytest.skip("no MicroPython source: run `make board` (needs ../shared/vendor)")
    return lib.parents[2].parent


def _shipped(exclude: frozenset[str]) -> set[str]:
    return {
        f"{name}/{src.name}"
        for name, pkg in romfs.PACKAGES
        for src in pkg.glob("*.py")
        if romfs.ships(f"{name}/{src.name}", exclude)
    }


def test_a_board_build_freezes_what_the_deploy_tool_ships(source_tree: Path) -> None:
    frozen = _frozen(source_tree)
    ours = {p for p in frozen if p.split("/")[0] in ("lorawire", "loranode")}
    assert ours == _shipped(romfs.BOARD_EXCLUDE)
    assert not ours & romfs.BOARD_EXCLUDE
    drivers = {p.split("/")[0] for p in frozen - ours}
    assert {"lora"} <= drivers, sorted(frozen - ours)
    assert {"lora/sx127x.py", "lora/sx126x.py", "lora/async_modem.py"} <= frozen


def test_the_board_shaped_unix_build_adds_only_the_simulated_radio(source_tree: Path) -> None:
    board = _frozen(source_tree)
    unix = _frozen(source_tree, sim_radio=True)
    assert unix - board == romfs.UNIX_PORT_ONLY
    assert board <= unix
