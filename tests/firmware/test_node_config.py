"""The validated config reaches the node: score weights and table capacities (in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nodekit import UartCapture, status_of

from loranode.node import Node
from lorawire.identity import Identity
from tools.deploy import fwconfig as config

KEY = "11" * 32


class _NoRadio:
    speed = 1.0
    name = "t"


def _node(tmp_path: Path, **kw: object) -> Node:
    raw = {"board": "heltec-v3", "region": "EU868", "network_key": KEY, "sf": 7}
    raw["node"] = {"state_dir": str(tmp_path), "stdin": False, "status_interval_s": 0}
    raw.update(kw)
    cfg = config.board_config(config.validate(raw))
    return Node(cfg, Identity(bytes(range(32))), _NoRadio())


@pytest.mark.parametrize(
    "weights",
    [
        {"reliability": 10, "performance": 0, "behaviour": 90},
        {"reliability": 100, "performance": 100, "behaviour": 1},
        {"reliability": 0, "performance": 7, "behaviour": 0},
    ],
)
def test_configured_score_weights_reach_the_scorer(tmp_path: Path, weights: dict) -> None:
    sc = _node(tmp_path, score_weights=weights).peers.scorer
    got = (sc.config["w_reliability"], sc.config["w_link"], sc.config["w_behaviour"])
    assert got == (weights["reliability"], weights["performance"], weights["behaviour"])
    assert all(type(w) is int for w in got)


def test_default_score_weights_reach_the_scorer(tmp_path: Path) -> None:
    sc = _node(tmp_path).peers.scorer
    want = config.SCORE_WEIGHT_DEFAULTS
    w = sc.config
    got = {
        "reliability": w["w_reliability"],
        "performance": w["w_link"],
        "behaviour": w["w_behaviour"],
    }
    assert got == want


def test_weights_change_the_score_as_configured(tmp_path: Path) -> None:
    """One weight alone: a peer's score is that part alone (a perfectly behaved peer with
    a dreadful link scores 1000 on behaviour only and low on performance only)."""
    q = 256  # Q8 counters
    args = (0, 40 * q, 100 * q, 0, -130 * 4, -20 * 4, 60000)  # no acks, all valid, bad link

    def score(weights: dict) -> int:
        sc = _node(tmp_path, score_weights=weights).peers.scorer
        return int(sc.compute(*args))

    behaviour = score({"reliability": 0, "performance": 0, "behaviour": 5})
    link = score({"reliability": 0, "performance": 5, "behaviour": 0})
    mixed = score({"reliability": 0, "performance": 50, "behaviour": 50})
    assert behaviour > 900 and link < behaviour - 300
    assert abs(mixed - (behaviour + link) // 2) <= 1


def test_fractional_weights_are_refused_before_boot() -> None:
    raw = {"board": "heltec-v3", "region": "EU868", "network_key": KEY}
    raw["score_weights"] = {"reliability": 0.5, "performance": 0.25, "behaviour": 0.25}
    with pytest.raises(config.ConfigError) as err:
        config.validate(raw)
    assert str(err.value) == "config: score_weights.reliability=0.5 is not an integer (0..100)"


def test_configured_capacities_reach_the_tables(tmp_path: Path) -> None:
    caps = {"peers": 5, "bans": 4, "seen": 17, "reassembly": 2, "key_cache": 5, "txqueue": 6}
    tables = status_of(_node(tmp_path, capacities=caps))["tables"]
    got = {name: tables[name][1] for name in caps}
    assert got == caps
    assert all(tables[name][0] == 0 for name in caps)  # all empty at boot


def test_default_capacities_reach_the_tables(tmp_path: Path) -> None:
    tables = status_of(_node(tmp_path))["tables"]
    assert {n: tables[n][1] for n in config.CAPACITIES} == {
        n: c[2] for n, c in config.CAPACITIES.items()
    }


def _bridge_answers(region: str, key: str, value: int, tmp_path: Path) -> list:
    from loranode import bridge as bmod

    cfg = config.validate(
        {
            "role": "bridge",
            "board": "heltec-v3",
            "region": region,
            "network_key": KEY,
            "node": {"state_dir": str(tmp_path), "stdin": False},
        }
    )
    port = UartCapture()
    b = bmod.Bridge(config.board_config(cfg), Identity(bytes(range(32))), None, port)
    b.flush()  # anything the bridge queued while starting
    port.data.clear()
    b.config_set(key, value)
    b.flush()
    return port.packets()


def test_bridge_config_set_sf_keeps_the_largest_frame_sendable(tmp_path: Path) -> None:
    """CONFIG_SET sf from the gateway obeys the boot-time rule: in US915 at 125 kHz, SF8
    would leave the 187-byte ANNOUNCE (533 ms) over the 400 ms dwell limit."""
    from loranode import bridge as bmod
    from lorawire import link

    assert bmod.LARGEST_OWN_FRAME == config.LARGEST_OWN_FRAME
    ((t, f),) = _bridge_answers("US915", "sf", 8, tmp_path)
    assert (
        t == link.ERROR
        and f["text"] == "sf 8: a 187-byte frame (533 ms) is over the dwell or duty limit"
    )
    ((t, f),) = _bridge_answers("EU868", "sf", 13, tmp_path)
    assert t == link.ERROR and "sf must be 7..12" in f["text"]
