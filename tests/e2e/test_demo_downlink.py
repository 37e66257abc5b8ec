"""The demo network for a simulated hour at high speed: the downlink never stalls silently.

All real (tools.demo.network.Network: the meshsim medium, 8 unix-port nodes, the bridge
on a pty, `loragate run`, the internet peers), with the internet making transactions
several times faster than the demo's default, so the bridge's duty-cycle budget
(EU868: 36 s of airtime per hour) cannot carry all of them. What the gateway must do
(issue 13): offer what the air carries, refuse the rest before any INV, count it and say
so in its log. The test samples the gateway's status every few seconds and checks that

* objects kept going down in the second half of the hour (the downlink moved),
* objects were refused for lack of airtime, counted in the status and in the metrics,
* and the gateway's log said so (`downlink_shed ...` at WARNING),

and prints the figures (offered, refused by reason, frames sent, the shaper's drops).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tools.demo.network import Network

pytestmark = [pytest.mark.slow, pytest.mark.upy("pypi")]  # two minutes: one interpreter

SPEED = 30.0  # simulated seconds per real second: an hour in two minutes
SIM_HOUR_S = 3600.0
# The internet peer makes a transaction every 10 real seconds (the gateway offers at most
# 6 a minute per internet origin, in real time), each 400 bytes: two LoRa fragments, so
# each one the mesh fetches costs about 2 s of the bridge's 36 s per hour.
INET_TX_EVERY_S = 10.0
INET_TX_BYTES = 400
MESH_TX_EVERY_S = 6.0
SAMPLE_S = 5.0


def _downlink(net: Network) -> dict[str, Any] | None:
    st = net.query("status") or {}
    bridge = st.get("bridge") or {}
    return bridge.get("downlink")


def test_an_hour_of_traffic_sheds_loudly_and_keeps_the_downlink_moving(tmp_path: Path) -> None:
    net = Network(tmp_path / "demo", nodes=8, speed=SPEED, seed=3, tx_every=0)
    samples: list[tuple[float, dict[str, Any]]] = []
    with net:
        t0 = time.monotonic()
        end = t0 + SIM_HOUR_S / SPEED
        next_tx = next_inet = t0
        turn = 0
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_tx:
                net.make_mesh_tx(turn % net.n)
                turn += 1
                next_tx = now + MESH_TX_EVERY_S
            if now >= next_inet:
                net.make_peer_tx(os.urandom(INET_TX_BYTES))
                next_inet = now + INET_TX_EVERY_S
            down = _downlink(net)
            if down is not None:
                samples.append(((now - t0) * SPEED, down))
            time.sleep(SAMPLE_S)
        final = _downlink(net)
        metrics = net.metrics()
        tally = net.tally()
        made, arrived = len(tally.made_inet), tally.down()
    assert final is not None and samples, "no bridge status"
    log = (tmp_path / "demo" / "gateway.log").read_text()
    shed_lines = [line for line in log.splitlines() if "downlink_shed " in line]
    refused = final["refused_by_reason"]
    print(
        f"\nsimulated {SIM_HOUR_S / 60:.0f} min at {SPEED:g}x: internet tx made {made}, "
        f"reached the mesh {arrived}; objects offered {final['objects_offered']}, "
        f"refused {final['refused']} {refused}, frames sent {final['sent']}, "
        f"shaper dropped {final['shaper_dropped']}; {len(shed_lines)} downlink_shed lines"
    )
    # The air could not carry it all: refused before any INV, counted, and said.
    assert refused.get("budget", 0) > 0, final
    shed_metric = metrics.get('loragate_relay_dropped_total{reason="mesh_downlink_shed_budget"}')
    assert shed_metric == refused["budget"]
    assert shed_lines and all(" WARNING loragate.events: downlink_shed " in x for x in shed_lines)
    assert all(re.search(r" refused=\d+ ", x) for x in shed_lines)
    # ... and nothing stalled silently: in the second half objects were offered or
    # refused (counted, and said in a line), and some reached the mesh.
    half = [d for t, d in samples if t >= SIM_HOUR_S / 2]
    assert half, samples
    moved = final["objects_offered"] - half[0]["objects_offered"]
    said = final["refused"] - half[0]["refused"]
    print(f"second half: {moved} objects offered, {said} refused")
    assert moved > 0 or (said > 0 and len(shed_lines) >= 2), (half[0], final)
    assert arrived > 0
