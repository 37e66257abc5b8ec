"""The running and the stopped gateway's views agree: same settings, same scores.

A real `loragate run` process (its config sets non-default score weights and half-life)
dials a real peer on loopback; `loragate peers --json` is read while it runs (control
socket, `liveview.RunningGatewayView`) and again after SIGTERM (the database,
`view.StoppedGatewayView`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from peerkit import endpoint

from loragate.addrman import load_addrman, save_addrman
from loragate.config import GatewayConfig, ScoreSettings
from loragate.scoring import DEFAULT_WEIGHTS, PeerScore, node_key, weights_from
from loragate.store import Store
from loragate.view import StoppedGatewayView
from tools import procs

LORAGATE = str(Path(sys.executable).with_name("loragate"))
CONFIG = """
listen_host = "127.172.0.1"
listen_port = 0
outbound_target = 0
connect = ["{peer}"]

[score]
reliability_weight = 1.0
performance_weight = 0.0
behaviour_weight = 0.0
half_life_s = 7200.0
"""


async def loragate(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LORAGATE_DATA_DIR"}
    proc = await asyncio.create_subprocess_exec(
        LORAGATE,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        **procs.child_options(new_session=False),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def row_of(peers: list[dict[str, Any]], node_id: bytes) -> dict[str, Any] | None:
    return next((p for p in peers if p["node_id"] == node_id.hex()), None)


async def test_peers_shows_the_same_scores_running_and_stopped(tmp_path: Path, gateways) -> None:
    peer = await gateways("127.171.0.1", outbound_target=0)
    data, conf = tmp_path / "gw", tmp_path / "gw.toml"
    conf.write_text(CONFIG.format(peer=endpoint(peer)))
    args = ("--config", str(conf), "--data-dir", str(data))
    gw = await asyncio.create_subprocess_exec(
        LORAGATE,
        "run",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        **procs.child_options(new_session=False),
    )
    try:
        running = None
        deadline = time.monotonic() + 30
        while running is None or running["state"] != "connected":
            assert time.monotonic() < deadline, "the gateway never showed its peer"
            await asyncio.sleep(0.2)
            code, out, err = await loragate("peers", "--json", *args)
            if code == 0 and "stopped" not in err:
                running = row_of(json.loads(out), peer.identity.id)
        assert running["score"] is not None
    finally:
        gw.send_signal(signal.SIGTERM)
        _, gw_err = await asyncio.wait_for(gw.communicate(), 30)
    assert gw.returncode == 0, gw_err.decode()
    code, out, err = await loragate("peers", "--json", *args)
    assert code == 0 and "gateway stopped" in err, err
    stopped = row_of(json.loads(out), peer.identity.id)
    assert stopped is not None and stopped["state"] == "tried"
    assert stopped["score"] == running["score"]
    # The configured weights made that number: the method's defaults give another.
    store = Store(data / "loragate.sqlite3")
    try:
        kept = store.load_peer_stats()[node_key(peer.identity.id)]
    finally:
        store.close()
    assert round(PeerScore.from_dict(kept, DEFAULT_WEIGHTS).score(), 1) != stopped["score"]


def test_stopped_view_scores_with_the_configured_half_life(tmp_path: Path) -> None:
    now = time.time()
    node = bytes.fromhex("0102030405060708")
    cfg = GatewayConfig(data_dir=tmp_path, score=ScoreSettings(half_life_s=600.0))
    store = Store(cfg.db_path)
    try:
        book = load_addrman(store)
        book.add(("127.5.0.1", 8333), None, node_id=node, now=now - 7200)
        save_addrman(book, store)
        score = PeerScore(now=now - 3600)  # evidence an hour old: six half-lives of 600 s
        for _ in range(5):
            score.handshake(False, now=now - 3600)
        store.queue_peer_stats(node_key(node), score.to_dict(), now - 3600)
        store.flush()
    finally:
        store.close()
    [row] = asyncio.run(StoppedGatewayView(cfg).peers())
    data = score.to_dict()
    want = round(PeerScore.from_dict(data, weights_from(cfg.score)).score(), 1)
    with_defaults = round(PeerScore.from_dict(data, DEFAULT_WEIGHTS).score(), 1)
    assert row["score"] == want and want != with_defaults
