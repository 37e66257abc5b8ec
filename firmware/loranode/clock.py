"""Millisecond ticks with wrap-around, the same arithmetic on MicroPython and CPython.

On MicroPython these are `time.ticks_ms/ticks_diff/ticks_add` (the period is 2**30 ms,
about 12.4 days, on the ESP32; 2**62 on the 64-bit unix port). On CPython the fallback
uses `time.monotonic()` folded into the ESP32's period, so host tests exercise the same
wrap-around the board sees.

A ticks value only means something relative to another one less than half a period
away (`ticks_diff` range is +-2**29 ms, about 6.2 days, on the ESP32). Tables that keep
timestamps for longer clamp them (`PeerTable.age_out`, `BanTable.expire`) so an ancient
stamp never wraps round into looking recent.
"""

import time

try:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
    TICKS_PERIOD = ticks_add(0, -1) + 1
except AttributeError:
    TICKS_PERIOD = 1 << 30
    _MASK = TICKS_PERIOD - 1
    _HALF = TICKS_PERIOD >> 1

    def ticks_ms():
        return int(time.monotonic() * 1000) & _MASK  # type: ignore[attr-defined]  # CPython only

    def ticks_diff(end, start):
        """Signed difference end - start, correct while |difference| < half a period."""
        return ((end - start + _HALF) & _MASK) - _HALF

    def ticks_add(ticks, delta):
        return (ticks + delta) & (TICKS_PERIOD - 1)


TICKS_HALF = TICKS_PERIOD >> 1
