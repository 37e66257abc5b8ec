"""The demo's live view (tools/demo/liveview.py) fits the terminal it is shown in.

`render` is a function of the demo network's static facts (a real, unstarted `Network`)
and one snapshot, shaped as `gather` returns it from the gateway's control socket: three
internet peers, eight mesh nodes 0..3 hops away and a few bans. At 80x24 no line is wider,
no more lines are drawn, and what a newcomer needs stays: every peer or a line counting
the rest, the bans, the airtime, the relay counts, the gateway's data dir, its metrics
URL and the command that points the CLI at it.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.demo.liveview import render
from tools.demo.network import PEER_HOSTS, Network, Tally

NOW = time.time()


@pytest.fixture
def net() -> Iterator[Network]:
    """The demo's network as `make run` makes it (its own /tmp work dir), not started."""
    net = Network(None, nodes=8, speed=10)
    net.gateway_port, net.metrics_port = 40211, 41234
    net.bridge_id = "b0a4d00000000001"
    for i in range(8):
        net.names[f"{i:02x}" * 8] = f"n{i}"
    net.names["ba" * 8] = "bad"
    yield net
    net.cleanup()


def _peer(node: str, address: str | None, direction: str, hops: int | None = None) -> dict:
    mesh = direction == "mesh"
    return {
        "node_id": node,
        "address": address,
        "kind": "mesh" if mesh else "full",
        "state": "heard" if mesh else "connected",
        "direction": direction,
        "score": 61.3,
        "latency_ms": None if mesh else 1.7,
        "rssi": -104.0 if mesh and hops == 0 else None,
        "snr": -1.25 if mesh and hops == 0 else None,
        "hops": hops,
        "connected_since": None if mesh else NOW - 300,
        "last_seen": NOW - 5,
        "bytes_in": 0,
        "bytes_out": 0,
        "group": None,
        "points": 0.0,
        "ban_threshold": 100,
    }


def _ban(target: str, reason: str) -> dict:
    ev = {"time": NOW, "misbehaviour": "malformed_frame", "points": 20, "msg_type": 1}
    return {
        "target": target,
        "reason": reason,
        "since": NOW - 60,
        "until": NOW + 3500,
        "count": 1,
        "manual": False,
        "evidence": [dict(ev, reason="x", frame_sha256=None)] * 5,
    }


