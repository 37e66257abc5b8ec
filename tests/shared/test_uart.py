"""UART framing (COBS + CRC-16) and the link messages, on CPython and the unix port."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import link, uart
from lorawire.errors import DecodeError
from upy import run_upy

payloads = st.binary(max_size=uart.MAX_PACKET - 2)


def test_crc16_check_value() -> None:
    # The catalogue check value of CRC-16/CCITT-FALSE.
    assert uart.crc16(b"123456789") == 0x29B1


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (b"", b"\x01"),
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),
    ],
)
def test_cobs_matches_the_paper_examples(raw: bytes, encoded: bytes) -> None:
    assert uart.cobs_encode(raw) == encoded
    assert uart.cobs_decode(encoded) == raw


@settings(max_examples=1000)
@given(payloads)
def test_packet_round_trip_has_no_inner_zero(payload: bytes) -> None:
    packet = uart.encode_packet(payload)
    assert packet[-1] == 0 and 0 not in packet[:-1]
    assert uart.StreamDecoder().feed(packet) == [payload]


def test_oversize_payload_is_refused_on_encode() -> None:
    with pytest.raises(ValueError):
        uart.encode_packet(bytes(uart.MAX_PACKET))


@settings(max_examples=1000)
@given(
    st.lists(st.tuples(payloads, st.binary(max_size=40)), max_size=12),
    st.lists(st.integers(min_value=1, max_value=7), max_size=12),
)
def test_garbage_between_packets_loses_nothing_but_itself(
    items: list[tuple[bytes, bytes]], chunk_sizes: list[int]
) -> None:
    # Garbage ends with a delimiter, as line noise followed by the next packet's resync.
    stream = b"".join(garbage + b"\x00" + uart.encode_packet(p) for p, garbage in items)
    decoder = uart.StreamDecoder()
    got: list[bytes] = []
    pos = 0
    sizes = chunk_sizes or [64]
    i = 0
    while pos < len(stream):
        step = sizes[i % len(sizes)]
        got.extend(decoder.feed(stream[pos : pos + step]))
        pos += step
        i += 1
    wanted = [p for p, _ in items]
    # A garbage run may by chance be a valid packet (2^-16 after COBS); it can only add.
    assert [g for g in got if g in wanted] == wanted


@settings(max_examples=500)
@given(st.lists(payloads, min_size=1, max_size=6), st.data())
def test_a_corrupted_byte_loses_only_its_packet(packets: list[bytes], data: st.DataObject) -> None:
    encoded = [bytearray(uart.encode_packet(p)) for p in packets]
    victim = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    pos = data.draw(st.integers(min_value=0, max_value=len(encoded[victim]) - 2))
    encoded[victim][pos] ^= data.draw(st.integers(min_value=1, max_value=255))
    got = uart.StreamDecoder().feed(b"".join(bytes(e) for e in encoded))
    others = [p for i, p in enumerate(packets) if i != victim]
    # Every intact packet survives, in order; the corrupted one is lost (or, with a
    # 2^-16 CRC collision, arrives altered as one extra packet).
    assert len(got) - len(others) in (0, 1)
    remaining = iter(got)
    assert all(any(g == p for g in remaining) for p in others)


@settings(max_examples=1000)
@given(st.binary(max_size=2000))
def test_decoder_buffer_is_bounded_and_never_raises(data: bytes) -> None:
    decoder = uart.StreamDecoder()
    for payload in decoder.feed(data):
        assert len(payload) <= uart.MAX_PACKET
    # the bound under test is the decoder's own buffer, which it does not show
    assert len(decoder._buf) == uart.MAX_ENCODED


def test_oversize_run_is_dropped_to_the_next_delimiter() -> None:
    decoder = uart.StreamDecoder()
    got = decoder.feed(b"\x01" * 5000 + b"\x00" + uart.encode_packet(b"after"))
    assert got == [b"after"]
    assert decoder.oversize == 1


def test_link_messages_round_trip() -> None:
    payload = link.encode(link.FRAME_UP, frame=b"\x10" * 40, rssi=-97, snr_q4=-30)
    assert link.decode(payload) == (
        link.FRAME_UP,
        {"frame": b"\x10" * 40, "rssi": -97, "snr_q4": -30},
    )
    ban = link.encode(link.BAN, node_id=b"\x01" * 8, seconds=3600)
    assert link.decode(ban) == (link.BAN, {"node_id": b"\x01" * 8, "seconds": 3600})


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x02",
        b"\xee\x80",  # unknown type
        bytes([link.FRAME_UP]) + bytes.fromhex("90"),  # body not a map
        bytes([link.BAN]) + bytes.fromhex("8100c403010203"),  # node id of 3 bytes
        bytes([link.UNBAN]) + bytes.fromhex("80"),  # missing field
        bytes([link.UNBAN]) + bytes.fromhex("8200c408") + bytes(8) + b"\x05\x01",  # unknown key
    ],
)
def test_bad_link_packets_raise_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        link.decode(payload)


@settings(max_examples=2000)
@given(st.binary(max_size=80))
def test_random_link_payloads_raise_only_decode_error(payload: bytes) -> None:
    try:
        link.decode(payload)
    except DecodeError:
        pass


def test_encode_refuses_missing_unknown_and_bad_fields() -> None:
    with pytest.raises(ValueError):
        link.encode(link.BAN, node_id=b"\x01" * 8)
    with pytest.raises(ValueError):
        link.encode(link.UNBAN, node_id=b"\x01" * 8, extra=1)
    with pytest.raises(ValueError):
        link.encode(link.UNBAN, node_id=b"\x01" * 7)


@pytest.mark.upy
def test_same_bytes_on_the_unix_port() -> None:
    code = """
from lorawire import uart, link
import binascii
p = uart.encode_packet(link.encode(link.FRAME_UP, frame=bytes(range(40)), rssi=-97, snr_q4=-30))
print(binascii.hexlify(p).decode())
d = uart.StreamDecoder()
got = d.feed(b'noise\\x00' + p[:7] + b'\\x00' + p + p)
print(len(got), d.bad_cobs + d.bad_crc, link.decode(got[0])[1]['rssi'])
"""
    out = run_upy(code).stdout.split()
    expected = uart.encode_packet(
        link.encode(link.FRAME_UP, frame=bytes(range(40)), rssi=-97, snr_q4=-30)
    )
    assert out[0] == expected.hex()
    assert out[1:] == ["2", "2", "-97"]
