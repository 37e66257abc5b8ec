"""MeshPeers alone (no gateway, no wing): the mesh nodes heard and their verified records,
every table bounded, a forgotten record's key forgotten with it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from meshkit import MeshNode

from loragate.mesh.peers import MeshPeers
from lorawire import record as wrecord


def verified(node: MeshNode) -> wrecord.Record:
    return wrecord.verify_record(node.record_value())


def test_a_record_held_gives_its_public_key_until_forgotten() -> None:
    node = MeshNode()
    peers = MeshPeers(4, 4, on_evict=lambda _: None)
    assert peers.public_of(node.id) is None and not peers.has_record(node.id)
    peers.hold(verified(node))
    assert peers.public_of(node.id) == node.ident.public
    rec = peers.record(node.id)
    assert rec is not None and rec.id == node.id
    peers.forget_record(node.id)
    assert peers.public_of(node.id) is None and peers.sizes()["records"] == 0


def test_heard_and_direct_are_separate_facts() -> None:
    a, b = MeshNode(), MeshNode()
    peers = MeshPeers(4, 4, on_evict=lambda _: None)
    peers.note_heard(a.id, 2)
    assert peers.knows(a.id) and peers.hops_of(a.id) == 2 and not peers.is_direct(a.id)
    peers.note_direct(a.id)
    assert peers.is_direct(a.id)
    assert not peers.knows(b.id) and peers.hops_of(b.id) == 0


def test_the_oldest_record_goes_first_and_says_so() -> None:
    nodes = [MeshNode() for _ in range(3)]
    evicted: list[bytes] = []
    peers = MeshPeers(2, 8, on_evict=evicted.append)
    for n in nodes:
        peers.hold(verified(n))
    assert evicted == [nodes[0].id]  # the LinkKeyCache forgets its key through this
    assert [peers.has_record(n.id) for n in nodes] == [False, True, True]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 15)), max_size=200))
def test_no_table_grows_past_its_bound(events: list[tuple[int, int]]) -> None:
    peers = MeshPeers(3, 5, on_evict=lambda _: None)
    for who, hops in events:
        node_id = who.to_bytes(8, "big")
        peers.note_heard(node_id, hops)
        if hops % 2:
            peers.note_direct(node_id)
        sizes = peers.sizes()
        assert sizes["heard"] <= 5 and sizes["direct"] <= 5 and sizes["records"] <= 3
        assert peers.hops_of(node_id) == hops  # the latest word on it
