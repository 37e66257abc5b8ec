"""Forged peer records at the mesh node (loranode.receive), in process on CPython.

Attribution rule (docs/AUTH.md): a record whose signature does not verify is the
sender's provable fault only when the frame carrying it has a valid LINK tag; then the
sender earns BAD_SIGNATURE points (50; a ban at 100). Under the network tag anyone could
have sent it: counted (`bad_record`), charged to nobody -- neither the frame's source
nor the id the record claims. One case also runs on the unix port.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from nodekit import CFG, KEY, NoRadio, counts, upy_prelude, with_opts

from loranode import bans as bn
from loranode.node import Node
from lorawire import auth, record
from lorawire import frame as fr
from lorawire import messages as msg
from lorawire.codec import packb, unpackb
from lorawire.identity import Identity
from upy import run_upy

ATK = Identity(bytes([9]) * 32)
VICTIM = Identity(bytes([5]) * 32)
PEX_ONE = b"\x81\x00\x91"  # {0: [<one record>]}: a PEX_RESPONSE body prefix


class Station:
    """A neighbour of the node under test, sending hand-built frames."""

    def __init__(self, node: Node, ident: Identity = ATK) -> None:
        self.node = node
        self.ident = ident
        self.seq = itertools.count(1)
        self.lk = auth.link_key(ident.x_secret(), ident.id, node.identity.public)

    def send(self, mt: int, body: bytes, link: bool) -> None:
        n = self.node
        if link:
            f = fr.Frame(mt, self.ident.id, next(self.seq), n.id, fr.FLAG_LINK, hop_limit=0)
            data = auth.seal_frame(f, body, None, self.lk)
        else:
            f = fr.Frame(mt, self.ident.id, next(self.seq), hop_limit=0)
            data = auth.seal_frame(f, body, KEY)
        n.handle_frame(data, -70, 9)


def _node(tmp_path: Path) -> Node:
    opts = {"state_dir": str(tmp_path), "stdin": False, "status_interval_s": 0}
    return Node(with_opts(CFG, opts), Identity(bytes(range(32))), NoRadio())


def _rec(ident: Identity, rseq: int, mesh: bool = True) -> bytes:
    fields: dict[str, Any] = {"seq": rseq}
    if mesh:
        fields["mesh"] = (0, 7)
    return record.encode_record(fields, ident)


def _forged(ident: Identity, rseq: int, mesh: bool = True) -> bytes:
    """ident's record with one signature bit flipped: well-formed, badly signed."""
    value = unpackb(_rec(ident, rseq, mesh))
    sig = bytearray(value[record.K_SIGNATURE])
    sig[10] ^= 0x01
    value[record.K_SIGNATURE] = bytes(sig)
    out = packb(value)
    with pytest.raises(record.RecordError) as err:
        record.verify_record(out)
    assert err.value.reason == record.BAD_SIGNATURE
    return out


def _setup(tmp_path: Path) -> tuple[Node, Station]:
    node = _node(tmp_path)
    atk = Station(node)
    atk.send(msg.ANNOUNCE, _rec(ATK, 1), link=False)  # a verified neighbour: key held
    assert node.peers.has_record(node.peers.find(ATK.id))
    return node, atk


def _banned(node: Node, node_id: bytes) -> bool:
    return node.bans.is_banned(node_id, node.clock.now())


@pytest.mark.parametrize("carrier", ["announce", "pex_response"])
def test_link_tagged_forged_record_earns_bad_signature_points_then_a_ban(
    tmp_path: Path, carrier: str
) -> None:
    node, atk = _setup(tmp_path)
    s = node.peers.find(ATK.id)
    invalid0 = node.peers.invalid[s]

    def forge(rseq: int) -> None:
        if carrier == "announce":  # its own record, newer, badly signed
            atk.send(msg.ANNOUNCE, _forged(ATK, rseq), link=True)
        else:  # a third party's record, badly signed: the sender's fault, not the victim's
            atk.send(msg.PEX_RESPONSE, PEX_ONE + _forged(VICTIM, rseq), link=True)

    forge(2)
    assert counts(node)["bad_record"] == 1 and counts(node)["sig_checks"] == 2  # it was checked
    assert node.bans.points(ATK.id) == bn.POINT_VALUES[auth.BAD_SIGNATURE]
    assert node.peers.invalid[s] > invalid0  # and the score knows
    assert not _banned(node, ATK.id)
    assert node.bans.points(VICTIM.id) == 0 and node.peers.find(VICTIM.id) < 0
    forge(3)
    assert _banned(node, ATK.id) and counts(node)["bans"] == 1
    (entry,) = [b for b in node.bans.dump(node.clock.now()) if b[0] == ATK.id]
    assert entry[1] > 0 and entry[3] == auth.BAD_SIGNATURE
    assert node.peers.find(ATK.id) < 0  # a banned peer leaves the table
    assert not _banned(node, VICTIM.id)
    # afterwards its frames are dropped before any signature check
    checks = counts(node)["sig_checks"]
    atk.send(msg.ANNOUNCE, _rec(ATK, 4), link=False)
    assert counts(node)["dropped_banned"] == 1 and counts(node)["sig_checks"] == checks


