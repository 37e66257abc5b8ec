"""HMAC-SHA256, frame tags, link keys, seal/open and the attribution rule."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import auth, codec, compose, fragment, frame, hmac256, messages, record
from lorawire.frame import Frame
from lorawire.identity import Identity
from lorawire.replay import ReplayTable

ALICE = Identity(bytes(range(32)))
BOB = Identity(bytes(range(1, 33)))
MALLORY = Identity(bytes(range(2, 34)))  # a network member turned attacker
NET_KEY = bytes(range(100, 132))

# RFC 4231 test cases 1-7: (key, data, HMAC-SHA-256; case 5 is truncated to 128 bits)
_LONG_KEY = b"\xaa" * 131
RFC4231 = [
    (
        b"\x0b" * 20,
        b"Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    ),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
    (
        b"\xaa" * 20,
        b"\xdd" * 50,
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
    ),
    (
        bytes(range(1, 26)),
        b"\xcd" * 50,
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
    ),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (
        _LONG_KEY,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
    (
        _LONG_KEY,
        b"This is a test using a larger than block-size key and a larger than block-size "
        b"data. The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
    ),
]


@pytest.mark.parametrize("impl", [hmac256.hmac_sha256, hmac256.pure_hmac_sha256])
@pytest.mark.parametrize(("key", "data", "expected"), RFC4231)
def test_rfc4231_vectors(impl: object, key: bytes, data: bytes, expected: str) -> None:
    out = impl(key, data)  # type: ignore[operator]
    assert out.hex()[: len(expected)] == expected


def test_cpython_uses_the_stdlib_fast_path() -> None:
    assert hmac256.FAST


@settings(max_examples=300)
@given(st.binary(max_size=200), st.binary(max_size=300))
def test_pure_hmac_matches_stdlib(key: bytes, msg: bytes) -> None:
    assert hmac256.pure_hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


@given(st.binary(max_size=16), st.binary(max_size=16))
def test_compare(a: bytes, b: bytes) -> None:
    assert hmac256.pure_compare(a, b) == (a == b)
    assert hmac256.compare(a, b) == (a == b)


def test_tag_and_check() -> None:
    region = b"\x10\x04\x30" + ALICE.id + b"\x00\x01\x81\x00\x07"
    t = auth.tag(NET_KEY, region)
    assert t == hmac.new(NET_KEY, region, hashlib.sha256).digest()[:8]
    assert auth.check(NET_KEY, region, t)
    assert not auth.check(NET_KEY, region + b"x", t)
    assert not auth.check(bytes(32), region, t)
    assert not auth.check(NET_KEY, region, t[:7])
    assert not auth.check(NET_KEY, region, None)


# ---------------------------------------------------------------- link keys


def test_link_key_is_symmetric_and_follows_the_documented_formula() -> None:
    from lorawire.x25519 import ed25519_pk_to_x25519, x25519

    k_ab = auth.link_key(ALICE.x_secret(), ALICE.id, BOB.public)
    k_ba = auth.link_key(BOB.x_secret(), BOB.id, ALICE.public)
    assert k_ab == k_ba
    shared = x25519(ALICE.x_secret(), ed25519_pk_to_x25519(BOB.public))
    lo, hi = sorted([ALICE.id, BOB.id])
    assert k_ab == hmac.new(shared, b"lorachain link v1" + lo + hi, hashlib.sha256).digest()
    assert auth.link_key(ALICE.x_secret(), ALICE.id, MALLORY.public) != k_ab


def test_link_key_refuses_a_small_order_key() -> None:
    with pytest.raises(ValueError):
        auth.link_key(ALICE.x_secret(), ALICE.id, b"\x01" + bytes(31))


def test_link_key_cache_derives_once_and_checks_ids() -> None:
    cache = auth.LinkKeyCache(ALICE, capacity=2)
    assert cache.get(BOB.id) is None  # unknown key
    assert cache.get(BOB.id, MALLORY.public) is None  # key does not hash to the id
    assert cache.get(ALICE.id, ALICE.public) is None  # no key with ourselves
    k = cache.get(BOB.id, BOB.public)
    assert k == auth.link_key(ALICE.x_secret(), ALICE.id, BOB.public)
    assert cache.get(BOB.id) == k
    assert cache.derived == 1
    pubs = {MALLORY.id: MALLORY.public}
    cache.lookup = pubs.get
    assert cache.get(MALLORY.id) is not None
    assert cache.derived == 2 and len(cache) == 2
    cache.get(BOB.id)  # Bob most recent -> Mallory evicted next
    carol = Identity(bytes(range(3, 35)))
    assert cache.get(carol.id, carol.public) is not None
    assert len(cache) == 2 and cache.derived == 3
    # Bob's key is still held (no derivation), Mallory's was evicted (derived again)
    assert cache.get(BOB.id) == k and cache.derived == 3
    assert cache.get(MALLORY.id) is not None and cache.derived == 4


@settings(max_examples=30)
@given(st.lists(st.integers(0, 40), max_size=60))
def test_link_key_cache_never_exceeds_capacity(picks: list[int]) -> None:
    peers = [Identity(bytes([i]) * 32) for i in range(1, 6)]
    cache = auth.LinkKeyCache(ALICE, capacity=3)
    for p in picks:
        peer = peers[p % len(peers)]
        assert cache.get(peer.id, peer.public) == auth.link_key(
            ALICE.x_secret(), ALICE.id, peer.public
        )
        assert len(cache) <= 3


# ---------------------------------------------------------------- seal / open


AB_KEY = auth.link_key(ALICE.x_secret(), ALICE.id, BOB.public)


def _ab_key() -> bytes:
    return AB_KEY


def test_network_frame_round_trip_and_hop_count_not_tagged() -> None:
    data = compose.seal_message(messages.PING, {0: 99}, ALICE.id, 5, network_key=NET_KEY)
    v = auth.open_frame(data, NET_KEY)
    assert v.kind == auth.ACCEPT and not v.attributed and v.value == {0: 99}
    assert v.frame.source == ALICE.id and v.frame.seq == 5
    relayed = frame.next_hop(data)
    assert relayed is not None and relayed != data
    v2 = auth.open_frame(relayed, NET_KEY)
    assert v2.accepted and v2.frame.hop_count == 1
    assert auth.open_frame(data, bytes(32)).reason == auth.R_BAD_TAG


def test_link_frame_round_trip_is_attributed() -> None:
    data = compose.seal_message(
        messages.PING, {0: 1}, ALICE.id, 1, link_key=_ab_key(), dest=BOB.id, link=True
    )
    bob_keys = auth.LinkKeyCache(BOB, lookup={ALICE.id: ALICE.public}.get)
    v = auth.open_frame(data, NET_KEY, bob_keys, my_id=BOB.id)
    assert v.kind == auth.ACCEPT and v.attributed and v.blame is None
    # a node without the pairwise key (or with its own pair key) cannot verify it
    mallory_keys = auth.LinkKeyCache(MALLORY, lookup={ALICE.id: ALICE.public}.get)
    assert auth.open_frame(data, NET_KEY, mallory_keys).reason == auth.R_BAD_TAG
    assert auth.open_frame(data, NET_KEY, None).reason == auth.R_NO_KEY
    # reflected back to Alice: her own id
    alice_keys = auth.LinkKeyCache(ALICE, lookup={BOB.id: BOB.public}.get)
    assert auth.open_frame(data, NET_KEY, alice_keys, my_id=ALICE.id).reason == auth.R_OWN_FRAME


def test_seal_needs_the_right_key() -> None:
    f = Frame(messages.PING, ALICE.id, 1, flags=frame.FLAG_LINK)
    body = messages.encode_ping(1)
    with pytest.raises(ValueError):
        auth.seal_frame(f, body, network_key=NET_KEY)
    with pytest.raises(ValueError):
        auth.seal_frame(Frame(messages.PING, ALICE.id, 1), body, link_key=NET_KEY)
    with pytest.raises(ValueError):
        auth.seal_frame(Frame(messages.PING, ALICE.id, 1), body, network_key=b"short")


def _raw_frame(
    msg_type: int, body: bytes, source: bytes, seq: int, key: bytes, **kw: object
) -> bytes:
    f = Frame(msg_type, source, seq, **kw)  # type: ignore[arg-type]
    return frame.encode(f, body, lambda region: auth.tag(key, region))


def test_malformed_body_under_link_tag_is_attributed() -> None:
    bad_body = codec.packb({0: "not a nonce"})
    data = _raw_frame(
        messages.PING, bad_body, ALICE.id, 3, _ab_key(), dest=BOB.id, flags=frame.FLAG_LINK
    )
    v = auth.open_frame(data, NET_KEY, _ab_key())
    assert v.kind == auth.DROP_ATTRIBUTED and v.attributed and v.reason == auth.R_MALFORMED
    assert v.blame == ALICE.id
    assert auth.blame(v) == auth.MALFORMED


def test_unknown_type_is_not_misbehaviour_even_when_proven() -> None:
    data = _raw_frame(0x7E, codec.packb(1), ALICE.id, 3, _ab_key(), flags=frame.FLAG_LINK)
    v = auth.open_frame(data, NET_KEY, _ab_key())
    assert v.kind == auth.DROP_UNATTRIBUTED and v.reason == auth.R_UNKNOWN_TYPE
    assert v.blame is None


def test_attack_member_forging_victim_frames_gets_nothing_attributed() -> None:
    """Mallory holds the network key and puts Alice's id on forged frames. Bob (the
    receiver) must never blame Alice for any of them."""
    victim = ALICE.id
    bob_keys = auth.LinkKeyCache(
        BOB, lookup={ALICE.id: ALICE.public, MALLORY.id: MALLORY.public}.get
    )
    mallory_bob = auth.link_key(MALLORY.x_secret(), MALLORY.id, BOB.public)
    good_record = encode_alice_record(9)
    value = codec.unpackb(good_record)
    value[record.K_SIGNATURE] = bytes(63) + b"\x01"  # bad signature
    forged_record = codec.packb(value)
    value = codec.unpackb(good_record)
    value[record.K_SEQ] = 10  # altered after signing
    altered_record = codec.packb(value)
    forgeries = [
        # valid network tag, malformed bodies
        _raw_frame(messages.PING, codec.packb({0: "x"}), victim, 101, NET_KEY),
        _raw_frame(messages.INV, codec.packb({0: []}), victim, 102, NET_KEY),
        _raw_frame(messages.TX, b"\xc1", victim, 103, NET_KEY),
        # valid network tag, records with bad signatures claiming Alice
        _raw_frame(messages.ANNOUNCE, forged_record, victim, 104, NET_KEY),
        _raw_frame(messages.ANNOUNCE, altered_record, victim, 105, NET_KEY),
        # garbage tags
        _raw_frame(messages.PING, codec.packb({0: 1}), victim, 106, bytes(32)),
        # LINK frames: Mallory lacks the Alice-Bob key; uses her own or the network key
        _raw_frame(
            messages.PING,
            codec.packb({0: "x"}),
            victim,
            107,
            mallory_bob,
            dest=BOB.id,
            flags=frame.FLAG_LINK,
        ),
        _raw_frame(
            messages.PING,
            codec.packb({0: "x"}),
            victim,
            108,
            NET_KEY,
            dest=BOB.id,
            flags=frame.FLAG_LINK,
        ),
        # replay of a genuine Alice frame (accepted once already below)
        compose.seal_message(messages.PING, {0: 5}, victim, 100, network_key=NET_KEY),
    ]
    replay = ReplayTable()
    first = auth.open_frame(forgeries[-1], NET_KEY, bob_keys, replay, my_id=BOB.id)
    assert first.accepted
    reasons = []
    for data in forgeries:
        v = auth.open_frame(data, NET_KEY, bob_keys, replay, my_id=BOB.id)
        if v.accepted and v.frame.type == messages.ANNOUNCE:
            v, rec = auth.judge_record(v)
            assert rec is None
        assert not v.accepted
        assert v.blame is None and not v.attributed, v
        assert auth.blame(v) is None, v
        reasons.append(v.reason)
    assert reasons == [
        "malformed",
        "malformed",
        "malformed",
        "record_bad_signature",
        "record_bad_signature",
        "bad_tag",
        "bad_tag",
        "bad_tag",
        "replay",
    ]
    # the same bad record sent by Alice under her link key IS her fault
    data = _raw_frame(
        messages.ANNOUNCE, forged_record, victim, 200, _ab_key(), dest=BOB.id, flags=frame.FLAG_LINK
    )
    v = auth.open_frame(data, NET_KEY, bob_keys, replay, my_id=BOB.id)
    v, rec = auth.judge_record(v)
    assert v.kind == auth.DROP_ATTRIBUTED and v.blame == victim
    assert auth.blame(v) == auth.BAD_SIGNATURE


def encode_alice_record(seq: int) -> bytes:
    return record.encode_record({"seq": seq}, ALICE)


def test_judge_record_for_pex_entries_and_non_accepted_verdicts() -> None:
    good = record.encode_record({"seq": 3}, BOB)
    value = codec.unpackb(good)
    value[record.K_KIND] = 7
    body = {0: [codec.unpackb(good), value]}
    data = compose.seal_message(
        messages.PEX_RESPONSE, body, ALICE.id, 1, link_key=_ab_key(), link=True
    )
    v = auth.open_frame(data, NET_KEY, _ab_key())
    assert v.accepted
    v1, rec = auth.judge_record(v, value=v.value[0][0])
    assert v1 is v and rec is not None and rec.id == BOB.id
    v2, rec2 = auth.judge_record(v, value=v.value[0][1])
    assert rec2 is None and v2.reason == "record_malformed" and v2.blame == ALICE.id
    assert auth.blame(v2) == auth.MALFORMED
    assert auth.blame(v1) is None  # accepted: nothing to blame
    dropped = auth.open_frame(data, NET_KEY, bytes(32))
    assert auth.judge_record(dropped) == (dropped, None)


def test_stale_record_is_never_attributed() -> None:
    old = record.verify_record(encode_alice_record(1))
    held = record.verify_record(encode_alice_record(2))
    data = compose.seal_message(
        messages.ANNOUNCE, old.value, ALICE.id, 1, link_key=_ab_key(), link=True
    )
    v, rec = auth.judge_record(auth.open_frame(data, NET_KEY, _ab_key()), held=held)
    assert rec is None and v.reason == "record_stale_sequence" and v.blame is None
    assert auth.blame(v) is None


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (fragment.MALFORMED, auth.MALFORMED),
        (fragment.INCONSISTENT, auth.MALFORMED),
        (fragment.OVERSIZE, auth.PROTOCOL_VIOLATION),
        (fragment.BUSY, None),  # our capacity, not the sender's fault
        (fragment.QUOTA, None),
    ],
)
def test_blame_for_a_refused_fragment(reason: str, code: int | None) -> None:
    proven = fragment.ReassemblyError(reason, ALICE.id, 1, attributed=True)
    assert auth.blame(proven) == code
    assert auth.blame(fragment.ReassemblyError(reason, ALICE.id, 1)) is None  # unproven


def test_the_misbehaviour_codes_are_distinct_and_dense() -> None:
    codes = [
        auth.BAD_TAG,
        auth.BAD_SIGNATURE,
        auth.MALFORMED,
        auth.REPLAY,
        auth.FLOOD,
        auth.INVALID_SYNC,
        auth.MANUAL,
        auth.HANDSHAKE_FAILURE,
        auth.PROTOCOL_VIOLATION,
    ]
    assert sorted(codes) == list(range(len(codes)))  # a board indexes its prices by them


def test_forged_network_frames_cannot_slide_the_link_replay_window() -> None:
    replay = ReplayTable()
    forged = compose.seal_message(messages.PING, {0: 1}, ALICE.id, 40000, network_key=NET_KEY)
    assert auth.open_frame(forged, NET_KEY, replay=replay).accepted
    genuine = compose.seal_message(
        messages.PING, {0: 1}, ALICE.id, 5, link_key=_ab_key(), link=True
    )
    assert auth.open_frame(genuine, NET_KEY, _ab_key(), replay).accepted


def test_tag_checked_before_replay_window() -> None:
    replay = ReplayTable()
    bad = _raw_frame(messages.PING, codec.packb({0: 1}), ALICE.id, 500, bytes(32))
    assert auth.open_frame(bad, NET_KEY, replay=replay).reason == auth.R_BAD_TAG
    assert len(replay) == 0
    good = compose.seal_message(messages.PING, {0: 1}, ALICE.id, 400, network_key=NET_KEY)
    assert auth.open_frame(good, NET_KEY, replay=replay).accepted


SEALED = [
    compose.seal_message(messages.PING, {0: 7}, ALICE.id, 9, network_key=NET_KEY),
    compose.seal_message(
        messages.INV,
        {0: [[0, bytes(32)]]},
        ALICE.id,
        65535,
        link_key=_ab_key(),
        dest=BOB.id,
        link=True,
    ),
]


@settings(max_examples=600)
@given(st.sampled_from(range(len(SEALED))), st.data())
def test_any_single_bit_flip_is_rejected(which: int, data: st.DataObject) -> None:
    original = SEALED[which]
    bit = data.draw(st.integers(0, len(original) * 8 - 1))
    flipped = bytearray(original)
    flipped[bit // 8] ^= 1 << (bit % 8)
    v = auth.open_frame(bytes(flipped), NET_KEY, _ab_key())
    if bit // 8 == 2 and bit % 8 < 4:
        # hop_count is deliberately outside the tag (relays increment it): such a flip
        # is accepted only with every other field intact, or refused as malformed
        good = auth.open_frame(original, NET_KEY, _ab_key())
        assert (not v.accepted) or (v.value == good.value and v.frame.body == good.frame.body)
    else:
        assert not v.accepted, bit
        assert v.blame is None


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_open_frame_never_raises(data: bytes) -> None:
    v = auth.open_frame(data, NET_KEY, _ab_key(), ReplayTable(4))
    assert v.kind in (auth.DROP_UNATTRIBUTED, auth.DROP_ATTRIBUTED, auth.ACCEPT)
    assert not v.accepted
