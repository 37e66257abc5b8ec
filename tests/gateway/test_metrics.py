"""Prometheus metrics: scraped over real loopback HTTP and parsed as the text format."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loragate.events import EventBus, EventKind
from loragate.metrics import MAX_LABEL_VALUES, OTHER, GatewayMetrics


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def metrics():
    m = GatewayMetrics(version="9.9.9")
    yield m
    m.stop_http()


async def test_scrape_over_http(metrics: GatewayMetrics) -> None:
    m = metrics
    port = m.start_http("127.0.0.1", 0)
    m.peer_connected("full", "out")
    m.peer_connected("full", "out")
    m.peer_connected("mesh", "mesh")
    m.peer_disconnected("full", "out")
    m.set_addrman(1200, 80)
    m.set_bans(3)
    m.misbehaviour("bad_tag", 20)
    m.misbehaviour("bad_tag", 20)
    m.misbehaviour("replay", 10)
    for _ in range(5):
        m.frame_in(100)
    m.frame_out(40)
    m.relayed("tx", 4)
    m.relayed("block")
    m.relayed("inv", 10)
    m.dropped("rate_limit", 2)
    m.dropped("queue_full")
    m.handshake_failed("timeout")
    m.set_airtime("/dev/ttyUSB0", 1234.5, 36000)
    m.set_bridge("/dev/ttyUSB0", True)
    m.refused("banned")
    bus = EventBus()
    detach = m.attach(bus)
    bus.emit(EventKind.CONNECTED, peer="x")
    bus.emit(EventKind.CONNECTED, peer="y")
    bus.emit(EventKind.BANNED, target="z")
    detach()
    bus.emit(EventKind.BANNED, target="not counted")

    got = await asyncio.to_thread(scrape, port)

    def v(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    assert v("loragate_peers_connected", kind="full", direction="out") == 1
    assert v("loragate_peers_connected", kind="mesh", direction="mesh") == 1
    assert v("loragate_addrman_addresses", table="new") == 1200
    assert v("loragate_addrman_addresses", table="tried") == 80
    assert v("loragate_bans_active") == 3
    assert v("loragate_misbehaviour_total", type="bad_tag") == 2
    assert v("loragate_misbehaviour_points_total", type="bad_tag") == 40
    assert v("loragate_misbehaviour_points_total", type="replay") == 10
    assert v("loragate_frames_total", direction="in") == 5
    assert v("loragate_frame_bytes_total", direction="in") == 500
    assert v("loragate_frames_total", direction="out") == 1
    assert v("loragate_relayed_total", kind="tx") == 4
    assert v("loragate_relayed_total", kind="inv") == 10
    assert v("loragate_relay_dropped_total", reason="rate_limit") == 2
    assert v("loragate_handshake_failures_total", reason="timeout") == 1
    assert v("loragate_events_total", kind="connected") == 2
    assert v("loragate_events_total", kind="banned") == 1
    assert v("loragate_bridge_airtime_used_seconds", port="/dev/ttyUSB0") == 1.2345
    assert v("loragate_bridge_airtime_budget_seconds", port="/dev/ttyUSB0") == 36
    assert v("loragate_bridge_up", port="/dev/ttyUSB0") == 1
    assert v("loragate_connections_refused_total", reason="banned") == 1
    assert v("loragate_connections_refused_total", reason="rate") == 0  # known up front
    assert v("loragate_build_info", version="9.9.9") == 1
    assert v("loragate_start_time_seconds") > 1.7e9

    m.set_peers({("light", "in"): 4})
    got = await asyncio.to_thread(scrape, port)
    assert v("loragate_peers_connected", kind="light", direction="in") == 4
    # no stale series: a pair no peer has any more is gone, not 0 forever
    assert ("loragate_peers_connected", (("direction", "out"), ("kind", "full"))) not in got
    assert ("loragate_peers_connected", (("direction", "mesh"), ("kind", "mesh"))) not in got


async def test_two_gateways_in_one_process_do_not_collide() -> None:
    a, b = GatewayMetrics(), GatewayMetrics()
    try:
        pa, pb = a.start_http("127.0.0.1", 0), b.start_http("127.0.0.1", 0)
        assert pa != pb
        a.relayed("tx", 7)
        b.relayed("tx", 2)
        ga, gb = await asyncio.gather(asyncio.to_thread(scrape, pa), asyncio.to_thread(scrape, pb))
        key = ("loragate_relayed_total", (("kind", "tx"),))
        assert (ga[key], gb[key]) == (7, 2)
    finally:
        a.stop_http()
        b.stop_http()


def test_label_values_are_bounded(metrics: GatewayMetrics) -> None:
    for i in range(MAX_LABEL_VALUES + 50):
        metrics.dropped(f"reason-{i}")
    samples = [
        s for fam in metrics.relay_drops.collect() for s in fam.samples if s.name.endswith("_total")
    ]
    assert len(samples) == MAX_LABEL_VALUES + 1
    other = [s for s in samples if s.labels["reason"] == OTHER]
    assert other[0].value == 50


def test_http_server_stops(metrics: GatewayMetrics) -> None:
    port = metrics.start_http("127.0.0.1", 0)
    with pytest.raises(RuntimeError):
        metrics.start_http("127.0.0.1", 0)
    metrics.stop_http()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


async def test_a_live_gateway_counts_refusals_and_failed_handshakes(tmp_path) -> None:  # noqa: ANN001
    # issue 13: a banned peer refused dozens of times left these counters with no sample.
    # A real manager on loopback, scraped over HTTP: a banned address dials three times,
    # another sends a frame that is not a HELLO.
    from peerkit import start_node, stop_node, wait_until

    from loragate.bans import net_target

    m = GatewayMetrics()
    g = await start_node(tmp_path, "127.71.0.1", metrics=m)
    port = m.start_http("127.0.0.1", 0)
    try:
        g.banman.ban(net_target("127.72.0.1"), duration_s=600, reason="test")
        for n in range(1, 4):
            _, w = await asyncio.open_connection(*g.listen_addr, local_addr=("127.72.0.1", 0))
            await wait_until(lambda n=n: g.stats["refused_banned"] == n)
            w.close()
        _, w = await asyncio.open_connection(*g.listen_addr, local_addr=("127.73.0.1", 0))
        w.write(b"\x00\x00\x00\x20" + b"\x11" * 32)
        await w.drain()
        await wait_until(lambda: g.stats["inbound_handshake_failures"] == 1)
        w.close()
        got = await asyncio.to_thread(scrape, port)
    finally:
        m.stop_http()
        await stop_node(g)
    refused = got[("loragate_connections_refused_total", (("reason", "banned"),))]
    assert refused == 3
    failures = {
        labels: v
        for (name, labels), v in got.items()
        if name == "loragate_handshake_failures_total"
    }
    assert sum(failures.values()) == 1, failures
