"""port.send_upstream: application traffic for the internet goes to the best gateway.

In process (CPython): which gateway is chosen and how the unicast is tagged and scoped;
the broadcast fallback without a gateway. Through the real meshsim medium with unix-port
nodes running the demo application (tools/demo/upy_app.py, stdin `up <hex>`): on a line
n0 - n1 - n2 where n2's record is of kind gateway, n0's upstream TX reaches n2's
application as a unicast addressed to n2 (n2 acknowledges it, n1 only relays it); with
no gateway the same command falls back to a broadcast and is counted.
"""

from __future__ import annotations

import os
import time
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from nodekit import CFG, NoRadio, counts, with_opts

from loranode.app import RecordingApp
from loranode.node import Node
from lorawire import auth, record
from lorawire import frame as fr
from lorawire import messages as msg
from lorawire.identity import Identity
from tools.meshsim.launcher import Mesh, NodeProc, micropython_binary

ROOT = Path(__file__).resolve().parents[2]

APP = ROOT / "tools" / "demo" / "upy_app.py"
KEY = bytes.fromhex(CFG["network_key"])
TX = {0: b"\x05" * 30}


def _node(tmp_path: Path, name: str, seed: int, kind: str = "mesh") -> Node:
    d = tmp_path / name
    d.mkdir()
    opts = {"state_dir": str(d), "stdin": False, "status_interval_s": 0, "kind": kind}
    node = Node(with_opts(CFG, opts), Identity(bytes([seed]) * 32), NoRadio(), RecordingApp())
    node.app.attach(node.port)
    return node


def _hear_announce(node: Node, who: Identity, kind: int, hop_count: int, seq: int = 1) -> None:
    rec = record.encode_record({"seq": 1, "kind": kind, "mesh": (0, 7)}, who)
    f = fr.Frame(msg.ANNOUNCE, who.id, seq, hop_limit=3, hop_count=hop_count)
    node.handle_frame(auth.seal_frame(f, rec, KEY), -80, 8)
    assert node.peers.find(who.id) >= 0


def _own_data(node: Node, msg_type: int) -> bytes:
    """The node's next queued frame of msg_type (others' relays skipped)."""
    while True:
        data = node.txq.pop_ready()
        assert data is not None, "no such frame queued"
        if fr.peek_source(data) == node.id and data[1] == msg_type:
            return data


def _own(node: Node, msg_type: int) -> fr.Frame:
    return fr.decode(_own_data(node, msg_type))


def test_upstream_to_a_direct_gateway_is_a_link_tagged_unicast(tmp_path: Path) -> None:
    a = _node(tmp_path, "a", 1)
    gw = _node(tmp_path, "g", 2, kind="gateway")
    for x, y in ((a, gw), (gw, a)):  # each hears the other's announce: verified neighbours
        x.announce(x.clock.now())
        y.handle_frame(_own_data(x, msg.ANNOUNCE), -70, 9)
    assert a.port.best_gateway() == gw.id
    assert a.port.send_upstream(msg.TX, TX)
    f = _own(a, msg.TX)
    assert f.dest == gw.id and f.flags & fr.FLAG_LINK and f.hop_limit == 0
    assert (counts(a)["upstream_tx"], counts(a)["upstream_no_gateway"], counts(a)["app_tx"]) == (
        1,
        0,
        1,
    )


def test_upstream_prefers_the_nearest_gateway_and_scopes_a_far_one(tmp_path: Path) -> None:
    a = _node(tmp_path, "a", 1)
    far = Identity(bytes([3]) * 32)
    near = Identity(bytes([4]) * 32)
    mesh = Identity(bytes([5]) * 32)
    _hear_announce(a, mesh, record.KIND_MESH, 0)  # a direct neighbour, not a gateway
    _hear_announce(a, far, record.KIND_GATEWAY, 1)  # relayed once: one hop away
    assert a.port.best_gateway() == far.id
    assert a.port.send_upstream(msg.TX, TX)
    f = _own(a, msg.TX)
    # network tag, scoped to the gateway's distance (+1) so relays forward it that far only
    assert f.dest == far.id and not f.flags & fr.FLAG_LINK and f.hop_limit == 2
    _hear_announce(a, near, record.KIND_GATEWAY, 0, seq=2)
    assert a.port.best_gateway() == near.id  # fewer hops wins
    assert a.port.send_upstream(msg.TX, TX)
    assert _own(a, msg.TX).dest == near.id
    assert (counts(a)["upstream_tx"], counts(a)["upstream_no_gateway"]) == (2, 0)


