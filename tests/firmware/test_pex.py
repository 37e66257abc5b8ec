"""Peer exchange (loranode.pex), in process on CPython: what its docstring documents.

Nodes share one hand-driven clock, so the answer gap and the "newest first" order are
exact. Records of other stations come from plain Identities whose ANNOUNCEs the
answering node hears directly. One case also runs on the unix port.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from nodekit import CFG, KEY, NoRadio, counts, upy_prelude, with_opts

from loranode.node import Node
from loranode.pex import HOPS_UNKNOWN, PEX_ANSWER_GAP_MS, PEX_ANSWER_MAX
from lorawire import auth, record
from lorawire import frame as fr
from lorawire import messages as msg
from lorawire.identity import Identity
from upy import run_upy

_SEQ = itertools.count(100)


class ManualClock:
    """Node clock moved by the test (ms)."""

    def __init__(self, ms: int = 1_000_000) -> None:
        self.ms = ms

    def now(self) -> int:
        return self.ms

    def set_speed(self, speed: float) -> None:
        pass

    def wall_ms(self, sim_ms: int) -> int:
        return sim_ms


def _node(tmp_path: Path, seed: int, clock: ManualClock) -> Node:
    d = tmp_path / f"n{seed}"
    d.mkdir()
    opts = {"state_dir": str(d), "stdin": False, "status_interval_s": 0}
    node = Node(with_opts(CFG, opts), Identity(bytes([seed]) * 32), NoRadio())
    node.clock = clock  # type: ignore[assignment]
    return node


def _ident(i: int) -> Identity:
    return Identity(bytes([0x40 + i]) * 32)


def _rec(ident: Identity, rseq: int = 1) -> bytes:
    return record.encode_record({"seq": rseq, "mesh": (0, 7)}, ident)


def _announce(ident: Identity, hop_limit: int = 0, hop_count: int = 0, rseq: int = 1) -> bytes:
    f = fr.Frame(msg.ANNOUNCE, ident.id, next(_SEQ), hop_limit=hop_limit, hop_count=hop_count)
    return auth.seal_frame(f, _rec(ident, rseq), KEY)


def _seq(src: Node | Identity) -> int:
    """A fresh frame sequence for src (a Node's own counter: its replay window at the
    receiver already follows it)."""
    return src.next_seq() if isinstance(src, Node) else next(_SEQ)


def _request(
    src: Node | Identity, dest: bytes, have: list[bytes], want: int = 16, hl: int = 0, hc: int = 0
) -> bytes:
    f = fr.Frame(msg.PEX_REQUEST, src.id, _seq(src), dest, hop_limit=hl, hop_count=hc)
    return auth.seal_frame(f, msg.encode_pex_request(want, have), KEY)


def _drain(node: Node) -> list[bytes]:
    out = []
    while (data := node.txq.pop_ready()) is not None:
        out.append(data)
    return out


def _pop_own(x: Node, msg_type: int) -> bytes:
    for data in _drain(x):
        if fr.peek_source(data) == x.id and data[1] == msg_type:
            return data
    raise AssertionError(f"nothing of type {msg_type} queued")


def _meet(x: Node, y: Node) -> None:
    """x and y hear each other's announce: verified direct neighbours."""
    for a, b in ((x, y), (y, x)):
        a.announce(a.clock.now())
        b.handle_frame(_pop_own(a, msg.ANNOUNCE), -70, 9)


def _answers(data: list[bytes]) -> list[tuple[Any, bytes]]:
    """(frame, record id) of each PEX_RESPONSE; asserts one record per frame."""
    out = []
    for d in data:
        v = auth.open_frame(d, KEY)  # network-tagged: every neighbour can check it
        assert v.accepted and v.frame.type == msg.PEX_RESPONSE
        assert len(v.value[0]) == 1  # one signed record per answer frame
        out.append((v.frame, record.verify_record(v.value[0][0]).id))
    return out


def _learn(node: Node, clock: ManualClock, idents: list[Identity]) -> None:
    """node hears each identity's announce through one relay (not a neighbour, and at
    its hop limit, so not relayed further), 1 s apart (oldest first)."""
    for ident in idents:
        clock.ms += 1000
        node.handle_frame(_announce(ident, hop_limit=1, hop_count=1), -75, 7)
    assert all(node.peers.has_record(node.peers.find(i.id)) for i in idents)
    _drain(node)


@pytest.fixture
def world(tmp_path: Path) -> tuple[ManualClock, Node, Node]:
    """(clock, asker a, answerer b): verified direct neighbours."""
    clock = ManualClock()
    a = _node(tmp_path, 1, clock)
    b = _node(tmp_path, 2, clock)
    _meet(a, b)
    return clock, a, b


