"""The peer manager (loranode.node) as real unix-port processes on the real meshsim medium.

Scenarios: nodes discover each other; a source that sends attributable garbage is
banned and its frames are then dropped before any signature check (the node's
`sig_checks` counter proves it); the ban list survives a restart (even a SIGKILL).
The attacker is CPython using the firmware's own SimRadio. Plus in-process checks of
the receive path, the announce scheduler and the option schema on CPython and the
unix port.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nodekit import config as node_config
from nodekit import counts, upy_prelude, with_opts

from loranode.announce import AnnounceScheduler
from loranode.node import Node
from loranode.pex import HOPS_UNKNOWN
from loranode.radio_sim import SimRadio
from lorawire import auth, record
from lorawire import frame as fr
from lorawire import messages as msg
from lorawire.identity import Identity
from tools.meshsim.launcher import Mesh
from tools.meshsim.topology import from_dict
from upy import run_upy

FREQ = 868_100_000
PAIR = {"links": [["n0", "zz", {"rssi": -80, "snr": 10}]]}


class Attacker:
    """A CPython station on the medium with its own identity (name "zz")."""

    def __init__(self, port: int, network_key: bytes) -> None:
        self.ident = Identity.generate()
        self.key = network_key
        self.radio = SimRadio(self.ident.id, "zz", "127.0.0.1", port)
        self.radio.configure(FREQ, 7, 125000, 5, 14)
        self.seq = int.from_bytes(os.urandom(2), "big") & 0x7FFF
        self.rseq = 0

    def next_frame_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq

    def announce(self) -> None:
        self.rseq += 1
        rec = record.encode_record(
            {"seq": self.rseq, "kind": record.KIND_MESH, "services": 0, "mesh": (0, 7)},
            self.ident,
        )
        f = fr.Frame(msg.ANNOUNCE, self.ident.id, self.next_frame_seq(), hop_limit=0)
        self.radio.send(auth.seal_frame(f, rec, self.key))

    def malformed_link_frame(self, node_id: bytes, node_public: bytes) -> None:
        """A TX whose body is not msgpack, under a valid pairwise link tag: provably ours."""
        lk = auth.link_key(self.ident.x_secret(), self.ident.id, node_public)
        f = fr.Frame(
            msg.TX, self.ident.id, self.next_frame_seq(), node_id, fr.FLAG_LINK, hop_limit=0
        )
        self.radio.send(fr.encode(f, b"\xc1", lambda region: auth.tag(lk, region)))

    def close(self) -> None:
        self.radio.close()


def _status(mesh: Mesh, i: int = 0) -> dict[str, Any]:
    mesh.request_status()
    s = mesh.nodes[i].status
    assert s is not None, mesh.tail(mesh.nodes[i].name)
    return s


def _repeat_until(mesh: Mesh, action: Any, pred: Any, tries: int = 8) -> dict[str, Any]:
    """Do `action` until `pred(status)` holds (a frame can be lost to half-duplex)."""
    for _ in range(tries):
        action()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            s = _status(mesh)
            if pred(s):
                return s
            time.sleep(0.1)
    raise AssertionError(f"condition never held; last status counters: {s['counters']}")


def _node_public(mesh: Mesh) -> bytes:
    seed = (mesh.nodes[0].dir / "key.bin").read_bytes()
    return Identity(seed).public


def _ban_attacker(mesh: Mesh, atk: Attacker) -> dict[str, Any]:
    node_id = bytes.fromhex(mesh.nodes[0].node_id or "")
    aid = atk.ident.id.hex()
    before = _status(mesh)["counters"]["sig_checks"]
    s = _repeat_until(mesh, atk.announce, lambda s: aid in {p[0] for p in s["peers"]})
    # control: a fresh record from an unbanned source does cost a signature check
    assert s["counters"]["sig_checks"] > before
    public = _node_public(mesh)
    s = _repeat_until(
        mesh,
        lambda: atk.malformed_link_frame(node_id, public),
        lambda s: any(b[0] == aid for b in s["bans"]),
        tries=12,
    )
    assert s["counters"]["drop_attributed"] >= 4  # 25 points each, ban at 100
    ban = next(b for b in s["bans"] if b[0] == aid)
    assert ban[1] > 0 and ban[3] == "malformed_frame"
    assert aid not in {p[0] for p in s["peers"]}  # a banned peer leaves the table
    return s


@contextlib.contextmanager
def attacked_mesh(tmp_path: Path, nodes: int, links: dict[str, Any]) -> Iterator[Any]:
    """`nodes` unix-port nodes and a CPython attacker "zz" on the medium, per `links`."""
    mesh = Mesh(nodes, from_dict(links), tmp_path, speed=10.0, announce_min_s=30)
    mesh.start()
    atk = Attacker(mesh.port, bytes.fromhex(mesh.network_key))
    try:
        yield mesh, atk
    finally:
        atk.close()
        mesh.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Any:
    with attacked_mesh(tmp_path, 1, PAIR) as mesh_and_attacker:
        yield mesh_and_attacker


@pytest.mark.upy
@pytest.mark.slow
def test_three_nodes_discover_each_other(tmp_path: Path) -> None:
    with Mesh(3, "line", tmp_path, speed=10.0) as mesh:
        assert mesh.wait_until(lambda m: m.converged(), timeout=30), mesh.knowledge()
        ids = mesh.ids()
        by_id = [{p[0]: p for p in (n.status or {})["peers"]} for n in mesh.nodes]
        # n1 sits in the middle: it hears both ends directly
        assert by_id[1][ids[0]][4] == 0 and by_id[1][ids[2]][4] == 0
        # the ends hear each other only through n1: a relayed announce (1) or PEX (255)
        assert by_id[0][ids[2]][4] in (1, HOPS_UNKNOWN)
        assert by_id[0][ids[1]][4] == 0
        for n in mesh.nodes:
            s = n.status or {}
            assert s["counters"]["sig_checks"] >= 2
            assert s["airtime"]["used_ms"] <= s["airtime"]["budget_ms"]
            assert s["heap"]["free"] > 0


@pytest.mark.upy
@pytest.mark.slow
def test_banned_source_is_dropped_before_signature_checks(pair: Any) -> None:
    mesh, atk = pair
    s = _ban_attacker(mesh, atk)
    sig_before = s["counters"]["sig_checks"]
    banned_before = s["counters"]["dropped_banned"]
    # a fresh, validly signed record (seq 2) would cost a verification if it got in
    s = _repeat_until(
        mesh, atk.announce, lambda s: s["counters"]["dropped_banned"] >= banned_before + 2
    )
    assert s["counters"]["sig_checks"] == sig_before
    assert atk.ident.id.hex() not in {p[0] for p in s["peers"]}


@pytest.mark.upy
@pytest.mark.slow
def test_ban_list_survives_restart(pair: Any) -> None:
    mesh, atk = pair
    _ban_attacker(mesh, atk)
    aid = atk.ident.id.hex()
    bans = mesh.nodes[0].dir / "bans.bin"
    deadline = time.monotonic() + 10
    while not bans.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bans.exists()
    mesh.nodes[0].kill()  # no clean shutdown: the periodic save must have done it
    mesh.start_node(0)
    s = _status(mesh)
    assert any(b[0] == aid and b[1] > 0 for b in s["bans"]), s["bans"]
    assert s["counters"]["sig_checks"] == 0
    s = _repeat_until(mesh, atk.announce, lambda s: s["counters"]["dropped_banned"] >= 1)
    assert s["counters"]["sig_checks"] == 0


# ------------------------------------------------------------------- in-process checks

CFG = node_config(capacities={"peers": 8, "bans": 4, "seen": 16, "key_cache": 4, "txqueue": 4})


class _NoRadio:
    speed = 1.0
    name = "t"


def _node(tmp_path: Path) -> Node:
    opts = {"state_dir": str(tmp_path), "stdin": False, "status_interval_s": 0}
    return Node(with_opts(CFG, opts), Identity(bytes(range(32))), _NoRadio())


def _frame_from(ident: Identity, seq: int, body: bytes, key: bytes, link: bool = False) -> bytes:
    f = fr.Frame(msg.ANNOUNCE, ident.id, seq, None, fr.FLAG_LINK if link else 0, hop_limit=0)
    return fr.encode(f, body, lambda region: auth.tag(key, region))


@settings(max_examples=300)
@given(st.lists(st.binary(min_size=0, max_size=80), max_size=20))
def test_receive_path_survives_any_bytes(tmp_path_factory: Any, frames: list[bytes]) -> None:
    node = _node(tmp_path_factory.mktemp("n"))
    key = bytes.fromhex(CFG["network_key"])
    other = Identity(bytes(32))
    for i, body in enumerate(frames):
        node.handle_frame(body, -90, 5)
        # the same garbage under a valid network tag reaches the body parser
        node.handle_frame(_frame_from(other, i, body or b"\xc0", key), -90, 5)
    assert len(node.peers) <= node.peers.capacity
    assert len(node.txq) <= node.txq.capacity
    assert counts(node)["rx"] == 2 * len(frames)
    assert counts(node)["points"] == 0  # nothing under a network tag is attributable


def test_announce_is_verified_once_and_relayed_once(tmp_path: Path) -> None:
    node = _node(tmp_path)
    key = bytes.fromhex(CFG["network_key"])
    other = Identity(bytes([7]) * 32)
    rec = record.encode_record({"seq": 5, "mesh": (0, 7)}, other)
    f = fr.Frame(msg.ANNOUNCE, other.id, 100, hop_limit=3)
    data = auth.seal_frame(f, rec, key)
    node.handle_frame(data, -80, 8)
    assert (
        counts(node)["sig_checks"] == 1
        and counts(node)["new_peers"] == 1
        and counts(node)["relayed"] == 1
    )
    node.handle_frame(data, -80, 8)  # the same frame again: a replay, no work
    assert counts(node)["drop_replay"] == 1
    f.seq = 101  # a periodic re-announce of the same record: liveness only
    node.handle_frame(auth.seal_frame(f, rec, key), -80, 8)
    assert (
        counts(node)["dup_record"] == 1
        and counts(node)["sig_checks"] == 1
        and counts(node)["relayed"] == 1
    )
    old = record.encode_record({"seq": 4, "mesh": (0, 7)}, other)
    f.seq = 102
    node.handle_frame(auth.seal_frame(f, old, key), -80, 8)
    assert counts(node)["stale_record"] == 1 and counts(node)["sig_checks"] == 1
    s = node.peers.find(other.id)
    assert node.peers.hops[s] == 0 and node.peers.next_hop[s] == other.id
    assert record.public_of(node.peers.rec[s]) == other.public


def test_link_tagged_garbage_bans_and_banned_costs_nothing(tmp_path: Path) -> None:
    node = _node(tmp_path)
    key = bytes.fromhex(CFG["network_key"])
    atk = Identity(bytes([9]) * 32)
    rec = record.encode_record({"seq": 1}, atk)
    node.handle_frame(auth.seal_frame(fr.Frame(msg.ANNOUNCE, atk.id, 1, hop_limit=0), rec, key))
    lk = auth.link_key(atk.x_secret(), atk.id, node.identity.public)
    for seq in range(2, 6):
        f = fr.Frame(msg.TX, atk.id, seq, node.id, fr.FLAG_LINK, hop_limit=0)
        node.handle_frame(fr.encode(f, b"\xc1", lambda r: auth.tag(lk, r)))
    assert node.bans.is_banned(atk.id, node.clock.now())
    checks = counts(node)["sig_checks"]
    rec2 = record.encode_record({"seq": 2}, atk)
    node.handle_frame(auth.seal_frame(fr.Frame(msg.ANNOUNCE, atk.id, 9, hop_limit=0), rec2, key))
    assert counts(node)["sig_checks"] == checks and counts(node)["dropped_banned"] == 1


def test_frame_sequence_jumps_a_block_after_reboot(tmp_path: Path) -> None:
    a = _node(tmp_path)
    first = a.next_seq()
    r1 = a.rec_seq_own
    b = _node(tmp_path)
    gap = (b.next_seq() - first) % 0x10000
    assert 0 < gap <= 256 and b.rec_seq_own == r1 + 1


@settings(max_examples=200)
@given(
    st.integers(30, 600),
    st.integers(0, 600),
    st.integers(0, 40),
    st.integers(0, 18000),
)
def test_announce_interval_stays_within_bounds(lo: int, extra: int, nb: int, used: int) -> None:
    sch = AnnounceScheduler(lo, lo + extra)
    due = sch.schedule(1000, nb, used, 18000)
    assert lo * 1000 <= due - 1000 <= (lo + extra) * 1000


def test_announce_interval_adapts_to_density_and_budget() -> None:
    sch = AnnounceScheduler(30, 3600)
    sparse = sch.interval_ms(2, 0, 18000)
    dense = sch.interval_ms(20, 0, 18000)
    broke = sch.interval_ms(2, 16000, 18000)
    assert sparse == 30000 < dense and sparse < broke <= 3600000
    assert sch.interval_ms(2, 18000, 18000) == 3600000


@pytest.mark.upy
def test_receive_path_on_the_unix_port(tmp_path: Path) -> None:
    code = (
        upy_prelude(str(tmp_path))
        + """