def test_upstream_without_a_gateway_falls_back_to_a_broadcast(tmp_path: Path) -> None:
    a = _node(tmp_path, "a", 1)
    _hear_announce(a, Identity(bytes([5]) * 32), record.KIND_MESH, 0)
    assert a.port.best_gateway() is None
    assert a.port.send_upstream(msg.TX, TX)
    f = _own(a, msg.TX)
    assert f.dest is None and f.hop_limit == a.hop_limit
    assert (counts(a)["upstream_tx"], counts(a)["upstream_no_gateway"]) == (1, 1)
    # a refused message counts as nothing
    assert not a.port.send_upstream(msg.TX, {0: "not bytes"})
    assert not a.port.send_upstream(msg.PING, {0: 1})
    assert (counts(a)["upstream_tx"], counts(a)["upstream_no_gateway"], counts(a)["app_tx"]) == (
        1,
        1,
        1,
    )


# ------------------------------------------------------------------- through meshsim


class AppMesh(Mesh):
    """Nodes run the demo application; those named in `gateways` announce kind gateway."""

    def __init__(self, *args: Any, gateways: tuple[str, ...] = (), **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.gateways = gateways

    def config_for(self, node: NodeProc) -> dict[str, Any]:
        raw = super().config_for(node)
        if node.name in self.gateways:
            raw["node"]["kind"] = "gateway"
        return raw

    def node_argv(self, node: NodeProc) -> list[str]:
        return [micropython_binary(), "-X", f"heapsize={self.heap}", str(APP), "config.json"]


def _has_line(node: NodeProc, text: str) -> bool:
    with node.cond:
        return any(line == text for line in node.lines)


def _counters(mesh: Mesh) -> list[dict[str, int]]:
    return [(s or {}).get("counters", {}) for s in mesh.request_status()]


def _send_up_until(mesh: Mesh, receiver: int, gateway: str, pred: Any) -> str:
    """n0 sends `up` with fresh bytes until `receiver` prints the object and `pred(counters)`
    holds (a frame can be lost to half-duplex or a collision); the object's hash."""
    src = mesh.ids()[0]
    for attempt in range(8):
        raw = os.urandom(20) + bytes([attempt])
        h = sha256(raw).hexdigest()
        assert mesh.nodes[0].send("up " + raw.hex())
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            if _has_line(mesh.nodes[0], f"TXUP {h} {gateway} queued"):
                if _has_line(mesh.nodes[receiver], f"OBJ tx {h} {src}") and pred(_counters(mesh)):
                    return h
            time.sleep(0.2)
    raise AssertionError("upstream never arrived:\n" + mesh.tail(mesh.nodes[receiver].name))


@pytest.mark.upy
@pytest.mark.slow
def test_upstream_reaches_the_gateway_as_a_unicast_through_a_relay(tmp_path: Path) -> None:
    with AppMesh(3, "line", tmp_path, speed=10.0, announce_min_s=30, gateways=("n2",)) as mesh:
        ids = mesh.ids()
        assert mesh.wait_until(
            lambda m: m.converged() and (m.nodes[0].status or {}).get("gateway") == ids[2],
            timeout=40,
        ), mesh.knowledge()
        # n0 and n2 do not hear each other: n1 must relay, and n2 answers with an ACK,
        # which it sends only for a unicast addressed to itself
        _send_up_until(mesh, 2, ids[2], lambda c: c[0]["ack_rx"] >= 1)
        c = _counters(mesh)
        assert c[0]["upstream_tx"] >= 1 and c[0]["upstream_no_gateway"] == 0
        assert c[2]["app_rx"] >= 1
        assert c[1]["relayed"] >= 1
        assert c[1]["app_rx"] == 0  # the relay's application never saw it: not a broadcast
        assert not any(line.startswith("OBJ tx") for line in mesh.nodes[1].lines)


@pytest.mark.upy
@pytest.mark.slow
def test_upstream_without_gateway_is_broadcast_and_counted(tmp_path: Path) -> None:
    with AppMesh(2, "line", tmp_path, speed=10.0, announce_min_s=30) as mesh:
        assert mesh.wait_until(lambda m: m.converged(), timeout=30), mesh.knowledge()
        assert (mesh.nodes[0].status or {}).get("gateway") is None
        _send_up_until(mesh, 1, "none", lambda c: c[0]["upstream_no_gateway"] >= 1)
        c = _counters(mesh)
        assert c[0]["upstream_tx"] == c[0]["upstream_no_gateway"] >= 1
        assert c[0]["ack_rx"] == 0  # a broadcast is not acknowledged
        assert c[1]["app_rx"] >= 1
