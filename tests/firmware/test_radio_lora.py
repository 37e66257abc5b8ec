"""LoraRadio (adapter over micropython-lib's lora drivers) against fake_modem.py, which
follows the drivers' documented API. Same scenarios on CPython and the unix port."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from upy import run_upy

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import lora_adapter_cases as cases  # noqa: E402


@pytest.mark.parametrize("case", cases.CASES, ids=[c.__name__ for c in cases.CASES])
def test_adapter_cpython(case) -> None:  # noqa: ANN001
    case()


@pytest.mark.upy
def test_adapter_unix_port() -> None:
    out = run_upy(
        "import lora_adapter_cases as c\nc.run_all()\n", path=[HERE], heap="256K", timeout=60
    ).stdout
    done = [x.split()[1] for x in out.splitlines() if x.startswith("ok ")]
    assert done == [c.__name__ for c in cases.CASES]


def test_lora_and_machine_are_not_imported_at_module_level() -> None:
    out = run_upy(
        "import sys\nimport loranode.radio_lora\n"
        "print('lora' in sys.modules, 'machine' in sys.modules)\n"
    ).stdout
    assert out.strip() == "False False"