def test_answer_skips_have_one_record_per_frame_newest_first(world: Any) -> None:
    clock, a, b = world
    xs = [_ident(i) for i in range(5)]
    _learn(b, clock, xs)
    clock.ms += 1000
    b.handle_frame(_request(a, b.id, [xs[0].id[:4], xs[2].id[:4]]), -70, 9)
    got = _answers(_drain(b))
    # newest first, minus what the asker named; never the asker's own record
    assert [rid for _, rid in got] == [xs[4].id, xs[3].id, xs[1].id]
    for f, _ in got:
        # a direct asker: a one-hop broadcast every neighbour overhears
        assert f.source == b.id and f.dest is None and f.hop_limit == 0
    assert counts(b)["pex_req_rx"] == 1 and counts(b)["pex_resp_tx"] == 3


def test_answer_capped_and_recently_broadcast_records_last(tmp_path: Path) -> None:
    clock = ManualClock()
    a = _node(tmp_path, 1, clock)
    b = _node(tmp_path, 2, clock)
    c = _node(tmp_path, 3, clock)
    _meet(a, b)
    _meet(c, b)
    xs = [_ident(i) for i in range(6)]  # b now holds a, c and 6 more: full (8)
    _learn(b, clock, xs)
    clock.ms += 1000
    b.handle_frame(_request(a, b.id, []), -70, 9)
    first = [rid for _, rid in _answers(_drain(b))]
    assert len(first) == PEX_ANSWER_MAX
    assert first == [x.id for x in reversed(xs)]  # newest 6; c's (older) record left out
    # c asks right after: those 6 were just broadcast (c most likely overheard them),
    # so the records not broadcast recently come first, then the rest newest first
    clock.ms += 1000
    b.handle_frame(_request(c, b.id, []), -70, 9)
    second = [rid for _, rid in _answers(_drain(b))]
    assert second == [a.id] + [x.id for x in reversed(xs)][:5]


def test_answer_skips_records_the_askers_own_answers_carried(world: Any) -> None:
    clock, a, b = world
    xs = [_ident(i) for i in range(3)]
    _learn(b, clock, xs)
    # a's answer (to someone) carries xs[2]'s record: evidence that a holds it
    f = fr.Frame(msg.PEX_RESPONSE, a.id, a.next_seq(), hop_limit=0)
    b.handle_frame(auth.seal_frame(f, b"\x81\x00\x91" + _rec(xs[2]), KEY), -70, 9)
    assert counts(b)["dup_record"] == 1  # b held it already: no verification, only the mark
    clock.ms += 1000
    b.handle_frame(_request(a, b.id, []), -70, 9)
    assert [rid for _, rid in _answers(_drain(b))] == [xs[1].id, xs[0].id]


def test_unknown_asker_gets_nothing(world: Any) -> None:
    clock, a, b = world
    _learn(b, clock, [_ident(0)])
    stranger = _ident(9)  # never announced to b: no record held
    b.handle_frame(_request(stranger, b.id, []), -70, 9)
    assert counts(b)["pex_unknown"] == 1 and counts(b)["pex_resp_tx"] == 0 and _drain(b) == []
    b.handle_frame(_request(a, b.id, []), -70, 9)  # control: a known asker is answered
    assert len(_answers(_drain(b))) == 1


def test_asker_answered_at_most_once_per_gap(world: Any) -> None:
    clock, a, b = world
    xs = [_ident(i) for i in range(2)]
    _learn(b, clock, xs)
    clock.ms += 1000
    b.handle_frame(_request(a, b.id, []), -70, 9)
    assert len(_answers(_drain(b))) == 2
    clock.ms += PEX_ANSWER_GAP_MS - 1
    b.handle_frame(_request(a, b.id, []), -70, 9)
    assert counts(b)["pex_limited"] == 1 and _drain(b) == []
    clock.ms += 1
    b.handle_frame(_request(a, b.id, []), -70, 9)
    assert counts(b)["pex_limited"] == 1 and len(_answers(_drain(b))) == 2


def test_an_empty_answer_does_not_start_the_gap(world: Any) -> None:
    clock, a, b = world
    xs = [_ident(i) for i in range(3)]
    _learn(b, clock, xs[:2])
    b.handle_frame(_request(a, b.id, [x.id[:4] for x in xs[:2]]), -70, 9)
    assert _drain(b) == [] and counts(b)["pex_limited"] == 0  # a holds all of it
    _learn(b, clock, xs[2:])  # 1 s later: news
    b.handle_frame(_request(a, b.id, [x.id[:4] for x in xs[:2]]), -70, 9)
    assert counts(b)["pex_limited"] == 0
    assert [rid for _, rid in _answers(_drain(b))] == [xs[2].id]


