"""LoRa time on air (SX127x datasheet formula), on CPython and inside the unix port."""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lorawire.airtime import (
    payload_symbols,
    symbol_time_us,
    time_on_air_ms,
    time_on_air_us,
)
from upy import run_upy

# Formula (SX1276 datasheet 4.1.1.7, AN1200.13):
#   T_sym = 2^SF / BW ; T_pre = (n_pre + 4.25) T_sym
#   n_pay = 8 + max(ceil((8 PL - 4 SF + 28 + 16 CRC - 20 IH) / (4 (SF - 2 DE))) * CR, 0)
#   (CR here is 5..8, i.e. "CR + 4" of the datasheet), T = T_pre + n_pay T_sym.


def test_issue_reference_sf7_255_bytes() -> None:
    # The figure from the issue: SF7/BW125/CR4-5, 8-symbol preamble, explicit header, CRC on.
    # T_sym = 128/125000 = 1.024 ms; num = 2040 - 28 + 28 + 16 = 2056; den = 28;
    # ceil(73.43) = 74; n_pay = 8 + 74*5 = 378; T = (8 + 4.25 + 378) * 1.024 = 399.616 ms.
    toa = time_on_air_ms(255, 7, 125000, coding_rate=5, preamble=8)
    assert abs(toa - 399.6) <= 0.5
    assert time_on_air_us(255, 7, 125000) == 399616


def test_sf12_low_data_rate_hand_computed() -> None:
    # SF12, BW125, CR4/5, preamble 8, explicit header, CRC on, 51-byte payload (LoRaWAN DR0 max).
    # Step 1: T_sym = 2^12 / 125000 s = 4096 / 125000 s = 32.768 ms.
    # Step 2: T_sym >= 16 ms, so low data rate optimisation is on: DE = 1.
    # Step 3: numerator = 8*51 - 4*12 + 28 + 16*1 - 20*0 = 408 - 48 + 28 + 16 = 404.
    # Step 4: denominator = 4 * (12 - 2*1) = 40.
    # Step 5: ceil(404 / 40) = ceil(10.1) = 11 blocks; times CR (5) = 55 symbols.
    # Step 6: n_payload = 8 + 55 = 63 symbols.
    # Step 7: T = (8 + 4.25 + 63) * 32.768 = 75.25 * 32.768 = 2457.6 + 8.192 = 2465.792 ms.
    assert time_on_air_ms(51, 12, 125000) == pytest.approx(2465.792, abs=1e-9)
    assert payload_symbols(51, 12, 5, True, True, True) == 63
    # The same with 255 bytes: num = 2040 - 48 + 44 = 2036; ceil(2036/40) = ceil(50.9) = 51;
    # n_pay = 8 + 255 = 263; T = 275.25 * 32.768 = 9019.392 ms.
    assert time_on_air_ms(255, 12, 125000) == pytest.approx(9019.392, abs=1e-9)
    # Without the optimisation (forced off) den = 48: ceil(2036/48) = 43; n_pay = 223;
    # T = 235.25 * 32.768 = 7708.672 ms, so DE really was applied above.
    assert time_on_air_ms(255, 12, 125000, low_data_rate=False) == pytest.approx(7708.672)


