"""Adaptive announce scheduler: when to send the next signed ANNOUNCE.

The interval starts at the configured minimum, doubles after every announce while
the neighbourhood stays the same (a stable mesh needs no frequent reminders; `reset()`
when a new direct neighbour is verified brings it back to the minimum), and grows
* with the number of direct neighbours: above DENSE_NEIGHBOURS every further
  neighbour adds a quarter of the minimum (a dense mesh hears every node from many
  sides, so each one announces less often; Reticulum's 2 % cap follows the same idea);
* with the spent background budget: while more than half of the background airtime
  (announces and peer exchange, at most half of the duty cycle) is used, the interval
  is stretched by used / remaining, up to the maximum.
It is clamped to [min, max] and then jittered by -JITTER_PCT..+JITTER_PCT % (never
below min or above max), so nodes booted together drift apart and their announces
stop colliding.

The first announce after boot comes after a short random delay (FIRST_MIN_MS ..
FIRST_MAX_MS), not a full interval: a fresh node should be known quickly.

All times are node ticks (loranode.clock); `rand(n)` returns 0..n-1.
"""

from os import urandom

from loranode.clock import add, diff

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

DENSE_NEIGHBOURS = const(4)
JITTER_PCT = const(25)
FIRST_MIN_MS = const(500)
FIRST_MAX_MS = const(10000)


def rand(n):
    """Uniform-ish integer 0..n-1 from os.urandom (n < 2**24)."""
    if n <= 1:
        return 0
    b = urandom(3)
    return ((b[0] << 16) | (b[1] << 8) | b[2]) % n


class AnnounceScheduler:
    def __init__(self, min_s, max_s, first_max_ms=FIRST_MAX_MS):
        if min_s <= 0 or max_s < min_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_ms = int(min_s * 1000)
        self.max_ms = int(max_s * 1000)
        self.first_max_ms = first_max_ms
        self.due = None  # node-clock ms of the next announce
        self.last_interval = 0
        self.sent = 0
        self.backoff = 0  # doublings since the neighbourhood last changed

    def start(self, now):
        lo = FIRST_MIN_MS if FIRST_MIN_MS < self.first_max_ms else 0
        self.due = add(now, lo + rand(self.first_max_ms - lo + 1))

    def interval_ms(self, neighbours, bg_used_ms, bg_budget_ms):
        """Interval before jitter for this neighbourhood and budget state."""
        base = self.min_ms
        k = self.backoff
        while k > 0 and base < self.max_ms:
            base *= 2
            k -= 1
        if neighbours > DENSE_NEIGHBOURS:
            base += (neighbours - DENSE_NEIGHBOURS) * self.min_ms // 4
        if bg_budget_ms > 0 and 2 * bg_used_ms > bg_budget_ms:
            left = bg_budget_ms - bg_used_ms
            if left <= 0:
                base = self.max_ms
            else:
                base = base * bg_used_ms // left
        if base < self.min_ms:
            base = self.min_ms
        if base > self.max_ms:
            base = self.max_ms
        return base

    def schedule(self, now, neighbours=0, bg_used_ms=0, bg_budget_ms=0):
        """Set and return the next due time after an announce went out at `now`."""
        base = self.interval_ms(neighbours, bg_used_ms, bg_budget_ms)
        span = base * JITTER_PCT // 100
        iv = base - span + rand(2 * span + 1)
        if iv < self.min_ms:
            iv = self.min_ms
        if iv > self.max_ms:
            iv = self.max_ms
        self.last_interval = iv
        self.sent += 1
        self.due = add(now, iv)
        if base < self.max_ms:
            self.backoff += 1
        return self.due

    def reset(self, now=None):
        """The neighbourhood changed: back to the minimum interval (from the next
        announce on; with `now`, the pending one is pulled in to at most min away)."""
        self.backoff = 0
        if now is not None and self.due is not None and diff(self.due, now) > self.min_ms:
            self.due = add(now, self.min_ms // 2 + rand(self.min_ms // 2 + 1))

    def is_due(self, now):
        return self.due is not None and diff(now, self.due) >= 0
