"""Signed peer records: encoding, size bound, verification reasons, tampering."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import auth, codec, compose, ed25519, frame, messages, record
from lorawire.errors import DecodeError
from lorawire.identity import Identity
from lorawire.record import RecordError, decode_record, encode_record, verify_record

ALICE = Identity(bytes(range(32)))
BOB = Identity(bytes(range(1, 33)))
NET_KEY = bytes(range(100, 132))

LARGEST = {
    "kind": record.KIND_GATEWAY,
    "services": record.SERVICES_MAX,
    "seq": record.SEQ_MAX,
    "endpoints": [(b"\xfe\x80" + b"\xff" * 14, 65535), (b"\x20\x01" + b"\xee" * 14, 65534)],
    "mesh": (255, 12),
}


def _value(data: bytes) -> dict[int, Any]:
    value = codec.unpackb(data)
    assert isinstance(value, dict)
    return value


def test_round_trip_keeps_every_field_and_derives_the_id() -> None:
    data = encode_record(
        {
            "kind": record.KIND_FULL,
            "services": record.SVC_RELAY | record.SVC_PEX,
            "seq": 7,
            "endpoints": [(bytes([192, 0, 2, 1]), 8333)],
            "mesh": (0, 9),
        },
        ALICE,
    )
    rec = verify_record(data)
    assert rec.id == ALICE.id
    assert rec.public == ALICE.public
    assert rec.kind == record.KIND_FULL
    assert rec.services == 3
    assert rec.seq == 7
    assert rec.endpoints == ((bytes([192, 0, 2, 1]), 8333),)
    assert rec.mesh == (0, 9)
    assert rec.encoded == data
    # the id is not on the wire
    assert ALICE.id not in data
    # the signature covers the domain-separated canonical map without the signature
    unsigned = {k: v for k, v in _value(data).items() if k != record.K_SIGNATURE}
    assert ed25519.verify(ALICE.public, b"LCR1" + codec.packb(unsigned), rec.signature)
    # decoding the already-decoded map (an ANNOUNCE body) gives the same record
    assert decode_record(_value(data)) == rec


def test_seed_bytes_and_identity_sign_the_same_record() -> None:
    assert encode_record({"seq": 1}, ALICE.seed) == encode_record({"seq": 1}, ALICE)


def test_largest_record_fits_170_bytes_and_one_lora_frame() -> None:
    data = encode_record(LARGEST, ALICE)
    assert len(data) == 166
    assert len(data) <= record.MAX_RECORD_LEN
    rec = verify_record(data)
    wire = compose.seal_message(messages.ANNOUNCE, rec.value, ALICE.id, 0xFFFF, network_key=NET_KEY)
    assert len(wire) == frame.OVERHEAD_BROADCAST + len(data) <= frame.MAX_LORA_FRAME
    verdict = auth.open_frame(wire, NET_KEY)
    assert verdict.accepted
    verdict2, rec2 = auth.judge_record(verdict)
    assert rec2 == rec and verdict2 is verdict


def test_smallest_record() -> None:
    data = encode_record({"seq": 0}, ALICE)
    assert len(data) == 1 + 35 + 2 + 2 + 2 + 67
    rec = verify_record(data)
    assert rec.endpoints == () and rec.mesh is None and rec.kind == record.KIND_MESH


def test_id_mismatch() -> None:
    data = encode_record({"seq": 1}, ALICE)
    assert verify_record(data, expected_id=ALICE.id).id == ALICE.id
    with pytest.raises(RecordError) as exc:
        verify_record(data, expected_id=BOB.id)
    assert exc.value.reason == "id_mismatch"


def _resigned_by(data: bytes, signer: Identity) -> bytes:
    value = _value(data)
    del value[record.K_SIGNATURE]
    value[record.K_SIGNATURE] = signer.sign(b"LCR1" + codec.packb(value))
    return codec.packb(value)


def test_bad_signature_cases() -> None:
    data = encode_record({"seq": 5, "services": 1}, ALICE)
    # a field changed after signing
    value = _value(data)
    value[record.K_SEQ] = 6
    with pytest.raises(RecordError) as exc:
        verify_record(codec.packb(value))
    assert exc.value.reason == "bad_signature"
    # signed by another key than the one in the record (claiming Alice's id)
    with pytest.raises(RecordError) as exc:
        verify_record(_resigned_by(data, BOB), expected_id=ALICE.id)
    assert exc.value.reason == "bad_signature"
    # signature without the domain prefix
    value = _value(data)
    del value[record.K_SIGNATURE]
    value[record.K_SIGNATURE] = ALICE.sign(codec.packb(value))
    with pytest.raises(RecordError) as exc:
        verify_record(codec.packb(value))
    assert exc.value.reason == "bad_signature"


def test_sequence_rules_and_duplicates() -> None:
    old = verify_record(encode_record({"seq": 10}, ALICE))
    same_seq_other_content = encode_record({"seq": 10, "services": 4}, ALICE)
    newer = encode_record({"seq": 11}, ALICE)
    for held_seq in (10, 11, 1000):
        with pytest.raises(RecordError) as exc:
            verify_record(old.encoded, held_seq=held_seq)
        assert exc.value.reason == "stale_sequence"
    assert verify_record(old.encoded, held_seq=9).seq == 10
    with pytest.raises(RecordError) as exc:
        verify_record(old.encoded, held=old)
    assert exc.value.reason == "duplicate"
    with pytest.raises(RecordError) as exc:
        verify_record(same_seq_other_content, held=old)
    assert exc.value.reason == "stale_sequence"
    assert verify_record(newer, held=old).seq == 11


def test_cheap_checks_come_before_the_signature() -> None:
    """A stale copy with a broken signature is reported stale: no verify is spent on it."""
    value = _value(encode_record({"seq": 3}, ALICE))
    value[record.K_SIGNATURE] = bytes(64)
    with pytest.raises(RecordError) as exc:
        verify_record(codec.packb(value), held_seq=3)
    assert exc.value.reason == "stale_sequence"


def _mutations() -> list[tuple[str, Any]]:
    base = _value(encode_record(LARGEST, ALICE))

    def with_(key: int, val: Any) -> dict[int, Any]:
        v = dict(base)
        v[key] = val
        return v

    def without(key: int) -> dict[int, Any]:
        v = dict(base)
        del v[key]
        return v

    ep = base[record.K_ENDPOINTS]
    return [
        ("not a map", [1, 2]),
        ("missing key", without(record.K_PUBLIC)),
        ("missing signature", without(record.K_SIGNATURE)),
        ("missing seq", without(record.K_SEQ)),
        ("extra key", with_(9, 1)),
        ("str key", {**base, "x": 1}),
        ("short public key", with_(record.K_PUBLIC, bytes(31))),
        ("short signature", with_(record.K_SIGNATURE, bytes(63))),
        ("kind 4", with_(record.K_KIND, 4)),
        ("kind bool", with_(record.K_KIND, True)),
        ("services too big", with_(record.K_SERVICES, 0x10000)),
        ("seq negative", with_(record.K_SEQ, -1)),
        ("seq too big", with_(record.K_SEQ, 2**32)),
        ("seq as bytes", with_(record.K_SEQ, b"\x01")),
        ("empty endpoints", with_(record.K_ENDPOINTS, [])),
        ("three endpoints", with_(record.K_ENDPOINTS, [ep[0], ep[1], [b"\x01\x02\x03\x04", 1]])),
        ("host 5 bytes", with_(record.K_ENDPOINTS, [[b"\x01" * 5, 1]])),
        ("host as str", with_(record.K_ENDPOINTS, [["1.2.3.4", 1]])),
        ("unspecified host", with_(record.K_ENDPOINTS, [[bytes(4), 1]])),
        ("port 0", with_(record.K_ENDPOINTS, [[b"\x01\x02\x03\x04", 0]])),
        ("port too big", with_(record.K_ENDPOINTS, [[b"\x01\x02\x03\x04", 65536]])),
        ("endpoint triple", with_(record.K_ENDPOINTS, [[b"\x01\x02\x03\x04", 1, 2]])),
        ("endpoint twice", with_(record.K_ENDPOINTS, [ep[0], ep[0]])),
        ("sf 13", with_(record.K_MESH, [1, 13])),
        ("sf 5", with_(record.K_MESH, [1, 5])),
        ("region 256", with_(record.K_MESH, [256, 7])),
        ("mesh single", with_(record.K_MESH, [1])),
    ]


@pytest.mark.parametrize(("name", "value"), _mutations(), ids=[m[0] for m in _mutations()])
def test_malformed_fields(name: str, value: Any) -> None:
    for form in (value, codec.packb(value)):
        with pytest.raises(RecordError) as exc:
            verify_record(form)
        assert exc.value.reason == "malformed"
        assert isinstance(exc.value, DecodeError)


def test_malformed_bytes() -> None:
    data = encode_record({"seq": 1}, ALICE)
    for bad in (b"", data[:-1], data + b"\x00", b"\xc1", bytes(200)):
        with pytest.raises(RecordError) as exc:
            decode_record(bad)
        assert exc.value.reason == "malformed"


@pytest.mark.parametrize(
    "fields",
    [
        {"seq": -1},
        {},
        {"seq": 1, "kind": 9},
        {"seq": 1, "endpoints": [(b"\x01\x02\x03", 80)]},
        {"seq": 1, "mesh": (0, 4)},
        {"seq": 1, "bogus": 1},
        {"seq": 1, "endpoints": [(b"\x01\x02\x03\x04", 1)] * 3},
    ],
)
def test_encode_refuses_what_decode_would_refuse(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        encode_record(fields, ALICE)


hosts = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16)).filter(
    lambda h: any(h)
)
endpoint_lists = st.lists(st.tuples(hosts, st.integers(1, 65535)), max_size=2, unique=True)
record_fields = st.fixed_dictionaries(
    {
        "kind": st.integers(0, 3),
        "services": st.integers(0, 0xFFFF),
        "seq": st.integers(0, 2**32 - 1),
        "endpoints": endpoint_lists,
        "mesh": st.none() | st.tuples(st.integers(0, 255), st.integers(6, 12)),
    }
)


@settings(max_examples=200)
@given(record_fields)
def test_any_valid_record_round_trips_within_170_bytes(fields: dict[str, Any]) -> None:
    data = encode_record(fields, BOB)
    assert len(data) <= record.MAX_RECORD_LEN
    rec = verify_record(data, expected_id=BOB.id)
    assert rec.kind == fields["kind"] and rec.seq == fields["seq"]
    assert list(rec.endpoints) == [tuple(e) for e in fields["endpoints"]]
    assert rec.mesh == fields["mesh"]


FLIP_BASE = encode_record(LARGEST, ALICE)


@settings(max_examples=400)
@given(st.integers(0, len(FLIP_BASE) * 8 - 1))
def test_any_single_bit_flip_is_rejected(bit: int) -> None:
    data = bytearray(FLIP_BASE)
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(RecordError):
        verify_record(bytes(data))


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_record_error(data: bytes) -> None:
    with pytest.raises(RecordError):
        verify_record(data)