@pytest.mark.parametrize(
    ("args", "kwargs", "expected_ms", "source"),
    [
        # SF7 20 bytes: num 176, den 28 -> 7 blocks -> n 43; 55.25 * 1.024
        ((20, 7, 125000), {}, 56.576, "issue (~56.6 ms)"),
        # rfwireless-world LoRa calculator, example 1 and 2 (10 bytes, CR 4/5)
        ((10, 7, 125000), {}, 41.216, "rfwireless-world example 1"),
        ((10, 11, 125000), {}, 577.536, "rfwireless-world example 2 (LDRO on)"),
        # AN1200.13 spreadsheet: 13 bytes SF9 CR4/5 -> payloadSymbNb 28, 164.864 ms
        ((13, 9, 125000), {}, 164.864, "AN1200.13 sheet"),
        # TTN airtime calculator, 13-byte LoRaWAN frame: 46.3 ms (SF7), 1155.1 ms (SF12)
        ((13, 7, 125000), {}, 46.336, "TTN calculator SF7"),
        ((13, 12, 125000), {}, 1155.072, "TTN calculator SF12"),
        # From the formula: SF9 20 B: num 168, den 36 -> 5 -> n 33; 45.25 * 4.096
        ((20, 9, 125000), {}, 185.344, "formula"),
        # SF10 20 B: num 164, den 40 -> 5 -> n 33; 45.25 * 8.192
        ((20, 10, 125000), {}, 370.688, "formula"),
        # SF10 51 B: num 412, den 40 -> 11 -> n 63; 75.25 * 8.192
        ((51, 10, 125000), {}, 616.448, "formula"),
        # SF7 BW500 255 B: n 378 as at BW125; 390.25 * 0.256
        ((255, 7, 500000), {}, 99.904, "formula"),
        # SF6 implicit header, CRC on, 20 B: num 160-24+28+16-20 = 160, den 24 -> 7 -> n 43;
        # 55.25 * 0.512
        ((20, 6, 125000), {"explicit_header": False}, 28.288, "formula, SF6 implicit"),
        # CR 4/8, no CRC, 16-symbol preamble, SF8 BW250 32 B: T_sym 1.024;
        # num 256-32+28 = 252, den 32 -> 8 -> n 8+64 = 72; (16+4.25+72) * 1.024
        (
            (32, 8, 250000),
            {"coding_rate": 8, "crc": False, "preamble": 16},
            94.464,
            "formula",
        ),
        # Empty payload, implicit header, no CRC at SF12: num 0-48+28 = -20 -> max(.,0) -> n 8;
        # (8 + 4.25 + 8) * 32.768
        ((0, 12, 125000), {"explicit_header": False, "crc": False}, 663.552, "formula"),
    ],
)
def test_known_points(args: tuple, kwargs: dict, expected_ms: float, source: str) -> None:
    assert time_on_air_ms(*args, **kwargs) == pytest.approx(expected_ms, abs=1e-9), source


def test_low_data_rate_automatic_threshold() -> None:
    # On at T_sym >= 16 ms: SF11/125 (16.384), SF12/125 (32.768), SF12/250 (16.384).
    for sf, bw, on in [
        (10, 125000, False),
        (11, 125000, True),
        (12, 125000, True),
        (11, 250000, False),
        (12, 250000, True),
        (12, 500000, False),
    ]:
        auto = time_on_air_us(100, sf, bw)
        assert auto == time_on_air_us(100, sf, bw, low_data_rate=on), (sf, bw)
        assert auto != time_on_air_us(100, sf, bw, low_data_rate=not on), (sf, bw)


def test_symbol_times() -> None:
    assert symbol_time_us(7, 125000) == 1024
    assert symbol_time_us(12, 125000) == 32768
    assert symbol_time_us(6, 500000) == 128


