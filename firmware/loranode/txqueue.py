"""Outbound frames in preallocated slots, three priorities, duty-cycle aware.

Priorities: CONTROL (0: acks, pongs, handshakes) > BLOCKS (1) > GOSSIP (2: transactions,
announcements, peer exchange). Within a priority frames leave in arrival order.

Full queue: a new frame evicts the oldest frame of the lowest priority present if that
priority is lower than the new frame's; otherwise the new frame is rejected. Either way
the lost frame is counted in `dropped[its priority]`. Frames older than
`max_age_ms[prio]` (None = no limit) are dropped by `expire(now)` and counted in
`expired`. For every priority p at all times:
    pushed[p] == sent[p] + dropped[p] + expired[p] + queued(p).

`pop_ready(can_send)` offers the oldest frame of each priority, highest first, to
`can_send(frame, prio)` and removes and returns the first one allowed (None if none;
`last_prio` tells its priority). The duty-cycle policy lives in `can_send`: giving lower
priorities a smaller share of the remaining airtime is what makes them wait when the
budget is short. With `strict=True` a refused frame also holds back every lower
priority.
"""

from loranode.clock import diff as ticks_diff
from loranode.constants import TXQUEUE

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

# lorawire.link's PRIO_* (what a gateway's FRAME_DOWN carries), kept here as const: the
# queue needs no link module, and tests/test_vocabulary.py checks they agree.
CONTROL = const(0)
BLOCKS = const(1)
GOSSIP = const(2)
PRIORITIES = const(3)

_RENUMBER_AT = 1 << 29


class TxQueue:
    def __init__(self, capacity=TXQUEUE, max_age_ms=None, strict=False):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        n = capacity
        self.capacity = n
        self.max_age_ms = max_age_ms
        self.strict = strict
        self.frames = [None] * n
        self.prio = bytearray(n)
        self.ticket = [0] * n
        self.enqueued = [0] * n
        self._ticket = 0
        self.count = 0
        self.last_prio = -1
        self.pushed = [0] * PRIORITIES
        self.sent = [0] * PRIORITIES
        self.dropped = [0] * PRIORITIES
        self.expired = [0] * PRIORITIES

    def __len__(self):
        return self.count

    def queued(self, prio):
        n = 0
        for s in range(self.capacity):
            if self.frames[s] is not None and self.prio[s] == prio:
                n += 1
        return n

    def _oldest(self, prio):
        best = -1
        for s in range(self.capacity):
            if self.frames[s] is not None and self.prio[s] == prio:
                if best < 0 or self.ticket[s] < self.ticket[best]:
                    best = s
        return best

    def _renumber(self):
        # tickets become ranks 1..count in arrival order, so they stay small ints;
        # O(n^2) but runs once per 2**29 pushes
        n = self.capacity
        for s in range(n):
            if self.frames[s] is None:
                continue
            r = 1
            for o in range(n):
                if self.frames[o] is not None and self.ticket[o] < self.ticket[s]:
                    r += 1
            self.ticket[s] = r
        self._ticket = self.count

    def push(self, frame, prio, now):
        """Queue frame at priority prio; False if it was rejected (queue full)."""
        if not 0 <= prio < PRIORITIES:
            raise ValueError("bad priority")
        if frame is None:
            raise ValueError("frame is None")
        self.pushed[prio] += 1
        if self.count < self.capacity:
            s = self.frames.index(None)
        else:
            s = -1
            p = PRIORITIES - 1
            while p > prio:
                s = self._oldest(p)
                if s >= 0:
                    break
                p -= 1
            if s < 0:
                self.dropped[prio] += 1
                return False
            self.dropped[p] += 1
            self.frames[s] = None
            self.count -= 1
        if self._ticket >= _RENUMBER_AT:
            self._renumber()
        self._ticket += 1
        self.frames[s] = frame
        self.prio[s] = prio
        self.ticket[s] = self._ticket
        self.enqueued[s] = now
        self.count += 1
        return True

    def pop_ready(self, can_send=None):
        """Remove and return the highest-priority frame can_send(frame, prio) allows."""
        for p in range(PRIORITIES):
            s = self._oldest(p)
            if s < 0:
                continue
            f = self.frames[s]
            if can_send is None or can_send(f, p):
                self.frames[s] = None
                self.count -= 1
                self.sent[p] += 1
                self.last_prio = p
                return f
            if self.strict:
                break
        return None

    def expire(self, now):
        """Drop frames older than max_age_ms for their priority; returns how many."""
        lim = self.max_age_ms
        if lim is None:
            return 0
        n = 0
        for s in range(self.capacity):
            if self.frames[s] is None:
                continue
            a = lim[self.prio[s]]
            if a is not None and ticks_diff(now, self.enqueued[s]) > a:
                self.frames[s] = None
                self.count -= 1
                self.expired[self.prio[s]] += 1
                n += 1
        return n
