"""The sliding-window duty-cycle / dwell-time accountant: lorawire.airtime.Budget (one
channel, in ticks) and lorawire.regions.DutyCycle (a region's sub-bands)."""

from __future__ import annotations

import contextlib
import io
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import regions
from lorawire.airtime import MAX_RECORDS, NEVER, TICKS_PERIOD, Budget, time_on_air_ms
from lorawire.regions import DutyCycle
from upy import run_upy

HOUR = 3600000
EU_G = 868100000  # 868.0-868.6 MHz, 1 %
EU_LOW = 864000000  # 863-865 MHz, 0.1 %
EU_HIGH = 869525000  # 869.4-869.65 MHz, 10 %


def test_eu868_one_percent_is_36_seconds_per_hour() -> None:
    dc = DutyCycle("EU868")
    assert dc.budget_ms(EU_G) == 36000
    assert dc.budget_ms(EU_G, background=True) == 18000
    assert dc.budget_ms(EU_LOW) == 3600
    assert dc.budget_ms(EU_HIGH) == 360000
    # 36 back-to-back one-second frames use the hour's budget exactly.
    for i in range(36):
        now = i * 1000
        assert dc.can_send(EU_G, 1000, now)
        assert dc.wait_ms(EU_G, 1000, now) == 0
        dc.record(EU_G, 1000, now)
    assert dc.used_ms(EU_G, 36000) == 36000
    assert not dc.can_send(EU_G, 1, 36000)
    # The first frame occupied [0, 1000): it leaves the window once the window starts at 1000,
    # i.e. at now = 1000 + 3600000; then exactly 1000 ms are free again.
    w = dc.wait_ms(EU_G, 1000, 36000)
    assert w == 1000 + HOUR - 36000
    assert not dc.can_send(EU_G, 1000, 36000 + w - 1)
    assert dc.can_send(EU_G, 1000, 36000 + w)
    assert not dc.can_send(EU_G, 1001, 36000 + w)
    assert dc.used_ms(EU_G, 36000 + w) == 35000
    # Other sub-bands keep their own budgets.
    assert dc.used_ms(EU_HIGH, 36000 + w) == 0
    assert dc.can_send(EU_HIGH, 5000, 36000 + w)
    dc.record(EU_G, 1000, 36000 + w)
    assert dc.can_send(868500000, 1, 36000 + w) is False  # same sub-band as 868.1 MHz
    assert dc.can_send(EU_HIGH, 1, 36000 + w) is True


def test_real_frames_fill_the_budget() -> None:
    dc = DutyCycle("EU868")
    toa = time_on_air_ms(255, 7, 125000)  # 399.616 ms, charged as 400 ms
    now = 0
    sent = 0
    while dc.can_send(EU_G, toa, now):
        dc.record(EU_G, toa, now)
        sent += 1
        now += 500
    assert sent == 36000 // 400
    assert dc.used_ms(EU_G, now) == 36000


def test_background_limited_to_half_and_total_still_applies() -> None:
    dc = DutyCycle("EU868")
    t = 0
    while dc.can_send(EU_G, 1000, t, background=True):
        dc.record(EU_G, 1000, t, background=True)
        t += 1000
    assert t == 18000  # 18 s of announces / PEX, then background stops
    assert dc.used_ms(EU_G, t, background=True) == 18000
    w = dc.wait_ms(EU_G, 1000, t, background=True)
    assert w == 1000 + HOUR - t
    # Foreground traffic still has the other half.
    while dc.can_send(EU_G, 1000, t):
        dc.record(EU_G, 1000, t)
        t += 1000
    assert t == 36000
    # Foreground use also blocks background once the total budget is spent.
    dc2 = DutyCycle("EU868")
    dc2.record(EU_G, 36000, 0)
    assert not dc2.can_send(EU_G, 1, 36000, background=True)
    assert dc2.wait_ms(EU_G, 1, 36000, background=True) == 36000 + HOUR - 36000


def test_budget_larger_than_window_share_is_never() -> None:
    dc = DutyCycle("EU868")
    assert not dc.can_send(EU_LOW, 3601, 0)
    assert dc.wait_ms(EU_LOW, 3601, 0) == NEVER
    assert dc.wait_ms(EU_G, 18001, 0, background=True) == NEVER
    assert dc.wait_ms(EU_G, 18000, 0, background=True) == 0