@pytest.mark.parametrize(
    ("args", "kwargs", "word"),
    [
        ((20, 5, 125000), {}, "sf"),
        ((20, 13, 125000), {}, "sf"),
        ((20, 7, 125), {}, "bw_hz"),
        ((20, 7, 200000), {}, "bw_hz"),
        ((20, 7, 125000.0), {}, "bw_hz"),
        ((20, 7, 125000), {"coding_rate": 4}, "coding_rate"),
        ((20, 7, 125000), {"coding_rate": 9}, "coding_rate"),
        ((-1, 7, 125000), {}, "payload_len"),
        ((256, 7, 125000), {}, "payload_len"),
        ((True, 7, 125000), {}, "payload_len"),
        ((20.0, 7, 125000), {}, "payload_len"),
        ((20, 7, 125000), {"preamble": 5}, "preamble"),
        ((20, 7, 125000), {"explicit_header": 1}, "explicit_header"),
        ((20, 7, 125000), {"crc": None}, "crc"),
        ((20, 7, 125000), {"low_data_rate": 0}, "low_data_rate"),
        ((20, 6, 125000), {}, "SF6"),  # SF6 needs implicit header on SX127x
    ],
)
def test_invalid_arguments(args: tuple, kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        time_on_air_ms(*args, **kwargs)


@given(
    n=st.integers(0, 254),
    sf=st.integers(7, 12),
    bw=st.sampled_from([125000, 250000, 500000]),
    cr=st.integers(5, 8),
    pre=st.integers(6, 64),
)
def test_monotonic_and_exact(n: int, sf: int, bw: int, cr: int, pre: int) -> None:
    t = time_on_air_us(n, sf, bw, cr, pre)
    assert time_on_air_ms(n, sf, bw, cr, pre) == t / 1000
    assert time_on_air_us(n + 1, sf, bw, cr, pre) >= t  # more bytes never take less time
    assert time_on_air_us(n, sf, bw, cr, pre + 1) == t + symbol_time_us(sf, bw)
    if cr < 8:
        assert time_on_air_us(n, sf, bw, cr + 1, pre) >= t
    if bw > 125000:
        # Halving the bandwidth doubles the symbol time; LDRO can only add symbols.
        assert time_on_air_us(n, sf, bw // 2, cr, pre) >= 2 * t


# Printed identically by CPython and MicroPython: integers and %.3f of round(x, 3).
GRID_SCRIPT = """
from lorawire.airtime import time_on_air_ms, time_on_air_us
for sf in range(6, 13):
    for bw in (125000, 250000, 500000):
        for cr in (5, 6, 7, 8):
            for n in (0, 1, 13, 20, 51, 100, 222, 255):
                for crc in (True, False):
                    eh = sf != 6
                    ms = time_on_air_ms(n, sf, bw, cr, 8, eh, crc)
                    us = time_on_air_us(n, sf, bw, cr, 8, eh, crc)
                    exact = round(ms * 1000) == us
                    print(sf, bw, cr, n, int(crc), us, "%.3f" % round(ms, 3), exact)
try:
    time_on_air_ms(20, 6, 125000)
except ValueError as e:
    print("ValueError", e)
"""


def run_cpython(script: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(script, "<grid>", "exec"), {"__name__": "__grid__"})
    return out.getvalue()


@pytest.mark.upy
def test_grid_identical_on_both_runtimes() -> None:
    expected = run_cpython(GRID_SCRIPT)
    got = run_upy(GRID_SCRIPT).stdout
    assert expected.count("\n") == 7 * 3 * 4 * 8 * 2 + 1
    assert " False\n" not in expected  # round(ms * 1000) == us on every line
    assert got == expected


PERIOD = 1 << 30
HALF = 1 << 29


@given(st.integers(0, PERIOD - 1), st.integers(0, PERIOD - 1))
def test_ticks_since_is_the_signed_distance_mod_the_period(now: int, then: int) -> None:
    from lorawire.airtime import ticks_since

    assert ticks_since(now, then) == (now - then + HALF) % PERIOD - HALF


@given(st.integers(0, PERIOD - 1), st.integers(-HALF, HALF))
def test_ticks_add_wraps_like_ticks_ms(t: int, ms: int) -> None:
    from lorawire.airtime import ticks_add, ticks_since

    r = ticks_add(t, ms)
    assert r == (t + ms) % PERIOD
    if abs(ms) < HALF:
        assert ticks_since(r, t) == ms


TICKS_ALLOC_SCRIPT = f"""
import gc
from lorawire.airtime import ticks_add, ticks_since
P = {PERIOD}
H = {HALF}
edges = (0, 1, H - 1, H, H + 1, P - 2, P - 1)
deltas = (-H, -H + 1, -1, 0, 1, H - 1, H)
out = [0, 0]


def run():
    for t in edges:
        for u in edges:
            out[0] = ticks_since(t, u)
        for d in deltas:
            out[1] = ticks_add(t, d)


run()  # warm-up
gc.collect()
gc.disable()
a = gc.mem_alloc()
run()
b = gc.mem_alloc()
gc.enable()
print(b - a)
"""


@pytest.mark.upy("plain")
def test_tick_arithmetic_allocates_nothing_on_a_32_bit_board() -> None:
    """At the edges of the period (where t + ms or now - then + 2**29 would pass 2**30,
    a long int on a 32-bit board) neither function allocates."""
    assert run_upy(TICKS_ALLOC_SCRIPT).stdout.strip() == "0"
