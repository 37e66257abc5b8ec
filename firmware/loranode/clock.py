"""Node time: milliseconds that wrap every 2**30 ms by design, compared only as differences.

Every time the node keeps (tables, timers, the duty-cycle budget) is a node-clock tick:
an int in 0 .. PERIOD - 1, PERIOD = 2**30 ms (12.4 days), the period of `time.ticks_ms`
on an ESP32. A tick is a small int on a 32-bit board, so no timestamp ever becomes a
heap-allocated long int, however long the node runs. Two ticks mean something only
relative to each other and only while they are less than half a period apart
(`diff(a, b)` is then exactly a - b, signed); tables that keep stamps for longer clamp
them (PeerTable.age_out, BanTable.expire).

`NodeClock` runs the node clock from `time.ticks_ms`, scaled by the simulator's speed
factor (1 on a board), and may start anywhere in the period (`start`; the long-run tests
start it just before a wrap). It is the only source of time the node reads: a simulator
that drives many nodes on a virtual clock passes any object with `now()` and
`wall_ms(ms)` instead.

On CPython `time.ticks_*` is replaced by the same arithmetic over `time.monotonic()`.
"""

import time

from lorawire.airtime import ticks_add as add
from lorawire.airtime import ticks_since as diff

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int


PERIOD = const(0x40000000)
_MASK = const(0x3FFFFFFF)
_STEP_MS = const(50000)  # real ms folded in one step: d * milli stays a small int

# diff(a, b): a - b for node ticks, signed, exact while |a - b| < 2**29 ms (6.2 days);
# add(t, ms): the tick `ms` after (before, for ms < 0) tick t, for |ms| <= 2**29. Both
# never leave the small-int range of a 32-bit board (see lorawire.airtime).

try:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
except AttributeError:  # CPython: the same period, over time.monotonic()

    def ticks_ms():
        return int(time.monotonic() * 1000) & _MASK  # type: ignore[attr-defined]  # CPython

    ticks_diff = diff
    ticks_add = add


class NodeClock:
    """Node ticks from ticks_ms, `speed` times as fast (meshsim's acceleration)."""

    def __init__(self, speed=1, start=0):
        self.milli = int(speed * 1000 + 0.5) or 1  # node ms per 1000 real ms
        self._t = start & _MASK
        self._frac = 0  # node ms * 1000 not yet added to _t
        self._last = ticks_ms()

    def now(self):
        r = ticks_ms()
        d = ticks_diff(r, self._last)
        if d > 0:
            self._last = r
            while d > 0:
                step = d if d < _STEP_MS else _STEP_MS
                d -= step
                x = step * self.milli + self._frac
                self._t = add(self._t, x // 1000)
                self._frac = x % 1000
        return self._t

    def wall_ms(self, ms):
        """Real ms that `ms` of node time take."""
        return ms * 1000 // self.milli
