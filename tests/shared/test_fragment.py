"""Fragmentation and bounded reassembly."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import fragment, frame, messages
from lorawire.codec import packb
from lorawire.errors import DecodeError
from lorawire.fragment import Reassembler, ReassemblyError

A, B, C = b"A" * 8, b"B" * 8, b"C" * 8


def refusal(
    r: Reassembler, source: bytes, fields: Any, now: int = 0, attributed: bool = False
) -> ReassemblyError:
    with pytest.raises(ReassemblyError) as info:
        r.add(source, fields, now, attributed)
    assert info.value.source == source
    return info.value


def test_lora_chunk_sizes() -> None:
    assert fragment.max_chunk(255, unicast=False) == 226
    assert fragment.max_chunk(255, unicast=True) == 218
    assert fragment.max_message(255) == 16 * 226 == 3616
    assert fragment.max_message(255, unicast=True) == 16 * 218


@pytest.mark.parametrize("unicast", [False, True])
def test_a_full_fragment_frame_is_exactly_the_mtu(unicast: bool) -> None:
    chunk = fragment.max_chunk(255, unicast)
    overhead = frame.OVERHEAD_UNICAST if unicast else frame.OVERHEAD_BROADCAST
    bodies = fragment.split(bytes(chunk * 2 + 1), 0xFFFF, 255 - overhead)
    f = frame.Frame(messages.FRAGMENT, A, 1, B if unicast else None)
    sizes = [len(frame.encode(f, body, bytes(8))) for body in bodies]
    assert sizes[:2] == [255, 255] and sizes[2] < 255


def test_chunk_for_body_is_the_largest_that_fits() -> None:
    edges = list(range(9, 1200)) + list(range(65530, 65560)) + [70000]
    for mtu_body in edges:
        chunk = fragment.chunk_for_body(mtu_body)
        assert len(packb([0xFFFF, 15, 16, bytes(chunk)])) <= mtu_body
        assert len(packb([0xFFFF, 15, 16, bytes(chunk + 1)])) > mtu_body
    with pytest.raises(ValueError):
        fragment.chunk_for_body(8)


def test_split_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(ValueError, match="17 fragments"):
        fragment.split(bytes(16 * 226 + 1), 1, 234)
    assert len(fragment.split(bytes(16 * 226), 1, 234)) == 16
    with pytest.raises(ValueError, match="empty"):
        fragment.split(b"", 1, 234)
    for bad in (-1, 0x10000, True):
        with pytest.raises(ValueError, match="msg_id"):
            fragment.split(b"x", bad, 234)


def test_decode_checks_the_fields() -> None:
    assert fragment.decode(packb([1, 0, 1, b"x"])) == [1, 0, 1, b"x"]
    for bad in ([1, 0, 1], [1, 1, 1, b"x"], [1, 0, 1, "x"], [1, 0, 1, b""], [-1, 0, 1, b"x"]):
        with pytest.raises(DecodeError):
            fragment.decode(packb(bad))


def test_out_of_order_with_duplicates_and_two_senders_interleaved() -> None:
    r = Reassembler()
    m1, m2 = bytes(range(256)) * 3, b"second message " * 80
    f1 = [fragment.decode(b) for b in fragment.split(m1, 9, 100)]
    f2 = [fragment.decode(b) for b in fragment.split(m2, 9, 100)]
    got = []
    for pair in zip(reversed(f1), f2, strict=False):
        for source, fields in zip((A, B), pair, strict=True):
            got.append(r.add(source, fields, 10))
            assert r.add(source, fields, 11) is None  # duplicate
    for fields in f2[len(f1) :]:
        got.append(r.add(B, fields, 12))
    assert [x for x in got if x is not None] == [m1, m2]
    assert r.duplicates == len(f1) * 2
    assert (r.completed, r.live_slots(), r.buffered_bytes()) == (2, 0, 0)


def test_single_fragment_message_needs_no_slot() -> None:
    r = Reassembler(slots=1, max_message=10)
    assert r.add(A, [1, 0, 1, b"hello"], 0) == b"hello"
    assert r.live_slots() == 0
    assert refusal(r, A, [1, 0, 1, bytes(11)]).reason == fragment.OVERSIZE


def test_missing_fragment_times_out_and_frees_the_slot() -> None:
    r = Reassembler(slots=1, timeout_ms=1000)
    assert r.add(A, [1, 0, 2, b"ab"], 0) is None
    assert r.expire(999) == 0 and r.live_slots() == 1
    assert r.expire(1000) == 1 and r.live_slots() == 0 and r.expired == 1
    # The late fragment starts over instead of completing a stale message.
    assert r.add(A, [1, 1, 2, b"c"], 1001) is None
    assert r.add(A, [1, 0, 2, b"ab"], 1002) == b"abc"


def test_slot_exhaustion_refuses_the_newcomer_until_the_oldest_times_out() -> None:
    # hold_ms = timeout_ms: no message yields its slot before it times out.
    r = Reassembler(slots=2, timeout_ms=1000, per_source=2, hold_ms=1000)
    r.add(A, [1, 0, 2, b"ab"], 0)
    r.add(B, [1, 0, 2, b"ab"], 500)
    err = refusal(r, C, [1, 0, 2, b"ab"], 999)
    assert (err.reason, err.msg_id) == (fragment.BUSY, 1)
    assert r.add(C, [1, 0, 2, b"ab"], 1000) is None  # A's slot expired and is reused
    assert r.add(B, [1, 1, 2, b"c"], 1001) == b"abc"
    assert r.rejected == 1 and r.expired == 1


def test_one_source_cannot_take_every_slot() -> None:
    r = Reassembler(slots=4)
    assert r.per_source == 2
    r.add(A, [1, 0, 2, b"ab"], 0)
    r.add(A, [2, 0, 2, b"ab"], 0)
    assert refusal(r, A, [3, 0, 2, b"ab"]).reason == fragment.QUOTA
    r.add(B, [3, 0, 2, b"ab"], 0)
    assert r.live_slots() == 3


@pytest.mark.parametrize(
    ("first", "second", "reason"),
    [
        ([1, 0, 3, b"abcd"], [1, 1, 4, b"abcd"], fragment.INCONSISTENT),  # count changes
        ([1, 0, 3, b"abcd"], [1, 1, 3, b"abc"], fragment.INCONSISTENT),  # chunk length changes
        ([1, 0, 3, b"abcd"], [1, 0, 3, b"abce"], fragment.INCONSISTENT),  # same index, new bytes
        ([1, 2, 3, b"abcd"], [1, 0, 3, b"abc"], fragment.INCONSISTENT),  # last longer than others
        ([1, 2, 3, b"a"], [1, 0, 3, bytes(60)], fragment.OVERSIZE),  # 2*60+1 > 100
    ],
)
def test_contradicting_fragment_abandons_the_message(
    first: list[Any], second: list[Any], reason: str
) -> None:
    r = Reassembler(max_message=100)
    assert r.add(A, first, 0) is None
    assert refusal(r, A, second).reason == reason
    assert r.live_slots() == 0 and r.buffered_bytes() == 0


@pytest.mark.parametrize(
    "fields",
    [
        [1, 0, 16, bytes(7)],  # 15 * 7 + 1 > 100 from the first (non-last) fragment
        [1, 15, 16, bytes(7)],  # 16 * 7 > 100 from the last fragment alone
        [1, 0, 2, bytes(101)],
    ],
)
def test_oversize_is_refused_at_the_first_fragment(fields: list[Any]) -> None:
    r = Reassembler(max_message=100)
    assert refusal(r, A, fields).reason == fragment.OVERSIZE
    assert r.live_slots() == 0


def test_malformed_fields_name_the_source() -> None:
    r = Reassembler()
    for bad in (None, [1, 2, 3], {0: 1}, [1, 0, 2, "text"], [True, 0, 2, b"x"]):
        err = refusal(r, A, bad)
        assert err.reason == fragment.MALFORMED and isinstance(err, DecodeError)


def test_clock_going_back_expires_rather_than_keeping_forever() -> None:
    r = Reassembler(timeout_ms=1000)
    r.add(A, [1, 0, 2, b"ab"], 5000)
    assert r.expire(10) == 1


@st.composite
def split_orders(draw: st.DrawFn) -> tuple[bytes, list[bytes], list[int], int]:
    unicast = draw(st.booleans())
    mtu = draw(st.sampled_from([255, 64, 100]))
    limit = fragment.max_message(mtu, unicast)
    message = draw(st.binary(min_size=1, max_size=min(limit, 600)))
    if draw(st.booleans()):
        message = bytes(draw(st.integers(1, limit)))
    overhead = frame.OVERHEAD_UNICAST if unicast else frame.OVERHEAD_BROADCAST
    bodies = fragment.split(message, draw(st.integers(0, 0xFFFF)), mtu - overhead)
    perm = draw(st.permutations(range(len(bodies))))
    order: list[int] = []
    dups = 0
    for i in perm[:-1]:
        order.append(i)
        if draw(st.integers(0, 3)) == 0:
            order.append(draw(st.sampled_from(order)))
            dups += 1
    order.append(perm[-1])
    return message, bodies, order, dups


@settings(max_examples=2000)
@given(split_orders())
def test_random_split_and_order_reassembles_the_original(
    case: tuple[bytes, list[bytes], list[int], int],
) -> None:
    message, bodies, order, dups = case
    r = Reassembler(max_message=fragment.max_message(255))
    results = [r.add(A, fragment.decode(bodies[i]), t) for t, i in enumerate(order)]
    assert results[-1] == message
    assert all(x is None for x in results[:-1])
    assert r.duplicates == dups and r.live_slots() == 0


# Mostly well-formed fields over few ids, so streams complete, collide and overflow;
# some malformed (count 0, empty chunk).
chunks = st.sampled_from([b"", b"a", b"b", bytes(10), bytes(100), bytes(400)])
fragment_fields = (
    st.integers(0, 4)
    .flatmap(
        lambda n: st.tuples(st.integers(0, 3), st.integers(0, max(n - 1, 0)), st.just(n), chunks)
    )
    .map(list)
)
stream_item = st.tuples(st.sampled_from([A, B, C]), fragment_fields, st.integers(0, 400))


@settings(max_examples=2000)
@given(st.lists(stream_item, max_size=24))
def test_no_fragment_stream_grows_memory_past_the_bound(
    stream: list[tuple[bytes, list[Any], int]],
) -> None:
    r = Reassembler(slots=3, timeout_ms=1000, max_message=1000, per_source=2)
    now = 0
    for source, fields, step in stream:
        now += step
        try:
            r.add(source, fields, now)
        except ReassemblyError as exc:
            assert exc.source == source
        assert r.live_slots() <= 3
        assert r.buffered_bytes() <= 3 * 1000
        for slot in r.slots:
            assert slot.size <= 1000
            assert len(slot.chunks) == fragment.MAX_FRAGMENTS
        held = {}
        for slot in r.slots:
            if slot.source is not None:
                held[slot.source] = held.get(slot.source, 0) + 1
        assert all(n <= r.per_source for n in held.values())


@settings(max_examples=2000)
@given(st.binary(max_size=60), st.integers(0, 10**6))
def test_random_bytes_into_the_reassembler_raise_only_decode_error(data: bytes, now: int) -> None:
    r = Reassembler(slots=2, max_message=200)
    try:
        fields = fragment.decode(data)
    except DecodeError:
        fields = None
    try:
        out = r.add(A, fields, now)
    except DecodeError:
        return
    assert out is None or (fields is not None and out == fields[3] and fields[2] == 1)


def test_late_copy_of_a_completed_message_is_a_duplicate_not_a_new_slot() -> None:
    r = Reassembler(timeout_ms=1000)
    r.add(A, [4, 0, 2, b"ab"], 0)
    assert r.add(A, [4, 1, 2, b"c"], 10) == b"abc"
    assert r.add(A, [4, 0, 2, b"ab"], 20) is None
    assert (r.duplicates, r.live_slots()) == (1, 0)
    # Once the timeout has passed the id may be reused (a sender restarted its counter).
    assert r.add(A, [4, 0, 2, b"xy"], 1010) is None
    assert r.add(A, [4, 1, 2, b"z"], 1011) == b"xyz"


@pytest.mark.parametrize(
    "tags",
    [
        [True, True, True],
        [True, False, True],  # one fragment under the network key: the whole is unproven
        [False, True, True],
        [False, False, False],
    ],
)
def test_a_message_is_attributed_only_if_every_fragment_was(tags: list[bool]) -> None:
    r = Reassembler()
    parts = [[9, i, 3, bytes([i]) * 4] for i in range(3)]
    for part, tagged in zip(parts[:-1], tags[:-1], strict=True):
        assert r.add(A, part, 0, tagged) is None
    assert r.add(A, parts[-1], 0, tags[-1]) == bytes(4) + b"\x01" * 4 + b"\x02" * 4
    assert r.attributed is all(tags)


def test_a_refusal_carries_the_attribution_of_its_message() -> None:
    r = Reassembler(max_message=100)
    assert r.add(A, [1, 0, 3, b"abcd"], 0, False) is None
    assert not refusal(r, A, [1, 1, 3, b"abc"], attributed=True).attributed
    assert r.add(B, [1, 0, 3, b"abcd"], 0, True) is None
    assert refusal(r, B, [1, 1, 3, b"abc"], attributed=True).attributed
    assert refusal(r, C, [1, 0, 0, b""], attributed=True).attributed  # malformed fields
    assert not refusal(r, C, [1, 0, 0, b""]).attributed  # unproven by default


def test_a_single_fragment_message_is_as_attributed_as_its_frame() -> None:
    r = Reassembler()
    assert r.add(A, [1, 0, 1, b"x"], 0, True) == b"x" and r.attributed
    assert r.add(A, [2, 0, 1, b"y"], 0) == b"y" and not r.attributed
