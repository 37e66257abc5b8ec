"""End to end, all real: the mesh <-> bridge <-> gateway <-> internet (issue 6, Done when).

One `tools.demo.network.Network`: the meshsim medium, 8 unix-port
MicroPython mesh nodes, the bridge node (unix port) on a real pty cable, `loragate run`
with `--serial-port`, internet peers on 127.x loopback over TCP, a misbehaving internet
peer and a misbehaving mesh node. One test runs the steps in order (they share the
network, whose start costs seconds): the destructive ones (gateway SIGKILL, pty unplug)
come last.

Topology (tools/demo/network.py LINKS): n0, n1 and `bad` hear the bridge; n2 and n3 are
two radio hops from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.demo.network import Network

pytestmark = [pytest.mark.slow, pytest.mark.upy]

SPEED = 10.0
TWO_HOPS = ("n2", "n3")
ATTEMPTS = 3
ATTEMPT_S = 15.0


def wait_for(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(step)


def retry(send: Callable[[int], Any], arrived: Callable[[], Any], what: str) -> Any:
    """`send(attempt)` up to ATTEMPTS times, each followed by a wait for `arrived()`.
    LoRa has no carrier sense: a broadcast may collide, so a wallet sends again."""
    for attempt in range(ATTEMPTS):
        send(attempt)
        try:
            return wait_for(arrived, ATTEMPT_S, what)
        except AssertionError:
            if attempt == ATTEMPTS - 1:
                raise
    return None


def peer2_connected(net: Network) -> bool:
    return any((p.get("address") or "").startswith("127.12.0.1") for p in net.query("peers") or [])


@contextlib.contextmanager
def running_network(workdir: Path) -> Iterator[Network]:
    network = Network(workdir, nodes=8, speed=SPEED, seed=1, badnode_every=1.0)
    network.start()
    try:
        ok = network.mesh.wait_until(lambda m: m.converged(), 60)
        assert ok, "the mesh did not converge"
        yield network
    finally:
        network.stop()
        for pid in network.pids():
            assert not _alive(pid), f"process {pid} survived stop()"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _node_index(net: Network, name: str) -> int:
    return net.mesh.names.index(name)


def _know_gateway(net: Network, gw: str | None) -> set[str]:
    """Mesh nodes whose peer table holds the gateway's verified record."""
    net.mesh.request_status(wait=2.0)
    return {n.name for n in net.mesh.nodes if gw and gw in n.known_ids()}


def _wait_know_gateway(net: Network, timeout: float) -> bool:
    gw = (net.query("status") or {}).get("node_id")
    try:
        wait_for(lambda: _know_gateway(net, gw) & set(TWO_HOPS), timeout, "mesh knows gateway")
    except AssertionError:
        return False
    return True


def _ban_targets(net: Network) -> set[str]:
    return {b["target"] for b in net.query("bans") or []}


def _mesh_banned_at_gateway(net: Network) -> float:
    return net.metrics().get('loragate_relay_dropped_total{reason="mesh_banned"}', 0.0)


def _bridge_banned_drops(net: Network) -> int:
    st = net.refresh_bridge(wait=3.0) or {}
    return int((st.get("counters") or {}).get("dropped_banned", 0))


def assert_bad_node_silenced_at_the_bridge(net: Network, when: str) -> None:
    """While the bad node keeps sending, the bridge's `dropped_banned` rises and the
    gateway sees none of its frames (its `mesh_banned` drop counter does not move)."""
    assert net.badnode is not None
    assert net.metrics(), f"the gateway's metrics endpoint answers ({when})"
    b1, g1 = _bridge_banned_drops(net), _mesh_banned_at_gateway(net)

    def sent() -> int:
        assert net.badnode is not None
        with net.badnode.cond:
            return sum(1 for ln in net.badnode.lines if "garbage #" in ln)

    s1 = sent()
    wait_for(lambda: sent() >= s1 + 3, 20, f"the bad node keeps sending ({when})")
    assert _bridge_banned_drops(net) > b1, f"the bridge drops the bad node's frames ({when})"
    assert _mesh_banned_at_gateway(net) == g1, f"no frame of it reaches the gateway ({when})"


def step_a_transaction_made_on_the_mesh_reaches_an_internet_peer(net: Network) -> None:
    wait_for(lambda: peer2_connected(net), 30, "peer2 connected to the gateway")
    raw = os.urandom(40)
    h = hashlib.sha256(raw).hexdigest()
    # n3 is two radio hops from the bridge: n1 relays, the bridge forwards up the UART,
    # the gateway's relay offers it (INV) to its TCP peers, and peer2 fetches it.
    retry(
        lambda _: net.make_mesh_tx(_node_index(net, "n3"), raw),
        lambda: h in net.tally().got_inet,
        "mesh tx at peer2",
    )
    assert net.tally().made_mesh[h] == "n3"


