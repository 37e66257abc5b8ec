"""The mesh receive pipeline and lorawire's blame rule as the gateway applies it
(loragate.mesh.receive), on a real wing over a real gateway; frames built and tagged by
lorawire."""

from __future__ import annotations

import pytest
from meshkit import NETKEY, MeshNode

from loragate.bans import Misbehaviour, node_target
from lorawire import auth, fragment, messages, names
from lorawire import record as wrecord
from lorawire.codec import packb


def test_what_a_mesh_fault_costs_is_lorawires_rule_priced_by_the_gateway() -> None:
    for code in range(len(names.MISBEHAVIOURS)):
        if code != auth.MANUAL:
            assert Misbehaviour.from_code(code).code == code
    assert Misbehaviour.from_code(auth.PROTOCOL_VIOLATION) == Misbehaviour.PROTOCOL_VIOLATION


def charged(side, node: MeshNode) -> list[tuple[str, str]]:  # noqa: ANN001
    return [(e.misbehaviour, e.reason) for e in side.host.banman.evidence(node_target(node.id))]


async def test_a_malformed_body_under_a_link_tag_costs_its_sender(wing) -> None:
    node = MeshNode()
    wing.receiver.on_frame(node.announce(), -80, 5.0)  # we learn its public key
    assert wing.peers.has_record(node.id)
    key = node.link_key(wing.identity)
    data = node.raw(messages.TX, packb({0: 7}), key, dest=wing.identity.id, link=True)
    wing.receiver.on_frame(data, -80, 5.0)
    assert charged(wing, node) == [("malformed_frame", "mesh: malformed")]
    assert wing.counters["dropped_attributed_malformed"] == 1
    assert wing.counters["misbehaviour_malformed_frame"] == 1


async def test_a_forged_record_under_a_link_tag_is_a_bad_signature(wing) -> None:
    node = MeshNode()
    wing.receiver.on_frame(node.announce(), -80, 5.0)
    key = node.link_key(wing.identity)
    other = MeshNode()
    forged = other.record_value()
    forged[wrecord.K_SIGNATURE] = bytes(64)
    data = node.frame(messages.PEX_RESPONSE, {0: [forged]}, dest=wing.identity.id, link_key=key)
    wing.receiver.on_frame(data, -80, 5.0)
    assert charged(wing, node) == [("bad_signature", "mesh: record_bad_signature")]
    assert not wing.peers.has_record(other.id)


@pytest.mark.parametrize("link", [True, False])
async def test_a_reassembled_message_that_does_not_decode(wing, link: bool) -> None:
    node = MeshNode()
    wing.receiver.on_frame(node.announce(), -80, 5.0)
    key = node.link_key(wing.identity) if link else NETKEY
    garbage = messages.fragment_payload(messages.TX, packb({0: 7}))  # TX wants bytes
    [chunk] = fragment.split(garbage, 5, 200)
    dest = wing.identity.id if link else None
    wing.receiver.on_frame(node.raw(messages.FRAGMENT, chunk, key, dest=dest, link=link), 0, 0)
    assert wing.counters["dropped_fragment_malformed"] == 1
    # Charged only when every fragment carried its sender's link tag.
    assert [kind for kind, _ in charged(wing, node)] == (["malformed_frame"] if link else [])


@pytest.mark.parametrize("link", [False, True])
async def test_what_proves_nothing_costs_nobody(wing, link: bool) -> None:
    victim = MeshNode()
    wing.receiver.on_frame(victim.announce(), -80, 5.0)
    forger = MeshNode()
    forger.id = victim.id  # the network key, the victim's id, not the victim's key
    forger.seq = 9000
    key = bytes(32) if link else NETKEY
    dest = wing.identity.id if link else None
    wing.receiver.on_frame(forger.raw(messages.TX, packb({0: 7}), key, dest=dest, link=link), 0, 0)
    assert charged(wing, victim) == []
    assert wing.counters["dropped_bad_tag" if link else "dropped_malformed"] == 1
