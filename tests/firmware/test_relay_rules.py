"""Relay rules of the mesh node (loranode.receive), in process on CPython.

A frame whose hop_count has reached its hop_limit is not relayed; a relay forwards the
same bytes with hop_count + 1 (the tag still verifies: it covers the header with
hop_count zeroed); a signed record is relayed at most once, the first time it is
verified (SeenRing keyed by (origin, record seq)), whatever frame carries it later.
One case also runs on the unix port.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nodekit import CFG, KEY, NoRadio, counts, upy_prelude, with_opts

from loranode.node import Node
from lorawire import auth, record
from lorawire import frame as fr
from lorawire import messages as msg
from lorawire.identity import Identity
from upy import run_upy

ORIGIN = Identity(bytes([7]) * 32)


def _node(tmp_path: Path, relay: bool = True) -> Node:
    opts = {"state_dir": str(tmp_path), "stdin": False, "status_interval_s": 0, "relay": relay}
    return Node(with_opts(CFG, opts), Identity(bytes(range(32))), NoRadio())


def _drain(node: Node) -> list[bytes]:
    out = []
    while (data := node.txq.pop_ready()) is not None:
        out.append(data)
    return out


def _announce(rec: bytes, seq: int, hop_limit: int, hop_count: int) -> bytes:
    f = fr.Frame(msg.ANNOUNCE, ORIGIN.id, seq, hop_limit=hop_limit, hop_count=hop_count)
    return auth.seal_frame(f, rec, KEY)


def _inv(seq: int, hop_limit: int, hop_count: int, dest: bytes | None = None) -> bytes:
    f = fr.Frame(msg.INV, ORIGIN.id, seq, dest, hop_limit=hop_limit, hop_count=hop_count)
    return auth.seal_frame(f, msg.encode_inv([[msg.KIND_TX, b"\x02" * 32]]), KEY)


@settings(max_examples=60)
@given(st.integers(0, fr.MAX_HOPS), st.integers(0, fr.MAX_HOPS))
def test_announce_relayed_iff_below_hop_limit(tmp_path_factory: Any, a: int, b: int) -> None:
    hop_count, hop_limit = min(a, b), max(a, b)
    node = _node(tmp_path_factory.mktemp("n"))
    rec = record.encode_record({"seq": 1, "mesh": (0, 7)}, ORIGIN)
    data = _announce(rec, 10, hop_limit, hop_count)
    node.handle_frame(data, -80, 5)
    assert counts(node)["new_peers"] == 1  # admitted either way: the hop limit only stops relaying
    s = node.peers.find(ORIGIN.id)
    assert node.peers.hops[s] == hop_count
    sent = _drain(node)
    if hop_count == hop_limit:
        assert sent == [] and counts(node)["relayed"] == 0
    else:
        assert counts(node)["relayed"] == 1
        (out,) = sent
        g = fr.decode(out)
        assert (g.hop_count, g.hop_limit) == (hop_count + 1, hop_limit)
        assert (g.source, g.seq, g.type, g.body) == (ORIGIN.id, 10, msg.ANNOUNCE, rec)
        assert out == fr.with_hop(data, hop_count + 1)
        # the relayed copy still verifies under the network key at the next node
        v = auth.open_frame(out, KEY)
        assert v.accepted and v.frame.hop_count == hop_count + 1


def test_record_is_relayed_once_whatever_frame_carries_it(tmp_path: Path) -> None:
    node = _node(tmp_path)
    rec = record.encode_record({"seq": 1, "mesh": (0, 7)}, ORIGIN)
    node.handle_frame(_announce(rec, 10, 3, 0), -80, 5)
    assert counts(node)["relayed"] == 1 and len(_drain(node)) == 1
    # the same record in a fresh frame (a periodic announce, another relay's copy with
    # a different hop count): liveness only, never relayed again
    node.handle_frame(_announce(rec, 11, 3, 0), -80, 5)
    node.handle_frame(_announce(rec, 12, 3, 1), -80, 5)
    assert counts(node)["dup_record"] == 2 and counts(node)["relayed"] == 1 and _drain(node) == []
    # even when the record must be verified again (its peer entry was evicted
    # meanwhile) the SeenRing remembers (origin, record seq): no second relay
    assert node.peers.remove(ORIGIN.id)
    node.handle_frame(_announce(rec, 13, 3, 0), -80, 5)
    assert counts(node)["sig_checks"] == 2 and node.peers.find(ORIGIN.id) >= 0
    assert counts(node)["relayed"] == 1 and _drain(node) == []
    # a NEW record (higher record seq) is news again: relayed once
    rec2 = record.encode_record({"seq": 2, "mesh": (0, 7)}, ORIGIN)
    node.handle_frame(_announce(rec2, 14, 3, 1), -80, 5)
    (out,) = _drain(node)
    assert counts(node)["relayed"] == 2 and fr.decode(out).hop_count == 2
    node.handle_frame(_announce(rec2, 15, 3, 2), -80, 5)
    assert counts(node)["relayed"] == 2 and _drain(node) == []


def test_relay_off_relays_nothing(tmp_path: Path) -> None:
    node = _node(tmp_path, relay=False)
    rec = record.encode_record({"seq": 1, "mesh": (0, 7)}, ORIGIN)
    node.handle_frame(_announce(rec, 10, 3, 0), -80, 5)
    node.handle_frame(_inv(11, 3, 0), -80, 5)
    assert counts(node)["new_peers"] == 1 and counts(node)["app_rx"] == 1
    assert counts(node)["relayed"] == 0 and _drain(node) == []


@pytest.mark.parametrize(("hop_count", "hop_limit"), [(0, 0), (0, 3), (2, 3), (3, 3)])
def test_broadcast_message_relay_respects_hop_limit(
    tmp_path: Path, hop_count: int, hop_limit: int
) -> None:
    node = _node(tmp_path)
    data = _inv(20, hop_limit, hop_count)
    node.handle_frame(data, -80, 5)
    assert counts(node)["app_rx"] == 1  # delivered in every case
    sent = _drain(node)
    if hop_count == hop_limit:
        assert sent == [] and counts(node)["relayed"] == 0
    else:
        assert sent == [fr.with_hop(data, hop_count + 1)] and counts(node)["relayed"] == 1
        # the same frame again (another relay's copy): a replay, not relayed twice
        node.handle_frame(fr.with_hop(data, hop_count), -80, 5)
        assert (
            counts(node)["drop_replay"] == 1 and counts(node)["relayed"] == 1 and _drain(node) == []
        )


def test_unicast_relayed_only_within_the_destination_hop_budget(tmp_path: Path) -> None:
    node = _node(tmp_path)
    dest = Identity(bytes([8]) * 32)
    # unknown destination: no scoped flooding
    node.handle_frame(_inv(30, 3, 0, dest.id), -80, 5)
    assert counts(node)["relayed"] == 0 and _drain(node) == []
    # the destination is a direct neighbour of ours (hops 0)
    drec = record.encode_record({"seq": 1, "mesh": (0, 7)}, dest)
    f = fr.Frame(msg.ANNOUNCE, dest.id, 5, hop_limit=0)
    node.handle_frame(auth.seal_frame(f, drec, KEY), -70, 8)
    assert node.peers.hops[node.peers.find(dest.id)] == 0
    _drain(node)
    node.handle_frame(_inv(31, 1, 0, dest.id), -80, 5)  # 0 + 1 + 0 <= 1: forwarded
    (out,) = _drain(node)
    assert fr.decode(out).hop_count == 1 and counts(node)["relayed"] == 1
    node.handle_frame(_inv(32, 1, 1, dest.id), -80, 5)  # hop limit reached
    assert counts(node)["relayed"] == 1 and _drain(node) == []


def test_link_tagged_frames_are_never_relayed(tmp_path: Path) -> None:
    node = _node(tmp_path)
    rec = record.encode_record({"seq": 1, "mesh": (0, 7)}, ORIGIN)
    node.handle_frame(_announce(rec, 10, 0, 0), -80, 5)
    lk = auth.link_key(ORIGIN.x_secret(), ORIGIN.id, node.identity.public)
    body = msg.encode_inv([[msg.KIND_TX, b"\x03" * 32]])
    # a link-tagged broadcast: only we can check its tag, so nobody further could
    f = fr.Frame(msg.INV, ORIGIN.id, 11, None, fr.FLAG_LINK, hop_limit=3)
    node.handle_frame(auth.seal_frame(f, body, None, lk), -80, 5)
    assert counts(node)["app_rx"] == 1 and counts(node)["attributed"] == 1
    assert counts(node)["relayed"] == 0 and _drain(node) == []
    # the same body network-tagged is relayed (control)
    node.handle_frame(_inv(12, 3, 0), -80, 5)
    assert counts(node)["relayed"] == 1 and len(_drain(node)) == 1


@pytest.mark.upy
def test_relay_rules_on_the_unix_port(tmp_path: Path) -> None:
    code = (
        upy_prelude(str(tmp_path))
        + """
node = Node(cfg, Identity(bytes(range(32))), R())
o = Identity(bytes([7]) * 32)
rec = record.encode_record({"seq": 1, "mesh": (0, 7)}, o)
def ann(seq, hl, hc):
    return auth.seal_frame(fr.Frame(msg.ANNOUNCE, o.id, seq, hop_limit=hl, hop_count=hc), rec, key)
node.handle_frame(ann(10, 2, 2), -80, 5)  # at the hop limit: admitted, not relayed
print(node.c[C.NEW_PEERS], node.c[C.RELAYED], node.txq.pop_ready())
node.peers.remove(o.id)
node.handle_frame(ann(11, 3, 1), -80, 5)  # first relay of the record: hop_count + 1
out = node.txq.pop_ready()
print(node.c[C.RELAYED], out[2] & 15, out[2] >> 4, out == fr.with_hop(ann(11, 3, 1), 2))
node.handle_frame(ann(12, 3, 0), -80, 5)  # the same record again
print(node.c[C.RELAYED], node.txq.pop_ready())
"""
    )
    out = run_upy(code, heap="1M").stdout.split("\n")
    assert out[:3] == ["1 0 None", "1 2 3 True", "1 None"]