def test_us915_dwell_time() -> None:
    dc = DutyCycle("US915")
    f = 902300000
    assert dc.dwell_limit_ms(f) == 400
    assert dc.can_send(f, 400, 0)
    assert not dc.can_send(f, 400.001, 0)  # rounded up to 401 ms: over the dwell limit
    assert dc.wait_ms(f, 401, 0) == NEVER
    # SF10/BW125: 20 bytes fit the dwell time, 51 bytes never do.
    assert dc.can_send(f, time_on_air_ms(20, 10, 125000), 0)
    assert dc.wait_ms(f, time_on_air_ms(51, 10, 125000), 0) == NEVER
    # 500 kHz channels are exempt from the dwell limit when the caller says so.
    assert dc.dwell_limit_ms(903000000, bw_hz=500000) == 0
    assert dc.can_send(903000000, 1200, 0, bw_hz=500000)
    assert not dc.can_send(903000000, 1200, 0)  # bandwidth unknown: limit applies
    # No duty cycle: a node may transmit back to back for the whole hour.
    for i in range(0, HOUR, 400):
        assert dc.can_send(f, 400, i)
        dc.record(f, 400, i)
    assert dc.used_ms(f, HOUR) == HOUR
    assert dc.budget_ms(f) == HOUR


def test_au915_and_as923() -> None:
    au = DutyCycle("AU915")
    assert not au.can_send(916800000, 401, 0, bw_hz=500000)  # dwell applies to all widths
    assert au.budget_ms(916800000) == HOUR
    as923 = DutyCycle("AS923")
    assert as923.budget_ms(923200000) == 36000
    assert not as923.can_send(923200000, 401, 0)
    for i in range(90):
        assert as923.can_send(923200000, 400, i * 1000)
        as923.record(923200000, 400, i * 1000)
    assert not as923.can_send(923200000, 1, 90000)


def test_kr920_and_in865_have_no_airtime_limit() -> None:
    for name, f in (("KR920", 922100000), ("IN865", 865062500)):
        dc = DutyCycle(name)
        assert dc.budget_ms(f) == HOUR
        assert dc.dwell_limit_ms(f) == 0
        assert dc.can_send(f, 60000, 0)


def test_window_is_sliding_not_fixed() -> None:
    dc = DutyCycle("EU868", window_ms=10000)  # budget 100 ms at 1 %
    dc.record(EU_G, 60, 0)
    dc.record(EU_G, 40, 9000)
    assert not dc.can_send(EU_G, 1, 9040)
    # The first frame ended at 60 and leaves a window that starts after it: now = 10060.
    assert dc.wait_ms(EU_G, 60, 9040) == 10060 - 9040
    assert not dc.can_send(EU_G, 60, 10059)
    assert dc.can_send(EU_G, 60, 10060)
    assert not dc.can_send(EU_G, 61, 10060)
    assert dc.used_ms(EU_G, 19040) == 0


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="XX999"):
        DutyCycle("XX999")
    dc = DutyCycle("EU868")
    with pytest.raises(ValueError, match="870500000.*863000000-865000000"):
        dc.can_send(870500000, 10, 0)
    with pytest.raises(ValueError, match="airtime_ms"):
        dc.can_send(EU_G, -1, 0)
    with pytest.raises(ValueError, match="airtime_ms"):
        dc.record(EU_G, float("nan"), 0)
    with pytest.raises(ValueError, match="now_ms"):
        dc.can_send(EU_G, 1, 1.5)
    dc.record(EU_G, 10, 1000)
    with pytest.raises(ValueError, match="backwards"):
        dc.can_send(EU_G, 10, 999)
    with pytest.raises(ValueError, match="max_records"):
        DutyCycle("EU868", max_records=1)
    with pytest.raises(ValueError, match="window_ms"):
        DutyCycle("EU868", window_ms=0)


def test_ring_capacity_merges_conservatively() -> None:
    b = Budget(1000, window_ms=100000, max_records=4)
    times = [0, 10, 5000, 5010, 9000, 20000]
    for t in times:
        b.record(5, t)
        assert b.n <= 4  # never more than the capacity
    assert b.used_ms(20005) == 30  # nothing lost by merging
    # The pair merged first was (0..5, 10..15): it now expires with the later one, at 15 + W.
    assert b.used_ms(100005) == 30
    assert b.used_ms(100015) == 20
    assert MAX_RECORDS == 64
    assert DutyCycle("EU868").max_records == MAX_RECORDS