@pytest.mark.parametrize("carrier", ["announce", "pex_response"])
def test_network_tagged_forged_record_earns_nothing(tmp_path: Path, carrier: str) -> None:
    node, atk = _setup(tmp_path)
    for rseq in range(2, 8):  # far more than a ban's worth, were it attributable
        if carrier == "announce":
            atk.send(msg.ANNOUNCE, _forged(ATK, rseq), link=False)
        else:
            atk.send(msg.PEX_RESPONSE, PEX_ONE + _forged(VICTIM, rseq), link=False)
    assert counts(node)["bad_record"] == 6 and counts(node)["sig_checks"] == 7
    assert counts(node)["points"] == 0 and counts(node)["bans"] == 0
    for who in (ATK.id, VICTIM.id):
        assert node.bans.points(who) == 0 and not _banned(node, who)
    assert node.peers.find(VICTIM.id) < 0
    s = node.peers.find(ATK.id)
    assert node.peers.has_record(s) and node.peers.rec_seq[s] == 1  # the genuine record stays


def test_member_forging_a_victims_announce_gets_the_victim_nothing(tmp_path: Path) -> None:
    """Network tag, the victim's source id, the victim's record badly signed."""
    node = _node(tmp_path)
    forger = Station(node, VICTIM)  # anyone with the network key can claim VICTIM's id
    for rseq in range(1, 5):
        forger.send(msg.ANNOUNCE, _forged(VICTIM, rseq), link=False)
    assert counts(node)["bad_record"] == 4 and counts(node)["points"] == 0
    assert node.bans.points(VICTIM.id) == 0 and node.peers.find(VICTIM.id) < 0


def test_stale_forged_record_is_not_checked_nor_charged(tmp_path: Path) -> None:
    """A forged copy no newer than the held record is dropped before the signature
    check: stale or duplicate records are nobody's provable fault."""
    node, atk = _setup(tmp_path)
    checks = counts(node)["sig_checks"]
    atk.send(msg.ANNOUNCE, _forged(ATK, 1), link=True)
    atk.send(msg.PEX_RESPONSE, PEX_ONE + _forged(ATK, 1), link=True)
    assert counts(node)["stale_record"] == 2 and counts(node)["sig_checks"] == checks
    assert counts(node)["points"] == 0 and node.bans.points(ATK.id) == 0


def test_link_tagged_answer_mixing_good_and_forged_records(tmp_path: Path) -> None:
    """The good record is learned; the forged one still costs its sender."""
    node, atk = _setup(tmp_path)
    other = Identity(bytes([6]) * 32)
    # {0: [good, forged]}; two records fit one LoRa frame only without the mesh field
    body = b"\x81\x00\x92" + _rec(other, 1, False) + _forged(VICTIM, 1, False)
    atk.send(msg.PEX_RESPONSE, body, link=True)
    s = node.peers.find(other.id)
    assert node.peers.has_record(s) and node.peers.next_hop[s] == ATK.id
    assert node.bans.points(ATK.id) == bn.POINT_VALUES[auth.BAD_SIGNATURE]
    assert node.peers.find(VICTIM.id) < 0


@pytest.mark.upy
def test_forged_records_on_the_unix_port(tmp_path: Path) -> None:
    code = (
        upy_prelude(str(tmp_path))
        + """
node = Node(cfg, Identity(bytes(range(32))), R())
atk = Identity(bytes([9]) * 32)
lk = auth.link_key(atk.x_secret(), atk.id, node.identity.public)
seq = [0]
def send(body, link):
    seq[0] += 1
    if link:
        f = fr.Frame(msg.ANNOUNCE, atk.id, seq[0], node.id, fr.FLAG_LINK, hop_limit=0)
        node.handle_frame(auth.seal_frame(f, body, None, lk), -70, 9)
    else:
        f = fr.Frame(msg.ANNOUNCE, atk.id, seq[0], hop_limit=0)
        node.handle_frame(auth.seal_frame(f, body, key), -70, 9)
def forged(rseq):
    v = unpackb(record.encode_record({"seq": rseq, "mesh": (0, 7)}, atk))
    sig = bytearray(v[record.K_SIGNATURE])
    sig[10] ^= 1
    v[record.K_SIGNATURE] = bytes(sig)
    return packb(v)
send(record.encode_record({"seq": 1, "mesh": (0, 7)}, atk), False)
send(forged(2), False)
send(forged(3), False)
print(node.c[C.BAD_RECORD], node.c[C.POINTS], node.bans.points(atk.id))
send(forged(4), True)
print(node.c[C.BAD_RECORD], node.bans.points(atk.id), node.bans.is_banned(atk.id, 0))
send(forged(5), True)
print(node.bans.is_banned(atk.id, node.clock.now()), node.peers.find(atk.id))
"""
    )
    out = run_upy(code, heap="1M").stdout.split("\n")
    assert out[:3] == ["2 0 0", "3 50 False", "True -1"]
