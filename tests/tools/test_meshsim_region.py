"""The simulator takes its region from lorawire.regions (issue 7: one region table)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lorawire import airtime, regions
from tools.meshsim.launcher import FREQ_HZ, ROOT, Mesh, duty_limits, region_frequency


def test_default_region_is_unchanged() -> None:
    mesh = Mesh(2, "line")
    mesh.port = 47000  # as once the medium runs
    raw = mesh.config_for(mesh.nodes[0])
    assert (raw["region"], raw["frequency_hz"], raw["bandwidth_hz"]) == ("EU868", 868100000, 125000)
    assert FREQ_HZ == 868100000
    assert mesh.limits()["budget_ms"] == airtime.DEFAULT_WINDOW_MS // 100  # 1 % of the window


@pytest.mark.parametrize("name", regions.REGION_NAMES)
def test_frequency_is_the_first_125k_default_channel(name: str) -> None:
    first = next(f for f, bw in regions.default_channels(name) if bw == 125000)
    mesh = Mesh(2, "line", region=name.lower())
    mesh.check_config()  # the firmware's own validation accepts it
    assert (mesh.region, mesh.frequency_hz) == (name, first)
    band = regions.sub_band(name, first, 125000)
    lim = mesh.limits()
    assert lim["duty_ppm"] == band[regions.SB_DUTY_PPM]
    assert lim["budget_ms"] == lim["window_ms"] * band[regions.SB_DUTY_PPM] // regions.PPM
    assert lim["dwell_ms"] == band[regions.SB_DWELL_MS]


def test_bad_region_and_bandwidth_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown region"):
        Mesh(2, "line", region="XX868")
    with pytest.raises(ValueError, match="no default channel"):
        region_frequency("IN865", 500000)
    assert duty_limits("US915", 903000000, 500000)["dwell_ms"] == 0  # 500 kHz: dwell-exempt


def test_cli_rejects_sf_over_the_dwell_limit_in_one_line() -> None:
    cmd = [sys.executable, "-m", "tools.meshsim.launcher", "--region", "US915", "--sf", "12"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "sf=12" in lines[0] and "US915" in lines[0], out.stderr


@pytest.mark.upy
@pytest.mark.slow
def test_us915_mesh_converges_with_the_us915_budget(tmp_path: Path) -> None:
    with Mesh(2, "line", tmp_path, speed=10.0, region="US915") as mesh:
        assert mesh.wait_until(lambda m: m.converged(), timeout=30), mesh.knowledge()
        raw = json.loads((tmp_path / "n0" / "config.json").read_text())
        assert (raw["region"], raw["frequency_hz"]) == ("US915", 902300000)
        want = duty_limits("US915", 902300000)
        assert want["budget_ms"] != duty_limits("EU868", 868100000)["budget_ms"]
        for node in mesh.nodes:
            air = (node.status or {})["airtime"]
            assert air["budget_ms"] == want["budget_ms"] == airtime.DEFAULT_WINDOW_MS
            assert air["bg_budget_ms"] == want["bg_budget_ms"]
            assert 0 < air["used_ms"] <= air["budget_ms"]
