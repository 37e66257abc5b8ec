"""Reassembly slots go to sources in proportion (issue 15, finding 3).

The attack: two sources hold every slot of a 4-slot Reassembler with first fragments
they never complete and re-open new ones the moment the old ones time out. Before the
fix an honest sender's fragmented messages were reassembled 0 of 600 times; the same
scenario runs on CPython and inside each unix port (tests/shared/starvation_scenario.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import starvation_scenario
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import fragment
from lorawire.fragment import Reassembler, ReassemblyError
from upy import run_upy

HERE = Path(__file__).resolve().parent
A, B, C, D, E = (bytes([c]) * 8 for c in b"ABCDE")


def first(msg_id: int, count: int = 16) -> list[Any]:
    return [msg_id, 0, count, b"\xee" * 20]


def test_two_sources_reopening_at_every_timeout_no_longer_starve_an_honest_sender() -> None:
    delivered, sent = starvation_scenario.run(600)
    print(f"honest fragmented messages delivered under the attack: {delivered} of {sent}")
    assert delivered == sent


@pytest.mark.upy
def test_the_starvation_scenario_inside_micropython() -> None:
    out = run_upy(script=HERE / "starvation_scenario.py", args=["200"]).stdout
    match = re.search(r"honest delivered: (\d+) of (\d+)", out)
    assert match, out
    assert match.groups() == ("200", "200")
    assert starvation_scenario.run(200) == (200, 200)  # and the same on CPython


def test_a_source_over_its_share_gives_its_oldest_slot_to_a_newcomer() -> None:
    r = Reassembler(slots=4, timeout_ms=30000)
    r.add(A, first(1), 0)
    r.add(A, first(2), 100)
    r.add(B, first(1), 200)
    r.add(B, first(2), 300)
    assert r.add(C, [9, 0, 2, b"ab"], 400) is None  # takes A's message 1
    held = sorted((s.source, s.msg_id) for s in r.slots)
    assert held == [(A, 2), (B, 1), (B, 2), (C, 9)]
    assert r.evicted == 1
    # A now holds one slot, as C does: neither may take the other's, B's are still
    # younger than hold_ms, so A waits.
    with pytest.raises(ReassemblyError) as info:
        r.add(A, first(3), 500)
    assert info.value.reason == fragment.BUSY
    assert r.add(C, [9, 1, 2, b"c"], 600) == b"abc"


def test_a_message_keeps_its_slot_for_hold_ms_then_yields_to_a_newcomer() -> None:
    r = Reassembler(slots=4, timeout_ms=30000, hold_ms=10000)
    for k, src in enumerate((A, B, C, D)):
        r.add(src, first(1), k * 1000)
    with pytest.raises(ReassemblyError) as info:
        r.add(E, first(1), 9999)  # every message is younger than hold_ms
    assert info.value.reason == fragment.BUSY
    assert r.add(E, first(1), 10000) is None  # A's, the oldest, has had its time
    assert sorted(s.source for s in r.slots) == [B, C, D, E]
    assert (r.evicted, r.expired) == (1, 0)


def test_an_evicted_message_starts_over_rather_than_mixing_with_the_new_one() -> None:
    r = Reassembler(slots=1, timeout_ms=1000, hold_ms=100)
    r.add(A, [5, 0, 2, b"ab"], 0)
    r.add(B, [5, 0, 2, b"xy"], 100)  # takes A's slot
    assert r.add(B, [5, 1, 2, b"z"], 150) == b"xyz"
    assert r.add(A, [5, 1, 2, b"c"], 200) is None  # A's message 5 begins again
    assert r.buffered_bytes() == 1


# Anything two other sources can send: any msg_id, index, count and time, well formed
# or not. Whatever they do, an honest third source whose fragments all arrive within
# hold_ms of its first gets its message through.
other_fragment = st.tuples(
    st.sampled_from([A, B]),
    st.integers(0, 5),
    st.integers(1, 16).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))),
    st.sampled_from([b"\xee" * 30, b"\xee", b""]),
    st.integers(0, 3000),
)


@settings(max_examples=500)
@given(
    st.lists(other_fragment, max_size=60),
    st.integers(0, 120000),
    st.integers(0, 4999),
    st.integers(2, 6),
)
def test_two_other_sources_cannot_keep_a_third_out(
    others: list[Any], honest_start: int, spread: int, count: int
) -> None:
    r = Reassembler(slots=4, timeout_ms=30000, hold_ms=15000)
    events: list[tuple[int, int, bytes, list[Any]]] = []
    now = 0
    for src, msg_id, (index, n), chunk, step in others:
        now += step
        events.append((now, 0, src, [msg_id, index, n, chunk]))
    message = bytes(range(count * 10))
    for i in range(count):
        at = honest_start + spread * i // max(count - 1, 1)
        events.append((at, 1, C, [7, i, count, message[i * 10 : (i + 1) * 10]]))
    events.sort(key=lambda e: (e[0], e[1]))  # the others first at equal times
    got = None
    for at, _, src, fields in events:
        try:
            out = r.add(src, fields, at)
        except ReassemblyError:
            assert src != C
            continue
        if src == C and out is not None:
            got = out
    assert got == message
