"""`promtool check metrics` (Prometheus' own linter) on a live gateway's /metrics.

Two `loragate run` processes on loopback: the one under test has metrics on, a bridge
serial port that no board answers (so the bridge's series are there, down) and a peer
that dials it (so the peer gauges, events and frames have samples); the other one
misbehaves by nothing but existing. The text served is handed to promtool as Prometheus
would scrape it. Without promtool the test skips in one line saying what to install
(CI installs Debian's `prometheus` package, .ci/run).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

LORAGATE = str(Path(sys.executable).with_name("loragate"))
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: install it (Debian: apt-get install prometheus) to lint /metrics",
)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _status(data: Path) -> dict:
    p = subprocess.run(
        [LORAGATE, "status", "--json", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return json.loads(p.stdout) if p.returncode == 0 else {}


@pytest.mark.slow
def test_promtool_accepts_a_live_gateways_metrics(tmp_path: Path) -> None:
    host = "127.66.0.1"
    port, mport = _free_port(host), _free_port(host)
    key = tmp_path / "network.key"
    key.write_text(hashlib.sha256(b"promtool mesh").hexdigest() + "\n")
    env = {k: v for k, v in os.environ.items() if k != "LORAGATE_DATA_DIR"}
    gw = [LORAGATE, "run", "--data-dir", str(tmp_path / "gw"), "--listen-host", host,
          "--listen-port", str(port), "--metrics-host", host, "--metrics-port", str(mport),
          "--serial-port", str(tmp_path / "ttyUSB-unplugged"), "--network-key-file", str(key),
          "--log-level", "warning", "--ping-interval-s", "1"]  # fmt: skip
    peer = [LORAGATE, "run", "--data-dir", str(tmp_path / "peer"), "--listen-host",
            "127.66.0.2", "--listen-port", "0", "--connect", f"{host}:{port}",
            "--log-level", "warning"]  # fmt: skip
    procs = [subprocess.Popen(gw, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)]
    try:
        deadline = time.monotonic() + 30
        while not _status(tmp_path / "gw"):
            assert procs[0].poll() is None, procs[0].communicate()[1]
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
        procs.append(
            subprocess.Popen(peer, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        )
        while _status(tmp_path / "gw").get("peers_total", 0) < 1:
            assert time.monotonic() < deadline, "the peer did not connect"
            time.sleep(0.2)
        url = f"http://{host}:{mport}/metrics"
        gauge = re.compile(r'^loragate_peers_connected{direction="in",kind="\w+"} 1.0$', re.M)
        while True:  # a maintenance pass sets the gauges
            with urllib.request.urlopen(url, timeout=5) as resp:
                text = resp.read().decode()
            if gauge.search(text):
                break
            assert time.monotonic() < deadline + 30, text
            time.sleep(0.5)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    assert 'loragate_bridge_up{port="' in text and "loragate_connections_refused_total" in text
    checked = subprocess.run(
        [str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    print(f"promtool check metrics: exit {checked.returncode}, {len(text.splitlines())} lines")