@pytest.mark.parametrize("start", [0, TICKS_PERIOD - 1000, TICKS_PERIOD - 1, TICKS_PERIOD // 2])
def test_budget_is_the_same_across_the_ticks_wrap(start: int) -> None:
    """Ticks wrap every 2**30 ms (12.4 days on an ESP32): a budget that straddles the wrap
    answers exactly as one that does not."""
    plain, wrapped = Budget(3000, 10000), Budget(3000, 10000)
    for i in range(40):
        t = i * 700
        w = (start + t) % TICKS_PERIOD
        assert plain.wait_ms(400, t) == wrapped.wait_ms(400, w)
        assert plain.used_ms(t) == wrapped.used_ms(w)
        if plain.can_send(400, t, i % 3 == 0):
            plain.record(400, t, i % 3 == 0)
            wrapped.record(400, w, i % 3 == 0)
    assert plain.used_ms(40 * 700) == wrapped.used_ms((start + 40 * 700) % TICKS_PERIOD) > 0


def test_budget_never_and_dwell() -> None:
    b = Budget(1000, 10000, dwell_ms=400)
    assert b.wait_ms(401, 0) == NEVER  # over the dwell limit
    assert b.wait_ms(400, 0) == 0
    assert b.wait_ms(501, 0, background=True) == NEVER  # over the background half
    assert Budget(1000, 10000).wait_ms(1001, 0) == NEVER
    with pytest.raises(ValueError, match="window_ms"):
        Budget(10, window_ms=1 << 29)


# ---- property: random traffic never exceeds the limits ------------------------------------


def max_window_airtime(txs: list[tuple[float, float]], window: int) -> float:
    """Largest airtime overlapping any interval [a, a + window): checked at every breakpoint."""
    best = 0.0
    candidates = {s for s, _ in txs} | {s + d - window for s, d in txs}
    for a in candidates:
        b = a + window
        total = sum(max(0.0, min(s + d, b) - max(s, a)) for s, d in txs)
        best = max(best, total)
    return best


def max_window_charged(txs: list[tuple[int, float]], window: int) -> int:
    """The accountant's own (stricter) rule: every frame touching [a, a + window) is charged
    whole, rounded up to a millisecond. Frame j touches it for integer a in
    [s_j - window + 1, s_j + ceil(d_j) - 1], so the maximum is at one of the left ends."""
    frames = [(s, s + math.ceil(d), math.ceil(d)) for s, d in txs]
    best = 0
    for s0, _, _ in frames:
        a = s0 - window + 1
        best = max(best, sum(c for s, e, c in frames if s < a + window and e > a))
    return best


def freq_in(band: tuple, frac: float) -> int:
    return band[regions.SB_LO] + int((band[regions.SB_HI] - band[regions.SB_LO] - 1) * frac)


traffic = st.lists(
    st.tuples(
        st.integers(-1, 1500),  # gap to the previous attempt (ms), -1: as soon as wait_ms allows
        st.integers(0, 5),  # sub-band index (modulo the region's count)
        st.floats(0.0, 1.0),  # where in the sub-band
        st.floats(0.5, 450.0, allow_nan=False),  # airtime, ms
        st.booleans(),  # background
    ),
    max_size=80,
)


@settings(max_examples=600)
@given(
    name=st.sampled_from(regions.REGION_NAMES),
    window=st.sampled_from([2000, 5000, 20000]),
    cap=st.sampled_from([2, 3, 8, 64]),
    events=traffic,
)
def test_limits_never_exceeded(name: str, window: int, cap: int, events: list) -> None:
    dc = DutyCycle(name, window_ms=window, max_records=cap)
    bands = regions.region(name)["sub_bands"]
    sent: dict[int, list] = {}
    sent_bg: dict[int, list] = {}
    now = 0
    for gap, bi, frac, toa, bg in events:
        idx = bi % len(bands)
        f = freq_in(bands[idx], frac)
        if gap < 0:  # a greedy sender: transmit at the first moment allowed
            w = dc.wait_ms(f, toa, now, background=bg)
            if w != NEVER:
                now += w
                assert dc.can_send(f, toa, now, background=bg)
        else:
            now += gap
        if dc.can_send(f, toa, now, background=bg):
            dc.record(f, toa, now, background=bg)
            sent.setdefault(idx, []).append((now, toa))
            if bg:
                sent_bg.setdefault(idx, []).append((now, toa))
            # A half-duplex radio is busy until the frame ends.
            now += int(toa) + 1
    for idx, txs in sent.items():
        f = freq_in(bands[idx], 0.5)
        budget = dc.budget_ms(f)
        assert max_window_airtime(txs, window) <= budget
        assert max_window_charged(txs, window) <= budget
        dwell = bands[idx][regions.SB_DWELL_MS]
        if dwell:
            assert max(d for _, d in txs) <= dwell
        bg_txs = sent_bg.get(idx, [])
        assert max_window_airtime(bg_txs, window) <= dc.budget_ms(f, background=True)
        assert max_window_charged(bg_txs, window) <= dc.budget_ms(f, background=True)
        assert dc.records_held(f) <= cap


@settings(max_examples=300)
@given(
    events=traffic,
    probe=st.floats(0.5, 200.0),
    bg=st.booleans(),
    cap=st.sampled_from([2, 5, 64]),
)
def test_wait_ms_is_exact(events: list, probe: float, bg: bool, cap: int) -> None:
    """wait_ms(t) = w means: not allowed at t + w - 1, allowed at t + w (nothing sent between)."""
    dc = DutyCycle("EU868", window_ms=10000, max_records=cap)  # 100 ms budget on 868.1 MHz
    now = 0
    for gap, _, _, toa, b in events:
        now += max(gap, 0)
        toa = min(toa, 100.0)
        if dc.can_send(EU_G, toa, now, background=b):
            dc.record(EU_G, toa, now, background=b)
            now += int(toa) + 1
    w = dc.wait_ms(EU_G, probe, now, background=bg)
    if w == NEVER:
        assert probe > dc.budget_ms(EU_G, background=bg)
        assert not dc.can_send(EU_G, probe, now + 10 * 10000, background=bg)
        return
    assert w >= 0
    if w > 0:
        assert not dc.can_send(EU_G, probe, now, background=bg)
        assert not dc.can_send(EU_G, probe, now + w - 1, background=bg)
    assert dc.can_send(EU_G, probe, now + w, background=bg)


# ---- both runtimes -------------------------------------------------------------------------

SCENARIO = """
from lorawire.airtime import NEVER, time_on_air_ms
from lorawire.regions import DutyCycle
dc = DutyCycle("EU868")
f = 868100000
t = 0
for i in range(36):
    print(i, dc.can_send(f, 1000, t), dc.wait_ms(f, 1000, t))
    dc.record(f, 1000, t)
    t += 1000
print("used", dc.used_ms(f, t), "budget", dc.budget_ms(f), dc.budget_ms(f, True))
w = dc.wait_ms(f, 1000, t)
print("wait", w, dc.can_send(f, 1000, t + w - 1), dc.can_send(f, 1000, t + w))
bg = DutyCycle("EU868", window_ms=10000, max_records=3)
t = 0
for i in range(40):
    toa = time_on_air_ms(10 + i, 7, 125000)
    ok = bg.can_send(f, toa, t, i % 2 == 0)
    if ok:
        bg.record(f, toa, t, i % 2 == 0)
    print(i, "%.3f" % round(toa, 3), ok, bg.used_ms(f, t), bg.used_ms(f, t, True),
          bg.wait_ms(f, 20, t))
    t += 137
us = DutyCycle("US915")
print("us915", us.can_send(902300000, 400, 0), us.wait_ms(902300000, 401, 0) == NEVER,
      us.can_send(903000000, 1000, 0, bw_hz=500000))
"""


@pytest.mark.upy
def test_scenario_identical_on_both_runtimes() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(SCENARIO, "<scenario>", "exec"), {"__name__": "__scenario__"})
    expected = out.getvalue()
    assert "used 36000 budget 36000 18000" in expected
    assert "us915 True True True" in expected
    got = run_upy(SCENARIO, heap="128K").stdout
    assert got == expected
