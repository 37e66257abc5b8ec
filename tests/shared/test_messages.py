"""Message body schemas: every type checked field by field, both directions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import upy_frames_check
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import compose, frame, messages, names
from lorawire.codec import packb
from lorawire.errors import DecodeError
from lorawire.messages import UnknownType

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "frames.json").read_text())
BODY_ERRORS = [v for v in VECTORS["errors"] if v["error"] in ("body", "unknown")]
H = bytes(range(32))

records = st.dictionaries(
    st.integers(0, 20), st.integers(0, 1000) | st.binary(max_size=40), min_size=1, max_size=5
)
u32 = st.integers(0, 0xFFFFFFFF)
inventory = st.lists(
    st.tuples(st.integers(0, 1), st.binary(min_size=32, max_size=32)).map(list),
    min_size=1,
    max_size=32,
)
small_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.binary(max_size=8)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.integers(0, 9) | st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def fragments(draw: st.DrawFn) -> list[Any]:
    count = draw(st.integers(1, 16))
    return [
        draw(st.integers(0, 0xFFFF)),
        draw(st.integers(0, count - 1)),
        count,
        draw(st.binary(min_size=1, max_size=50)),
    ]


VALID = {
    messages.ANNOUNCE: records,
    messages.PEX_REQUEST: st.fixed_dictionaries(
        {0: st.integers(1, 16), 1: st.lists(st.binary(min_size=4, max_size=4), max_size=16)}
    ),
    messages.PEX_RESPONSE: st.fixed_dictionaries({0: st.lists(records, max_size=3)}),
    messages.PING: st.fixed_dictionaries({0: u32}),
    messages.PONG: st.fixed_dictionaries({0: u32}),
    messages.ACK: st.fixed_dictionaries({0: st.integers(0, 0xFFFF)}),
    messages.INV: st.fixed_dictionaries({0: inventory}),
    messages.GETDATA: st.fixed_dictionaries({0: inventory}),
    messages.TX: st.fixed_dictionaries({0: st.binary(min_size=1, max_size=300)}),
    messages.BLOCK: st.fixed_dictionaries({0: st.binary(min_size=1, max_size=300)}),
    messages.REJECT: st.fixed_dictionaries(
        {
            0: st.integers(0, 1),
            1: st.binary(min_size=32, max_size=32),
            2: st.integers(0, 255),
            3: st.text(max_size=64).filter(lambda t: len(t.encode()) <= 64),
        }
    ),
    messages.FRAGMENT: fragments(),
    messages.HELLO: st.dictionaries(st.integers(0, 9), small_values, max_size=4),
    messages.AUTH: st.dictionaries(st.integers(0, 9), small_values, max_size=4),
    messages.UART_LINK: small_values,
}


def test_every_wire_type_has_a_schema() -> None:
    assert set(VALID) == set(names.MESSAGE_TYPES)
    assert names.MESSAGE_TYPES == {
        0x01: "ANNOUNCE",
        0x02: "PEX_REQUEST",
        0x03: "PEX_RESPONSE",
        0x04: "PING",
        0x05: "PONG",
        0x06: "ACK",
        0x10: "INV",
        0x11: "GETDATA",
        0x12: "TX",
        0x13: "BLOCK",
        0x14: "REJECT",
        0x20: "FRAGMENT",
        0x30: "HELLO",
        0x31: "AUTH",
        0x3F: "UART_LINK",
    }


@settings(max_examples=2000)
@given(st.data())
def test_valid_bodies_round_trip(data: st.DataObject) -> None:
    msg_type = data.draw(st.sampled_from(sorted(VALID)))
    fields = data.draw(VALID[msg_type])
    body = messages.encode_body(msg_type, fields)
    assert messages.decode_body(msg_type, body) == fields
    assert packb(messages.decode_body(msg_type, body)) == body


@settings(max_examples=2000)
@given(st.integers(0, 255), st.binary(max_size=80))
def test_random_bodies_raise_only_decode_error(msg_type: int, body: bytes) -> None:
    try:
        messages.decode_body(msg_type, body)
    except UnknownType as exc:
        assert exc.msg_type == msg_type
        assert msg_type not in names.MESSAGE_TYPES
    except DecodeError:
        assert msg_type in names.MESSAGE_TYPES


@settings(max_examples=1000)
@given(st.integers(0, 255), small_values)
def test_random_values_raise_only_decode_error(msg_type: int, value: Any) -> None:
    try:
        body = packb(value)
    except (TypeError, ValueError):
        return
    try:
        messages.decode_body(msg_type, body)
    except DecodeError:
        return
    assert msg_type in names.MESSAGE_TYPES


@pytest.mark.parametrize("vec", BODY_ERRORS, ids=[v["name"] for v in BODY_ERRORS])
def test_broken_body_vectors(vec: dict[str, Any]) -> None:
    assert upy_frames_check.stage_of(bytes.fromhex(vec["hex"]), vec["max_len"]) == vec["error"]


def test_unknown_type_is_reported_with_its_number() -> None:
    with pytest.raises(UnknownType) as info:
        messages.decode_body(0x7E, b"\x80")
    assert info.value.msg_type == 0x7E
    assert isinstance(info.value, DecodeError)
    assert "0x7e" in str(info.value)
    # The type is checked before the body: garbage under an unknown type is still "unknown".
    with pytest.raises(UnknownType):
        messages.decode_body(0x7E, b"\xc1")


@pytest.mark.parametrize(
    ("msg_type", "value", "reason"),
    [
        (messages.PING, {0: 1 << 32}, r"PING: nonce \(key 0\) must be an int in 0\.\.4294967295"),
        (messages.PONG, {1: 5}, "PONG: key 0 missing"),
        (messages.ACK, {0: 1, 1: 1}, "ACK: body must have exactly the keys"),
        (messages.ACK, [1], "ACK: body must be a map"),
        (messages.PEX_REQUEST, {0: 17, 1: []}, r"want \(key 0\) must be an int in 1\.\.16"),
        (messages.PEX_REQUEST, {0: 1, 1: [b"abc"]}, "prefix must be 4 bytes"),
        (messages.PEX_REQUEST, {0: 1, 1: [b"abcd"] * 17}, "list of 0..16"),
        (messages.PEX_RESPONSE, {0: [{}]}, "non-empty map"),
        (messages.PEX_RESPONSE, {0: [{0: 1}] * 33}, "list of 0..32"),
        (messages.INV, {0: [[0, H]] * 33}, "list of 1..32"),
        (messages.INV, {0: [[0, H, 1]]}, r"entry \[kind, hash\]"),
        (messages.GETDATA, {0: [[True, H]]}, "inventory kind"),
        (messages.TX, {0: "text"}, r"raw bytes \(key 0\)"),
        (messages.REJECT, {0: 0, 1: H, 2: 256, 3: ""}, "reason code"),
        (messages.REJECT, {0: 0, 1: H, 2: 1, 3: "é" * 33}, "at most 64 bytes"),
        (messages.REJECT, {0: 0, 1: H, 2: 1, 3: b"bytes"}, r"text \(key 3\)"),
        (messages.FRAGMENT, [1, 0, 0, b"x"], "count must be at least 1"),
        (messages.HELLO, [1], "HELLO: body must be a map"),
    ],
)
def test_schema_violations_say_why(msg_type: int, value: Any, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        messages.decode_body(msg_type, packb(value))
    # The encoder runs the same checks: a node never sends what it would refuse.
    with pytest.raises(ValueError, match=reason):
        messages.encode_body(msg_type, value)


def test_builders_give_the_documented_bytes() -> None:
    assert messages.encode_ping(1) == bytes.fromhex("810001")
    assert compose.encode_pong(0xDEADBEEF) == bytes.fromhex("8100cedeadbeef")
    assert compose.encode_ack(513) == bytes.fromhex("8100cd0201")
    assert messages.encode_pex_request(4, [b"abcd"]) == bytes.fromhex("82000401 91c40461626364")
    assert compose.encode_inv([(1, H)]) == bytes.fromhex("8100919201c420") + H
    assert compose.encode_getdata([(0, H)]) == bytes.fromhex("8100919200c420") + H
    assert compose.encode_tx(b"\x01\x02") == bytes.fromhex("8100c4020102")
    assert compose.encode_block(b"\x03") == bytes.fromhex("8100c40103")
    assert compose.encode_reject(0, H, 0x12, "dup") == (
        bytes.fromhex("840000 01c420") + H + bytes.fromhex("021203a3647570")
    )
    assert compose.encode_announce({0: 1}) == bytes.fromhex("810001")
    assert compose.encode_pex_response([{0: 1}]) == bytes.fromhex("810091810001")
    text = "é" * 32  # 64 bytes of UTF-8: the limit
    assert messages.decode_body(messages.REJECT, compose.encode_reject(1, H, 1, text))[3] == text


def test_fragmented_message_payload() -> None:
    body = compose.encode_block(bytes(500))
    payload = messages.fragment_payload(messages.BLOCK, body)
    assert payload[0] == messages.BLOCK
    assert messages.parse_fragment_payload(payload) == (messages.BLOCK, body)
    with pytest.raises(ValueError):
        messages.fragment_payload(messages.FRAGMENT, b"\x90")
    with pytest.raises(ValueError):
        messages.fragment_payload(0x7E, b"\x90")
    with pytest.raises(DecodeError):
        messages.parse_fragment_payload(bytes([messages.FRAGMENT]) + b"\x90")
    with pytest.raises(DecodeError):
        messages.parse_fragment_payload(b"\x04")
    t, raw = messages.parse_fragment_payload(b"\x7e\x80")
    with pytest.raises(UnknownType):
        messages.decode_body(t, raw)


def test_build_and_parse_a_whole_frame() -> None:
    src, dst = b"\x01" * 8, b"\x02" * 8
    data = compose.build(messages.PING, {0: 9}, src, 77, b"T" * 8, dest=dst, hop_limit=0)
    f, fields = compose.parse(data)
    assert fields == {0: 9}
    assert (f.type, f.source, f.dest, f.seq, f.hop_limit, f.tag) == (
        messages.PING,
        src,
        dst,
        77,
        0,
        b"T" * 8,
    )
    assert f.flags == frame.FLAG_DEST
    with pytest.raises(ValueError):
        compose.build(messages.PING, {0: -1}, src, 77, b"T" * 8)
    big = {0: bytes(300)}
    with pytest.raises(ValueError, match="exceeds 255"):
        compose.build(messages.TX, big, src, 1, b"T" * 8)
    data = compose.build(messages.TX, big, src, 1, b"T" * 8, max_len=frame.MAX_TCP_FRAME)
    assert compose.parse(data, frame.MAX_TCP_FRAME)[1] == big


def test_a_record_fits_one_lora_frame_per_pex_response() -> None:
    # A 170-byte record (the limit the record format must meet) fits one unicast frame.
    record = {0: bytes(32), 1: 1, 2: 0, 3: 1, 9: bytes(64), 5: bytes(58)}
    assert len(packb(record)) == 170
    body = compose.encode_pex_response([record])
    assert frame.OVERHEAD_UNICAST + len(body) <= frame.MAX_LORA_FRAME
    assert frame.OVERHEAD_UNICAST + len(compose.encode_pex_response([record] * 2)) > 255
