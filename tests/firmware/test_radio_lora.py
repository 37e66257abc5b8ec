"""LoraRadio's own logic that needs no driver. Everything the adapter does with
micropython-lib's drivers is tested against the real drivers on emulated chips:
tests/firmware/test_lora_drivers.py (configuration, send, receive, CRC errors, IRQs,
presets) and tests/e2e/test_emulated_boards.py (in a mesh)."""

from __future__ import annotations

import pytest

from loranode.radio_lora import LoraRadio, lora_cfg
from upy import run_upy


def test_lora_cfg_is_the_drivers_dict() -> None:
    cfg = lora_cfg(868_100_000, 9, 250_000, 7, 17)
    assert cfg == {
        "freq_khz": 868_100,
        "sf": 9,
        "bw": "250",
        "coding_rate": 7,
        "preamble_len": 8,
        "output_power": 17,
        "crc_en": True,
        "implicit_header": False,
        "syncword": 0x12,
        "tx_ant": "PA_BOOST",
    }
    assert isinstance(cfg["freq_khz"], int)
    assert lora_cfg(868_012_500, 7, 62_500, 5, 14)["freq_khz"] == 868_012.5
    assert lora_cfg(868_100_000, 7, 125_000, 5, 14, pa_boost=False)["tx_ant"] == "RFO"
    assert "tx_ant" not in lora_cfg(868_100_000, 7, 125_000, 5, 14, chip="sx1262")


def test_unknown_chip_is_refused() -> None:
    with pytest.raises(ValueError, match="chip sx1280 not one of"):
        LoraRadio(object(), chip="sx1280")


def test_lora_and_machine_are_not_imported_at_module_level() -> None:
    out = run_upy(
        "import sys\nimport loranode.radio_lora\n"
        "print('lora' in sys.modules, 'machine' in sys.modules)\n"
    ).stdout
    assert out.strip() == "False False"
