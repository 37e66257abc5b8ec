"""Frame header v1: layout, validation of every field, tag region, relaying."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import frames_vectors_gen as gen
import pytest
import upy_frames_check
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import compose, frame, messages, names
from lorawire.errors import DecodeError
from lorawire.frame import Frame

ROOT = Path(__file__).resolve().parents[2]
VECTORS_PATH = ROOT / "tests" / "vectors" / "frames.json"
VECTORS = json.loads(VECTORS_PATH.read_text())
PROTOCOL = ROOT / "docs" / "PROTOCOL.md"

ids = st.binary(min_size=8, max_size=8)


@st.composite
def frames(draw: st.DrawFn) -> tuple[Frame, bytes, bytes]:
    hop_limit = draw(st.integers(0, 15))
    dest = draw(st.none() | ids)
    f = Frame(
        draw(st.integers(0, 255)),
        draw(ids),
        draw(st.integers(0, 0xFFFF)),
        dest,
        draw(st.sampled_from([0, 2, 4, 6])),
        hop_limit,
        draw(st.integers(0, hop_limit)),
    )
    room = frame.MAX_LORA_FRAME - f.header_len() - frame.TAG_LEN
    # Mostly short bodies (fast to generate), sometimes one that fills the frame.
    size = draw(st.sampled_from([room, 1]) | st.integers(1, 48))
    body = draw(st.binary(min_size=size, max_size=size))
    tag = draw(st.binary(min_size=8, max_size=8))
    return f, body, tag


def test_overheads_match_the_budget() -> None:
    assert frame.OVERHEAD_BROADCAST == 21 <= 24
    assert frame.OVERHEAD_UNICAST == 29
    header = frame.encode_header(messages.PING, b"\xaa" * 8, 0x1234)
    assert len(header) == frame.HEADER_BROADCAST
    assert header.hex() == "100430" + "aa" * 8 + "1234"
    header = frame.encode_header(5, b"\xaa" * 8, 1, b"\xbb" * 8, frame.FLAG_LINK, 15, 2)
    assert header.hex() == "1305f2" + "aa" * 8 + "bb" * 8 + "0001"


def test_vectors_file_is_what_the_generator_produces() -> None:
    assert VECTORS_PATH.read_text() == gen.render(), "run tests/shared/frames_vectors_gen.py"


def test_vectors_cover_every_type_and_enough_errors() -> None:
    types = {v["type"] for v in VECTORS["frames"]}
    assert types == set(names.MESSAGE_TYPES) - {messages.UART_LINK}
    assert len(VECTORS["errors"]) >= 15
    assert {v["error"] for v in VECTORS["errors"]} == {"frame", "body", "unknown"}


def test_protocol_doc_shows_every_example_frame() -> None:
    text = PROTOCOL.read_text()
    assert gen.markdown() in text, "paste `frames_vectors_gen.py --markdown` into PROTOCOL.md"
    doc = re.sub(r"\s+", "", text)
    for v in VECTORS["frames"]:
        assert v["hex"] in doc, f"{v['name']} example missing from docs/PROTOCOL.md"


def test_vector_checks_pass_on_cpython(capsys: pytest.CaptureFixture[str]) -> None:
    failures = upy_frames_check.main(str(VECTORS_PATH), 3000)
    out = capsys.readouterr().out
    assert failures == 0, out
    assert "fuzz: 3000 failures: 0" in out


@pytest.mark.parametrize("vec", VECTORS["frames"], ids=[v["name"] for v in VECTORS["frames"]])
def test_example_frame_decodes(vec: dict[str, Any]) -> None:
    data = bytes.fromhex(vec["hex"])
    f = frame.decode(data)
    assert (f.version, f.type, f.seq) == (1, vec["type"], vec["seq"])
    assert frame.tagged_region(data) == data[:2] + bytes([data[2] & 0xF0]) + data[3:-8]
    assert f.body == bytes.fromhex(vec["body"])


@pytest.mark.parametrize(
    "vec",
    [v for v in VECTORS["errors"] if v["error"] == "frame"],
    ids=[v["name"] for v in VECTORS["errors"] if v["error"] == "frame"],
)
def test_broken_frame_is_refused(vec: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        frame.decode(bytes.fromhex(vec["hex"]), vec["max_len"])


def test_error_reasons_name_the_field() -> None:
    ping = bytes.fromhex(VECTORS["frames"][3]["hex"])
    cases = [
        (bytes([0x20]) + ping[1:], "version 2"),
        (bytes([0x18]) + ping[1:], "reserved flag"),
        (ping[:2] + bytes([0x01]) + ping[3:], "hop_count 1 exceeds hop_limit 0"),
        (ping[:10], "shorter than the minimum"),
        (bytes([0x11]) + ping[1:], "no room for a body"),
    ]
    for data, reason in cases:
        with pytest.raises(DecodeError, match=reason):
            frame.decode(data)
    with pytest.raises(DecodeError, match="exceeds 20"):
        frame.decode(ping, max_len=20)


def test_tcp_frames_may_be_larger() -> None:
    big = Frame(messages.TX, b"\x01" * 8, 1)
    body = compose.encode_tx(bytes(1000))
    with pytest.raises(ValueError, match="exceeds 255"):
        frame.encode(big, body, bytes(8))
    data = frame.encode(big, body, bytes(8), max_len=frame.MAX_TCP_FRAME)
    with pytest.raises(DecodeError):
        frame.decode(data)
    assert frame.decode(data, frame.MAX_TCP_FRAME).body == body


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"msg_type": 256}, "message type"),
        ({"seq": 0x10000}, "sequence"),
        ({"seq": -1}, "sequence"),
        ({"flags": frame.FLAG_RESERVED}, "reserved"),
        ({"flags": frame.FLAG_DEST}, "DEST flag without"),
        ({"hop_limit": 16}, "hop_limit"),
        ({"hop_limit": 2, "hop_count": 3}, "exceeds"),
        ({"source": b"short"}, "source"),
        ({"dest": b"\x01" * 9}, "dest"),
        ({"msg_type": True}, "message type"),
    ],
)
def test_encode_header_refuses_bad_fields(kwargs: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {"msg_type": 4, "source": b"\x01" * 8, "seq": 0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=reason):
        frame.encode_header(**args)


def test_encode_refuses_bad_body_and_tag() -> None:
    f = Frame(4, b"\x01" * 8, 0)
    with pytest.raises(ValueError, match="body"):
        frame.encode(f, b"", bytes(8))
    with pytest.raises(ValueError, match="tag"):
        frame.encode(f, b"\x80", bytes(7))
    with pytest.raises(ValueError, match="tag"):
        frame.encode(f, b"\x80", lambda region: region)


def test_tag_fn_sees_the_region_with_hop_count_zeroed() -> None:
    seen: list[bytes] = []

    def tag_fn(region: bytes) -> bytes:
        seen.append(region)
        return b"T" * 8

    f = Frame(4, b"\x01" * 8, 7, hop_limit=5, hop_count=3)
    data = frame.encode(f, b"\x80", tag_fn)
    assert seen == [frame.tagged_region(data)]
    assert seen[0][2] == 0x50 and data[2] == 0x53
    assert data.endswith(b"T" * 8)


def test_relaying_counts_hops_until_the_limit() -> None:
    data = frame.encode(Frame(4, b"\x01" * 8, 7, hop_limit=2), b"\x80", bytes(8))
    one = frame.next_hop(data)
    assert one is not None
    two = frame.next_hop(one)
    assert two is not None
    assert frame.decode(two).hop_count == 2
    assert frame.next_hop(two) is None
    with pytest.raises(ValueError):
        frame.with_hop(data, 3)
    assert frame.with_hop(two, 0) == data


def test_peek_source_reads_the_header_only() -> None:
    data = frame.encode(Frame(4, b"\x42" * 8, 7), b"\x80", bytes(8))
    assert frame.peek_source(data[:13]) == b"\x42" * 8
    with pytest.raises(DecodeError):
        frame.peek_source(data[:12])
    with pytest.raises(DecodeError):
        frame.peek_source(b"\x20" + data[1:])


@settings(max_examples=2000)
@given(st.binary(max_size=300), st.sampled_from([frame.MAX_LORA_FRAME, frame.MAX_TCP_FRAME]))
def test_random_bytes_raise_only_decode_error(data: bytes, max_len: int) -> None:
    try:
        f = frame.decode(data, max_len)
    except DecodeError:
        return
    assert f.version == 1 and f.hop_count <= f.hop_limit <= 15
    assert len(f.body) >= 1 and len(f.tag) == 8
    assert frame.peek_source(data) == f.source
    assert frame.tagged_region(data) + f.tag == data[:2] + bytes([data[2] & 0xF0]) + data[3:]


@settings(max_examples=2000)
@given(frames())
def test_encode_decode_round_trip(case: tuple[Frame, bytes, bytes]) -> None:
    f, body, tag = case
    data = frame.encode(f, body, tag)
    assert len(data) <= frame.MAX_LORA_FRAME
    back = frame.decode(data)
    f.body, f.tag = body, tag
    assert back == f
    assert frame.encode(back, back.body, back.tag) == data


@settings(max_examples=1000)
@given(frames(), st.data())
def test_any_bit_flip_outside_hop_count_changes_what_the_tag_covers(
    case: tuple[Frame, bytes, bytes], data: st.DataObject
) -> None:
    f, body, tag = case
    raw = frame.encode(f, body, tag)
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 0x80 >> (bit % 8)
    try:
        frame.decode(bytes(flipped))
    except DecodeError:
        return
    same_cover = frame.tagged_region(bytes(flipped)) == frame.tagged_region(raw)
    same_tag = bytes(flipped[-8:]) == raw[-8:]
    hop_count_bit = bit // 8 == 2 and bit % 8 >= 4
    assert (same_cover and same_tag) == hop_count_bit