from loranode import counters as C
node = Node(cfg, Identity(bytes(range(32))), R())
other = Identity(bytes([7]) * 32)
rec = record.encode_record({"seq": 5, "mesh": (0, 7)}, other)
f = fr.Frame(msg.ANNOUNCE, other.id, 100, hop_limit=3)
node.handle_frame(auth.seal_frame(f, rec, key), -80, 8)
f.seq = 101
node.handle_frame(auth.seal_frame(f, rec, key), -80, 8)
node.handle_frame(b"\\x20" * 30)
c = node.c
print(c[C.SIG_CHECKS], c[C.NEW_PEERS], c[C.DUP_RECORD], c[C.RELAYED], c[C.BAD_FRAME])
lines = []
from loranode import status
status.emit(node, lines.append)
print(lines[0][:7])
"""
    )
    out = run_upy(code, heap="1M").stdout.split("\n")
    assert out[0] == "1 1 1 1 1"
    assert out[1] == "STATUS "


def _two_nodes(tmp_path: Path) -> tuple[Node, Node, Any]:
    from loranode.app import RecordingApp

    opts = {"stdin": False, "status_interval_s": 0}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Node(
        with_opts(CFG, dict(opts, state_dir=str(tmp_path / "a"))),
        Identity(bytes([1]) * 32),
        _NoRadio(),
    )
    app = RecordingApp()
    b = Node(
        with_opts(CFG, dict(opts, state_dir=str(tmp_path / "b"))),
        Identity(bytes([2]) * 32),
        _NoRadio(),
        app,
    )
    b.app.attach(b.port)
    for x, y in ((a, b), (b, a)):  # each hears the other's announce: verified neighbours
        x.announce(x.clock.now())
        y.handle_frame(_pop_own(x, msg.ANNOUNCE), -70, 9)
    return a, b, app


def _pop_own(x: Node, msg_type: int) -> bytes:
    """x's next queued frame of msg_type that it originated (relays are skipped)."""
    while True:
        data = x.txq.pop_ready()
        assert data is not None
        if fr.peek_source(data) == x.id and data[1] == msg_type:
            return data


