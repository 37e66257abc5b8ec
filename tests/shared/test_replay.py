"""Replay windows: IPsec-style sliding window over wrapping 16-bit sequences."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire.replay import REPLAY_SOURCES, WINDOW, ReplayTable, ReplayWindow
from upy import run_upy


def test_basics() -> None:
    w = ReplayWindow()
    assert w.check_and_update(100)
    assert not w.check_and_update(100)  # duplicate
    assert w.check_and_update(102)
    assert w.check_and_update(101)  # late, inside the window, first time
    assert not w.check_and_update(101)
    assert w.check_and_update(102 - (WINDOW - 1))  # the oldest slot still in the window
    assert not w.check_and_update(102 - WINDOW)  # just outside
    assert not w.check_and_update(0)
    assert w.check_and_update(102 + 1000)  # a jump ahead clears the window
    assert not w.check_and_update(102)  # now far behind


def test_check_does_not_update() -> None:
    w = ReplayWindow()
    assert w.check(5) and w.check(5)
    w.check_and_update(5)
    assert not w.check(5) and w.check(6) and w.check(4)


def test_wrap_around_65535_to_0() -> None:
    w = ReplayWindow()
    assert w.check_and_update(65534)
    assert w.check_and_update(65535)
    assert w.check_and_update(0)  # ahead of 65535 by one
    assert w.check_and_update(2)
    assert w.check_and_update(1)
    assert not w.check_and_update(65535)  # behind, seen
    assert w.check_and_update(65533)  # behind, fresh, in window across the wrap
    assert not w.check_and_update(65533)
    assert w.check_and_update((2 - (WINDOW - 1)) % 65536)  # WINDOW - 1 behind 2
    assert not w.check_and_update((2 - WINDOW) % 65536)  # WINDOW behind 2: outside


def test_half_way_is_refused() -> None:
    w = ReplayWindow()
    w.check_and_update(10)
    assert not w.check_and_update(10 + 0x8000)  # undefined in RFC 1982: refused
    assert w.check_and_update(10 + 0x7FFF)  # the farthest "ahead"


def test_out_of_range_is_refused() -> None:
    w = ReplayWindow()
    assert not w.check_and_update(-1)
    assert not w.check_and_update(65536)


def _offsets(raw: bytes) -> list[int]:
    """Offsets from bytes (one draw is far cheaper than a list of draws): mostly small
    steps around the top, sometimes a large jump either way (|offset| <= 32767)."""
    out = []
    for i in range(0, len(raw) - 2, 3):
        v = int.from_bytes(raw[i + 1 : i + 3], "big")
        if raw[i] < 200:
            out.append(v % 161 - 80)
        else:
            out.append(v % 65535 - 32767)
    return out


@settings(max_examples=1000)
@given(st.one_of(st.integers(0, 65535), st.integers(65400, 65535)), st.binary(max_size=150))
def test_window_matches_an_unbounded_reference(start: int, raw: bytes) -> None:
    """Against a model on unwrapped integers: accepts exactly the fresh sequences that
    are ahead of the highest seen or inside the window, so it never accepts one twice
    while in the window, never refuses a fresh in-window one, and wraps at 65535 -> 0."""
    steps = _offsets(raw)
    w = ReplayWindow()
    assert w.check_and_update(start)
    seen = {start}
    top = start
    for off in steps:
        x = top + off  # unwrapped; within +-32767 of top so the wrap reading is unique
        expected = x > top or (top - x < WINDOW and x not in seen)
        got = w.check_and_update(x % 65536)
        assert got == expected, (start, x, top)
        if got:
            seen.add(x)
            top = max(top, x)
        if x in seen and top - x < WINDOW:
            assert not w.check_and_update(x % 65536)  # never twice


def test_table_evicts_least_recently_used_and_forgets() -> None:
    t = ReplayTable(capacity=2)
    a, b, c = b"A" * 8, b"B" * 8, b"C" * 8
    assert t.check_and_update(a, 1)
    assert t.check_and_update(b, 1)
    assert not t.check_and_update(a, 1)  # a is now most recent
    assert t.check_and_update(c, 1)  # evicts b
    assert len(t) == 2 and t.evictions == 1
    assert not t.check_and_update(a, 1)  # a kept its window
    # documented: an evicted source's next frame is taken as fresh, once
    assert t.check_and_update(b, 1)
    assert not t.check_and_update(b, 1)
    t.forget(b)
    assert t.check_and_update(b, 1)
    assert t.replays == 3


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 65535)), max_size=100))
def test_table_never_exceeds_capacity(events: list[tuple[int, int]]) -> None:
    t = ReplayTable(capacity=8)
    for src, seq in events:
        t.check_and_update(bytes([src]) * 8, seq)
        assert len(t) <= 8


def test_default_capacity() -> None:
    t = ReplayTable()
    for i in range(REPLAY_SOURCES * 3):
        t.check_and_update(i.to_bytes(8, "big"), 1)
    assert len(t) == REPLAY_SOURCES == t.capacity


WINDOW_ALLOC_SCRIPT = """
import gc
from lorawire.replay import ReplayTable
t = ReplayTable(4)
src = b"\\x01" * 8
seqs = list(range(100, 140)) + [139 - k for k in range(1, 29)] + [150, 151, 181]
ok = [0]


def run(base):
    for s in seqs:
        if t.check_and_update(src, (base + s) & 0xFFFF, 0):
            ok[0] += 1


run(0)  # warm-up: the source has its slot
gc.collect()
gc.disable()
a = gc.mem_alloc()
run(1000)
b = gc.mem_alloc()
gc.enable()
print(b - a, ok[0])
"""


@pytest.mark.upy("plain")
def test_window_slides_without_allocating_on_a_32_bit_board() -> None:
    """A full window shifted by up to WINDOW - 1 (bits << ahead would pass 2**30, a long
    int on a 32-bit board) allocates nothing; the same frames are accepted both times."""
    alloc, accepted = run_upy(WINDOW_ALLOC_SCRIPT).stdout.split()
    assert alloc == "0"
    assert int(accepted) == 2 * (40 + 3)
