"""A mesh at the highest SF the firmware config allows in a dwell-limited region converges.

US915 at 125 kHz: the config refuses every SF under which the node's largest own frame
(a 187-byte ANNOUNCE) exceeds the 400 ms dwell limit, because the transmit queue would
drop it for good (`tx_never`). At the highest SF left, real unix-port nodes announce,
learn each other, and drop nothing as never-sendable.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.deploy import fwconfig as config
from tools.meshsim.launcher import BANDWIDTH_HZ, Mesh, region_frequency

REGION = "US915"


def _highest_sf() -> int:
    freq = region_frequency(REGION, BANDWIDTH_HZ)
    allowed = config.allowed_sfs(REGION, freq, BANDWIDTH_HZ, config.CR_DEFAULT)
    assert allowed, "no SF left for US915 at 125 kHz"
    return max(allowed)


def test_the_next_sf_up_is_refused_before_any_process_starts(tmp_path: Path) -> None:
    sf = _highest_sf()
    assert sf == 7  # 187 bytes: 297 ms at SF7, 533 ms at SF8
    mesh = Mesh(2, "line", tmp_path, region=REGION, sf=sf + 1)
    with pytest.raises(config.ConfigError, match=r"over US915's 400 ms dwell limit \(use sf <= 7"):
        mesh.check_config()


@pytest.mark.upy
@pytest.mark.slow
def test_us915_mesh_at_the_highest_allowed_sf_converges(tmp_path: Path) -> None:
    sf = _highest_sf()
    with Mesh(2, "line", tmp_path, speed=10.0, region=REGION, sf=sf) as mesh:
        assert mesh.wait_until(lambda m: m.converged(), timeout=40), mesh.knowledge()
        mesh.request_status()
        for node in mesh.nodes:
            st = node.status
            assert st is not None
            assert st["counters"]["announce_tx"] >= 1
            assert st["counters"]["tx_never"] == 0, st["counters"]