def _snapshot(bans: int = 2) -> dict[str, Any]:
    peers = [
        _peer("c1" * 8, f"{PEER_HOSTS[0]}:39211", "in"),
        _peer("c2" * 8, f"{PEER_HOSTS[1]}:40999", "in"),
        _peer("c3" * 8, "[2001:db8:1234:5678:9abc:def0:1234:5678]:18333", "out"),
    ] + [_peer(f"{i:02x}" * 8, None, "mesh", hops=i // 2) for i in range(8)]
    tally = Tally()
    for i in range(9):
        tally.made_mesh.put(f"m{i}", "n0")
        tally.got_inet.put(f"m{i}", {"peer2"})
    ban_list = [_ban(f"{PEER_HOSTS[2]}", "misbehaviour: malformed_frame")]
    ban_list += [_ban("node:" + "ba" * 8, "misbehaviour: mesh: malformed_frame")] * (bans - 1)
    status = {
        "node_id": "e1e2e3e4e5e6e7e8",
        "relayed": {"tx": 12, "inv": 40, "block": 1},
        "airtime": {"used_ms": 16_250.0, "budget_ms": 36_000.0, "window_s": 3600.0},
        "bridge": {"downlink": {"objects_offered": 21, "refused": 4, "sent": 140}},
    }
    return {
        "now": NOW,
        "up_s": 734.0,
        "status": status,
        "peers": peers,
        "bans": ban_list,
        "metrics": {'loragate_relayed_total{kind="mesh_tx"}': 7.0},
        "known": 56,
        "total": 56,
        "converged": True,
        "tally": tally,
        "bridge": {"counters": {"dropped_banned": 17}},
        "gateway_running": True,
    }


@pytest.mark.parametrize(("width", "height"), [(80, 24), (81, 25), (100, 30)])
def test_the_view_fits_a_small_terminal_and_keeps_what_matters(
    net: Network, width: int, height: int
) -> None:
    text = render(net, _snapshot(), width, height)
    lines = text.splitlines()
    assert len(lines) < height  # the newline after the frame takes the last line
    assert max(len(line) for line in lines) <= width, max(lines, key=len)
    assert str(net.gateway_dir) in text and net.metrics_url in text
    assert f"status --data-dir {net.gateway_dir}" in text
    for name in ("peer1", "peer2", *(f"n{i}" for i in range(8))):
        assert f"  {name} " in text, name
    assert "badpeer" in text and "bad " in text  # both bans, by who they are
    assert "AIR" in text and "45.1%" in text and "21 offered, 4 refused" in text
    assert "discovery done (56/56)" in text and "up 9/9 down 0/0" in text
    assert "direct" in text and "3 hops" in text and "-104 dBm" in text
    assert text.splitlines()[-1] == "Ctrl-C stops everything."


def test_more_than_fits_is_counted_not_cut_silently(net: Network) -> None:
    text = render(net, _snapshot(bans=6), 80, 24)
    lines = text.splitlines()
    assert len(lines) < 24 and max(len(line) for line in lines) <= 80
    more = [line for line in lines if line.startswith("  ... ") and "more: loragate peers" in line]
    shown = sum(1 for line in lines if line.startswith(("  peer", "  n")) and " mesh " in line)
    assert more and shown < 8
    assert "BANS 6 active" in text and "AIR" in text and "RELAYED" in text


def test_a_large_terminal_gets_the_full_view(net: Network) -> None:
    text = render(net, _snapshot(), 120, 60)
    assert text.startswith("LORACHAIN LIVE DEMO")
    assert f"Data dir  : {net.gateway_dir}" in text and "CLI       : " in text
    assert "mesh via bridge, direct" in text and "mesh via bridge, 3 hops" in text
    assert "relayed (no own radio link)" in text  # no borrowed RSSI for a far node


@pytest.mark.parametrize("peers", range(9, 16))
def test_a_frame_never_takes_the_terminals_last_line(net: Network, peers: int) -> None:
    snap = _snapshot()
    snap["peers"] = snap["peers"][:3] + [
        _peer(f"{i:02x}" * 8, None, "mesh", hops=i % 4) for i in range(peers - 3)
    ]
    lines = render(net, snap, 80, 24).splitlines()
    assert len(lines) <= 23 and lines[-1] == "Ctrl-C stops everything."


def test_a_long_data_dir_is_shown_whole_and_the_command_pastes() -> None:
    base = Path(tempfile.mkdtemp(prefix="lcview-"))
    # 74 characters: too long for "  data dir PATH" in 80 columns, not for a line of its own
    pad = 74 - len(str(base / "d" / "demo" / "gateway"))
    try:
        assert pad >= 0, base
        net = Network(base / ("d" * (pad + 1)) / "demo", nodes=8, speed=10)
        net.gateway_port, net.metrics_port = 40211, 41234
        text = render(net, _snapshot(), 80, 24)
    finally:
        shutil.rmtree(base)
    lines = text.splitlines()
    assert len(lines) < 24 and max(len(line) for line in lines) <= 80
    path = str(net.gateway_dir)
    assert len(path) == 74 and f"    {path}" in lines
    cli = next(i for i, line in enumerate(lines) if line.startswith("  cli "))
    command = lines[cli].removeprefix("  cli").strip().removesuffix("\\").strip()
    assert command.endswith(" status --data-dir") and lines[cli + 1] == f"    {path}"
    assert shlex.split(lines[cli].split(None, 1)[1] + "\n" + lines[cli + 1])[-1] == path