def test_pex_learned_peer_has_unknown_hops_and_the_answerer_as_next_hop(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    a = _node(tmp_path, 1, clock)
    b = _node(tmp_path, 2, clock)
    c = _node(tmp_path, 3, clock)  # another neighbour of b, not asking
    _meet(a, b)
    _meet(c, b)
    x = _ident(0)
    _learn(b, clock, [x])
    clock.ms += 1000
    assert a.pex_round(clock.ms)
    req = _pop_own(a, msg.PEX_REQUEST)
    f = fr.decode(req)
    assert f.dest == b.id and f.hop_limit == 0 and not f.flags & fr.FLAG_LINK
    b.handle_frame(req, -70, 9)
    answers = _drain(b)
    assert {rid for _, rid in _answers(answers)} == {x.id, c.id}
    for node in (a, c):  # the asker, and c overhearing the broadcast answer
        before = counts(node)["new_peers"]
        for d in answers:
            node.handle_frame(d, -70, 9)
        s = node.peers.find(x.id)
        assert node.peers.has_record(s) and record.public_of(node.peers.rec[s]) == x.public
        assert node.peers.hops[s] == HOPS_UNKNOWN and node.peers.next_hop[s] == b.id
        assert counts(node)["new_peers"] == before + (2 if node is a else 1)
    s = a.peers.find(c.id)
    assert a.peers.hops[s] == HOPS_UNKNOWN and a.peers.next_hop[s] == b.id


def test_multi_hop_asker_gets_a_unicast(world: Any) -> None:
    clock, a, b = world
    m = _ident(7)
    # b knows m only through a relayed announce: 2 hops away
    b.handle_frame(_announce(m, hop_limit=3, hop_count=2), -80, 5)
    s = b.peers.find(m.id)
    assert b.peers.has_record(s) and b.peers.hops[s] == 2
    _drain(b)
    b.handle_frame(_request(m, b.id, [], hl=3, hc=2), -80, 5)
    got = _answers(_drain(b))
    assert [rid for _, rid in got] == [a.id]
    f = got[0][0]
    assert f.dest == m.id and f.hop_limit == 2 and not f.flags & fr.FLAG_LINK


def test_have_naming_unknown_records_makes_the_next_round_pull_from_the_asker(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    a = _node(tmp_path, 1, clock)
    b = _node(tmp_path, 2, clock)
    c = _node(tmp_path, 3, clock)
    _meet(a, b)
    _meet(c, b)
    _learn(b, clock, [_ident(0)])

    def round_dest() -> bytes:
        assert b.pex_round(clock.ms)
        return fr.decode(_pop_own(b, msg.PEX_REQUEST)).dest

    # plain round robin never asks the same neighbour twice in a row
    seq = [round_dest() for _ in range(4)]
    assert set(seq) == {a.id, c.id} and all(p != q for p, q in itertools.pairwise(seq))
    last = seq[-1]
    other = a if last == c.id else c
    # `other` names a record b lacks: b pulls from it next, even twice in a row
    for k in range(2):
        clock.ms += PEX_ANSWER_GAP_MS
        b.handle_frame(_request(other, b.id, [_ident(20 + k).id[:4]]), -70, 9)
        _drain(b)
        assert round_dest() == other.id
    # a have list b fully knows changes nothing: round robin moves on
    clock.ms += PEX_ANSWER_GAP_MS
    b.handle_frame(_request(other, b.id, [_ident(0).id[:4]]), -70, 9)
    _drain(b)
    assert round_dest() != other.id


def test_no_neighbour_no_round(tmp_path: Path) -> None:
    clock = ManualClock()
    a = _node(tmp_path, 1, clock)
    a.handle_frame(_announce(_ident(0), hop_limit=1, hop_count=1), -80, 5)  # not direct
    assert not a.pex_round(clock.ms)
    assert counts(a)["pex_req_tx"] == 0 and _drain(a) == []


@pytest.mark.upy
def test_pex_answer_on_the_unix_port(tmp_path: Path) -> None:
    xs = [_ident(i) for i in range(3)]
    code = (
        upy_prelude(str(tmp_path))
        + """
b = Node(cfg, Identity(bytes([2]) * 32), R())
seq = [100]
def ann(i):
    seq[0] += 1
    rec = record.encode_record({"seq": 1, "mesh": (0, 7)}, i)
    return auth.seal_frame(fr.Frame(msg.ANNOUNCE, i.id, seq[0], hop_limit=0), rec, key)
a = Identity(bytes([1]) * 32)
xs = [Identity(bytes([0x40 + k]) * 32) for k in range(3)]
for i in [a] + xs:
    b.handle_frame(ann(i), -70, 9)
while b.txq.pop_ready():
    pass
stranger = Identity(bytes([0x49]) * 32)
def req(src):
    seq[0] += 1
    f = fr.Frame(msg.PEX_REQUEST, src.id, seq[0], b.id, hop_limit=0)
    return auth.seal_frame(f, msg.encode_pex_request(16, [xs[1].id[:4]]), key)
b.handle_frame(req(stranger), -70, 9)
print(b.c[C.PEX_UNKNOWN], b.txq.pop_ready())
b.handle_frame(req(a), -70, 9)
ids = []
while True:
    d = b.txq.pop_ready()
    if d is None:
        break
    v = auth.open_frame(d, key)
    ids.append((len(v.value[0]), v.frame.dest, record.decode_record(v.value[0][0]).id.hex()))
print(sorted(ids))
b.handle_frame(req(a), -70, 9)
print(b.c[C.PEX_LIMITED], b.txq.pop_ready())
"""
    )
    out = run_upy(code, heap="1M").stdout.split("\n")
    assert out[0] == "1 None"
    want = sorted((1, None, x.id.hex()) for x in (xs[0], xs[2]))
    assert out[1] == repr(want)
    assert out[2] == "1 None"