def step_a_transaction_from_the_internet_reaches_a_node_two_hops_away(net: Network) -> None:
    wait_for(lambda: peer2_connected(net), 30, "peer2 connected to the gateway")
    raws = [os.urandom(40) for _ in range(ATTEMPTS)]
    hashes = [hashlib.sha256(r).hexdigest() for r in raws]

    def arrived() -> set[str]:
        got = net.tally().got_mesh
        return set().union(*(got.get(h, set()) for h in hashes)) & set(TWO_HOPS)

    # The gateway offers it by INV; n2/n3 ask with GETDATA through n0/n1; the answer is
    # broadcast with a hop limit of the asker's distance. That needs the mesh to hold the
    # gateway's record (its ANNOUNCE, spread by relays and peer exchange).
    # A lost first ANNOUNCE is repaired: the gateway announces again when a mesh node it
    # never heard of appears, at most once a minute (wall clock).
    assert _wait_know_gateway(net, 80), "the mesh never learned the gateway's record"
    retry(lambda i: net.make_peer_tx(raws[i]), arrived, "internet tx two hops away")
    made = net.tally().made_inet
    assert any(h in made for h in hashes)


def step_the_bad_mesh_node_is_banned_and_then_silenced_at_the_bridge(net: Network) -> None:
    assert net.badnode_id is not None and net.badnode is not None
    target = f"node:{net.badnode_id}"
    wait_for(lambda: target in _ban_targets(net), 40, "ban of the bad mesh node")
    ban = next(b for b in net.query("bans") if b["target"] == target)
    assert "malformed" in ban["reason"]
    assert ban["evidence"], "the ban keeps its evidence"
    # The ban is pushed to the bridge, which drops the node's frames at the radio. Give
    # the push a moment, then: the bridge's counter rises while the node keeps sending,
    # and the gateway no longer sees any frame of it (not even to drop it as banned).
    time.sleep(3)
    assert_bad_node_silenced_at_the_bridge(net, "after the ban")
    evidence_now = next(b for b in net.query("bans") if b["target"] == target)["evidence"]
    assert len(evidence_now) == len(ban["evidence"])


def step_the_bad_internet_peer_is_banned(net: Network) -> None:
    wait_for(lambda: "127.13.0.1" in _ban_targets(net), 30, "ban of the bad internet peer")


def step_killing_the_gateway_loses_no_ban_and_the_link_recovers(net: Network) -> None:
    before = _ban_targets(net)
    assert f"node:{net.badnode_id}" in before and "127.13.0.1" in before
    net.kill_gateway()  # SIGKILL: no goodbye, no flush beyond what was already stored
    net.start_gateway()
    assert before <= _ban_targets(net)
    # The bridge answers the new gateway's HELLO with radio stats: the link is back.
    wait_for(lambda: (net.query("status") or {}).get("airtime"), 30, "bridge stats after restart")
    wait_for(lambda: peer2_connected(net), 40, "peer2 reconnected")
    raw = os.urandom(40)
    h = hashlib.sha256(raw).hexdigest()
    retry(
        lambda _: net.make_mesh_tx(_node_index(net, "n0"), raw),
        lambda: h in net.tally().got_inet,
        "mesh tx at peer2 after the gateway restart",
    )


def step_unplugging_and_replugging_the_pty_recovers_the_link(net: Network) -> None:
    assert net.cable is not None
    net.cable.unplug()
    time.sleep(3)
    net.cable.replug()
    raw = os.urandom(40)
    h = hashlib.sha256(raw).hexdigest()
    retry(
        lambda _: net.make_mesh_tx(_node_index(net, "n1"), raw),
        lambda: h in net.tally().got_inet,
        "mesh tx at peer2 after the replug",
    )
    assert f"node:{net.badnode_id}" in _ban_targets(net)
    # After the gateway's SIGKILL and restart and the unplug/replug, the ban still holds
    # at the bridge radio.
    assert_bad_node_silenced_at_the_bridge(net, "after the gateway restart and the replug")


def test_mesh_bridge_gateway_and_internet_end_to_end(tmp_path: Path) -> None:
    """The steps in order on one network (later steps kill the gateway, pull the cable)."""
    with running_network(tmp_path / "net") as net:
        step_a_transaction_made_on_the_mesh_reaches_an_internet_peer(net)
        step_a_transaction_from_the_internet_reaches_a_node_two_hops_away(net)
        step_the_bad_mesh_node_is_banned_and_then_silenced_at_the_bridge(net)
        step_the_bad_internet_peer_is_banned(net)
        step_killing_the_gateway_loses_no_ban_and_the_link_recovers(net)
        step_unplugging_and_replugging_the_pty_recovers_the_link(net)