def test_app_hooks_unicast_is_acked_and_attributable(tmp_path: Path) -> None:
    a, b, app = _two_nodes(tmp_path)
    raw = {0: b"\x01" * 40}
    assert a.port.send(b.id, msg.TX, raw)
    data = _pop_own(a, msg.TX)
    assert data[0] & fr.FLAG_LINK  # a direct neighbour with a known key: link-tagged
    b.handle_frame(data, -70, 9)
    assert app.messages[-1] == (a.id, msg.TX, raw)
    ack = _pop_own(b, msg.ACK)
    a.handle_frame(ack, -70, 9)
    assert counts(a)["ack_rx"] == 1
    s = a.peers.find(b.id)
    assert a.peers.succ[s] > 0  # the ack fed b's reliability score at a
    assert b.port.report_invalid(a.id, "bad tx") is True
    assert b.bans.points(a.id) > 0
    assert b.port.report_invalid(a.id, "again") is False  # one report per message


def test_app_broadcast_is_not_attributable(tmp_path: Path) -> None:
    a, b, app = _two_nodes(tmp_path)
    inv = {0: [[msg.KIND_TX, b"\x02" * 32]]}
    assert a.port.send(None, msg.INV, inv)
    b.handle_frame(_pop_own(a, msg.INV), -70, 9)
    assert app.messages[-1] == (a.id, msg.INV, inv)
    assert b.port.report_invalid(a.id) is False  # network tag: anyone could have sent it
    assert b.bans.points(a.id) == 0
    assert not a.port.send(None, msg.PING, {0: 1})  # only application types
    assert not a.port.send(None, msg.TX, {0: "not bytes"})
