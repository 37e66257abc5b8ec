"""The heap micropython-lib's LoRa driver adds on a board: its code (imported from .mpy
files on the plain 32-bit build, as after `mpremote mip install`, or frozen into the
frozen build) and the objects a constructed, configured modem holds, per Heltec preset.

Printed (`pytest -s`) for the board footprint table. The plain build gets exactly the
packages the preset installs (tools.deploy.boards.packages: the chip driver, lora-async and
their dependency lora); the frozen build has both chip drivers frozen, as
firmware/manifest.py freezes them. The emulated chip and the `machine` stand-in are
imported before the first measurement (a board's machine module is built in), and
the modem figure leaves out the stand-in's Pin and SPI objects (measured alone: Python
objects here, a board's are C objects, its Pins in ROM).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.board import mpytree
from tools.deploy import boards
from tools.meshsim.launcher import emulated_board
from upy import run_upy

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

PRESETS = ("heltec-v2", "heltec-v3")
HEAP = "512K"

MEASURE = """
import gc, json, sys
import asyncio  # the node imports it anyway; the async driver classes need it
from chipsim import boot
with open(sys.argv[1]) as f:
    desc = json.loads(f.read())
chip, board = boot.build(desc)
from loranode.radio_lora import LoraRadio, make_modem
preset = desc["preset"]
import machine
nums = [preset[k] for k in ("sck", "mosi", "miso", "cs", "reset", "dio0", "dio1", "busy")
        if preset.get(k) is not None]
gc.collect()
before = gc.mem_alloc()
spare = ([machine.Pin(n) for n in nums], machine.SPI(1, sck=machine.Pin(nums[0])))
gc.collect()
stand_in = gc.mem_alloc() - before - 8 * 4  # minus the list that holds them
del spare
gc.collect()
base = gc.mem_alloc()
import lora
gc.collect()
code = gc.mem_alloc() - base
modem = make_modem(preset)
gc.collect()
modem_bytes = gc.mem_alloc() - base - code
radio = LoraRadio(modem, preset["chip"], preset["pa_boost"], 0x12, preset["max_power_dbm"])
radio.configure(868100000, 7, 125000, 5, 14)
gc.collect()
adapter = gc.mem_alloc() - base - code - modem_bytes
from chipsim import faults
print("HEAP " + json.dumps({"code": code, "modem": modem_bytes - stand_in, "adapter": adapter,
                            "stand_in": stand_in,
                            "faults": faults.LOG,
                            "modules": sorted(m for m in sys.modules if m.startswith("lora."))}))
"""


def _measure(tmp_path: Path, preset: str, path: list[Path | str]) -> dict[str, object]:
    board = tmp_path / f"{preset}.json"
    board.write_text(json.dumps(emulated_board(preset, "c", None)))
    script = tmp_path / "measure.py"
    script.write_text(MEASURE)
    out = run_upy(
        script=script, args=[str(board), preset], path=[ROOT / "tools", *path], heap=HEAP
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("HEAP "))
    result: dict[str, object] = json.loads(line[len("HEAP ") :])
    return result


@pytest.mark.upy("plain")
@pytest.mark.parametrize("preset", PRESETS)
def test_driver_heap_from_mpy_files(preset: str, tmp_path: Path) -> None:
    packages = ("lora", *boards.packages(boards.BOARDS[preset]))
    tree = mpytree.ensure_lora(tmp_path / "board-lib", packages)
    mpy_bytes = sum(p.stat().st_size for p in (tree / "lora").glob("*.mpy"))
    r = _measure(tmp_path, preset, [tree])
    chip = boards.BOARDS[preset]["chip"]
    print(
        f"\nDRIVER HEAP plain .mpy {preset} ({chip}; {', '.join(packages)}; "
        f"{mpy_bytes} B of .mpy): code {r['code']} B, modem object {r['modem']} B, "
        f"configured LoraRadio {r['adapter']} B"
    )
    assert r["faults"] == []
    driver = "lora.sx127x" if chip == "sx1276" else "lora.sx126x"
    other = "lora.sx126x" if chip == "sx1276" else "lora.sx127x"
    assert driver in r["modules"] and other not in r["modules"]  # only what mip installed
    assert 0 < int(r["modem"]) < int(r["code"])  # type: ignore[call-overload]


@pytest.mark.upy("frozen")
@pytest.mark.parametrize("preset", PRESETS)
def test_driver_heap_frozen(preset: str, tmp_path: Path) -> None:
    r = _measure(tmp_path, preset, [])
    print(
        f"\nDRIVER HEAP frozen {preset} ({boards.BOARDS[preset]['chip']}; both drivers "
        f"frozen): code {r['code']} B, modem object {r['modem']} B, configured LoraRadio "
        f"{r['adapter']} B"
    )
    assert r["faults"] == []
    assert {"lora.sx127x", "lora.sx126x"} <= set(r["modules"])  # type: ignore[call-overload]
    assert 0 < int(r["code"]) and 0 < int(r["modem"])  # type: ignore[call-overload]
