"""A board whose config needs micropython-lib's `lora` driver but that lacks it ends its
boot in one line naming the package to install, not in a traceback (issue 13).

The board is an emulated Heltec V3 (tools/chipsim: its `machine` and SX1262 stand in
for the hardware, so the only thing missing is the driver itself), booted by the real
firmware/main.py from the config the deploy tool writes, on the unix port, with no
driver on the module path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tools.deploy import fwconfig
from tools.meshsim.launcher import CHIPBOOT, emulated_board
from upy import ROOT, run_upy

BOARD = "heltec-v3"


@pytest.mark.upy("pypi")
def test_a_missing_lora_driver_is_one_line_naming_the_package(tmp_path: Path) -> None:
    raw = {
        "board": BOARD,
        "region": "EU868",
        "network_key": hashlib.sha256(b"mesh").hexdigest(),
        "node": {"stdin": False, "status_interval_s": 0},
    }
    (tmp_path / "config.json").write_text(json.dumps(fwconfig.board_config(fwconfig.validate(raw))))
    desc = emulated_board(BOARD, "n0", None)
    (tmp_path / "board.json").write_text(json.dumps(desc))
    result = run_upy(
        script=CHIPBOOT,
        args=["board.json", str(ROOT / "firmware" / "main.py"), "config.json"],
        path=[ROOT / "tools"],  # chipsim; the firmware and lorawire come with the interpreter
        cwd=tmp_path,
        check=False,
        timeout=60,
    )
    lines = [ln for ln in result.output.splitlines() if not ln.startswith("CHIPSIM")]
    assert result.returncode == 1, result.output
    assert "Traceback" not in result.output
    assert len(lines) == 1, result.output
    assert "mpremote mip install lora-sx126x" in lines[0], result.output
