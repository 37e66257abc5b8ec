"""The shaper: the bounded queue of frames going down to the mesh, released as the
bridge's duty-cycle budget allows (see `MeshShaper` for the policy).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from loragate.bounded import BoundedDict
from loragate.mesh.link import (
    DEFERRED,
    DONE,
    LOST,
    PRIO_BLOCK,
    PRIO_CONTROL,
    PRIO_GOSSIP,
    PRIO_TX,
    PRIORITIES,
    PRIORITY_NAMES,
    RETRYABLE,
    MeshLink,
)
from loragate.ratelimit import TokenBucket
from lorawire import airtime, link
from lorawire import frame as wireframe

SHAPER_CAPACITY = 64
SHAPER_WINDOW = 2
MAX_AGE_S = {PRIO_CONTROL: 30.0, PRIO_BLOCK: 120.0, PRIO_TX: 60.0, PRIO_GOSSIP: 30.0}
ORIGIN_RATE = 0.1  # frames per second per internet origin (6 a minute)
ORIGIN_BURST = 5.0
MAX_ORIGINS = 1024
PROBE_INTERVAL_S = 5.0

# Drop reasons (MeshShaper.dropped keys)
DROP_QUEUE_FULL = "queue_full"  # evicted or refused: queue full of equal/higher priority
DROP_RATE = "rate_limited"  # origin over its token bucket
DROP_ORIGIN_SHARE = "origin_share"  # origin already holds its share of the queue
DROP_EXPIRED = "expired"  # older than MAX_AGE_S[priority] before it could go
DROP_NEVER = "never"  # board says it can never be sent (too long for budget/dwell)
DROP_REFUSED = "refused"  # board refused (banned destination, frame rejected)
DROP_LOST = "lost"  # handed over, no answer (not retried: it may have gone out)


@dataclass
class _Entry:
    frame: bytes
    priority: int
    origin: Hashable | None
    queued_at: float
    deadline: float
    attempts: int = 0


@dataclass
class ShaperStats:
    submitted: int = 0
    sent: int = 0
    deferred: int = 0
    probes: int = 0
    airtime_sent_ms: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    sent_by_priority: Counter[int] = field(default_factory=Counter)
    dropped_by_priority: Counter[int] = field(default_factory=Counter)


class MeshShaper:
    """Bounded priority queue of frames for the mesh, released as the duty cycle allows.

    Policy:
    * Order: lower priority number first (control > blocks > transactions > gossip),
      oldest first within a priority.
    * `submit(frame, priority, origin)`: `origin` names the internet peer the frame comes
      from (None = the gateway's own traffic, not rate-limited). Each origin has a token
      bucket (`origin_rate` frames/s, `origin_burst`), may hold at most
      `origin_max_queued` frames, and origins are tracked in an LRU of `max_origins`.
      The gateway must not mirror the internet onto LoRa.
    * Full queue (`capacity`): the oldest frame of the lowest priority present is evicted
      if that priority is lower than the new frame's; otherwise the new frame is refused.
    * A frame older than `max_age[priority]` seconds is dropped ("expired").
    * A frame leaves only when MeshLink.budget_wait says the reported budget has room for
      its estimated airtime; when the stats say "full" with no return time, one frame is
      sent as a probe every `probe_interval` s (the board answers with TX_DEFERRED and the
      time the budget returns). At most `window` frames are with the board at once.
    * TX_DEFERRED puts the frame back at the head of its priority (it keeps its deadline);
      a wait of NEVER or a refusal drops it; a lost frame is not retried.
    Every drop is counted in `stats.dropped[reason]` and `stats.dropped_by_priority`.
    """

    def __init__(
        self,
        mesh: MeshLink,
        *,
        capacity: int = SHAPER_CAPACITY,
        window: int = SHAPER_WINDOW,
        max_age: dict[int, float] | None = None,
        origin_rate: float = ORIGIN_RATE,
        origin_burst: float = ORIGIN_BURST,
        origin_max_queued: int | None = None,
        max_origins: int = MAX_ORIGINS,
        probe_interval: float = PROBE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or window < 1 or max_origins < 1:
            raise ValueError("capacity, window and max_origins must be >= 1")
        self.mesh = mesh
        self.capacity = capacity
        self.window = window
        self.max_age = dict(MAX_AGE_S if max_age is None else max_age)
        self.origin_rate = origin_rate
        self.origin_burst = origin_burst
        self.origin_max_queued = (
            max(1, capacity // 4) if origin_max_queued is None else origin_max_queued
        )
        self.max_origins = max_origins
        self.probe_interval = probe_interval
        self.clock = clock
        self.stats = ShaperStats()
        self._queues: dict[int, deque[_Entry]] = {p: deque() for p in PRIORITIES}
        self._count = 0
        # origin -> its bucket; bounded by the rule in _bucket, not by the table itself
        self._buckets: BoundedDict[Hashable, TokenBucket] = BoundedDict(max_origins)
        self._origin_queued: Counter[Hashable] = Counter()
        self._inflight = 0
        self._inflight_ms = 0.0
        self._last_probe = -math.inf
        self._wake = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return self._count

    def queued_by_priority(self) -> dict[str, int]:
        return {PRIORITY_NAMES[p]: len(q) for p, q in self._queues.items()}

    def waiting(self) -> list[tuple[int, Hashable | None, bytes]]:
        """(priority, origin, frame) of every queued frame, in the order they would go."""
        return [(p, e.origin, e.frame) for p in PRIORITIES for e in self._queues[p]]

    def queued_by_origin(self) -> dict[Hashable, int]:
        """Frames queued per internet origin (each origin's share is capped)."""
        return dict(self._origin_queued)

    def counters(self) -> dict[str, Any]:
        s = self.stats
        return {
            "queued": self._count,
            "inflight": self._inflight,
            "submitted": s.submitted,
            "sent": s.sent,
            "deferred": s.deferred,
            "probes": s.probes,
            "airtime_sent_ms": s.airtime_sent_ms,
            "dropped": dict(s.dropped),
            "sent_by_priority": {PRIORITY_NAMES[p]: n for p, n in s.sent_by_priority.items()},
            "dropped_by_priority": {PRIORITY_NAMES[p]: n for p, n in s.dropped_by_priority.items()},
        }

    # -- submit ---------------------------------------------------------------------------

    def _drop(self, reason: str, priority: int) -> None:
        self.stats.dropped[reason] += 1
        self.stats.dropped_by_priority[priority] += 1

    def _bucket(self, origin: Hashable, now: float) -> TokenBucket:
        b = self._buckets.get(origin)
        if b is None:
            if len(self._buckets) >= self.max_origins:
                # forget the least recently active origin without frames queued
                for old in self._buckets:
                    if not self._origin_queued.get(old):
                        del self._buckets[old]
                        break
                else:
                    self._buckets.pop_oldest()
            b = TokenBucket(self.origin_rate, self.origin_burst, now)
            self._buckets.put(origin, b)
        else:
            self._buckets.touch(origin)
        return b

    def submit(self, frame: bytes, priority: int, origin: Hashable | None = None) -> bool:
        """Queue a frame for the mesh; False when it was dropped (and counted)."""
        if priority not in self._queues:
            raise ValueError(f"priority must be one of {PRIORITIES!r}")
        now = self.clock()
        self.stats.submitted += 1
        if not wireframe.MIN_FRAME <= len(frame) <= wireframe.MAX_LORA_FRAME:
            self._drop(DROP_REFUSED, priority)
            return False
        self.expire(now)
        if origin is not None:
            if self._origin_queued[origin] >= self.origin_max_queued:
                self._drop(DROP_ORIGIN_SHARE, priority)
                return False
            if not self._bucket(origin, now).take(1, now):
                self._drop(DROP_RATE, priority)
                return False
        if self._count >= self.capacity:
            low = max(p for p, q in self._queues.items() if q)
            if low <= priority:
                self._drop(DROP_QUEUE_FULL, priority)
                return False
            self._forget(self._queues[low].popleft())
            self._count -= 1
            self._drop(DROP_QUEUE_FULL, low)
        entry = _Entry(bytes(frame), priority, origin, now, now + self.max_age[priority])
        self._queues[priority].append(entry)
        self._count += 1
        if origin is not None:
            self._origin_queued[origin] += 1
        self._wake.set()
        return True

    def _forget(self, entry: _Entry) -> None:
        """The entry leaves the shaper for good: release its origin's share."""
        o = entry.origin
        if o is not None:
            self._origin_queued[o] -= 1
            if self._origin_queued[o] <= 0:
                del self._origin_queued[o]

    def expire(self, now: float) -> None:
        """Drop the frames whose deadline has passed (counted as expired)."""
        for p, q in self._queues.items():
            # deadlines are not monotonic within a queue (requeued frames go to the head)
            if any(e.deadline <= now for e in q):
                keep: deque[_Entry] = deque()
                for e in q:
                    if e.deadline <= now:
                        self._forget(e)
                        self._count -= 1
                        self._drop(DROP_EXPIRED, p)
                    else:
                        keep.append(e)
                self._queues[p] = keep

    def _head(self) -> _Entry | None:
        for p in PRIORITIES:
            q = self._queues[p]
            if q:
                return q[0]
        return None

    # -- pump -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._pump_task is not None:
            raise RuntimeError("MeshShaper already started")
        self._pump_task = asyncio.create_task(self._pump(), name="mesh-shaper")

    async def close(self) -> None:
        tasks = list(self._sends)
        if self._pump_task is not None:
            tasks.append(self._pump_task)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._pump_task = None
        self._sends.clear()

    async def _wait(self, timeout: float) -> None:
        """Sleep until submit/tx result wakes us, the link state changes, or timeout."""
        self._wake.clear()
        waits = [
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self.mesh.changed()),
        ]
        try:
            await asyncio.wait(waits, timeout=max(0.0, timeout), return_when="FIRST_COMPLETED")
        finally:
            for w in waits:
                w.cancel()

    async def _pump(self) -> None:
        while True:
            now = self.clock()
            self.expire(now)
            head = self._head()
            if head is None or not self.mesh.ready or self._inflight >= self.window:
                await self._wait(1.0)
                continue
            est = self.mesh.airtime_estimate_ms(len(head.frame))
            # frames with the board but not yet confirmed count against the budget too
            wait = self.mesh.budget_wait(est + self._inflight_ms)
            probe = False
            if wait is None:
                since = now - self._last_probe
                if since < self.probe_interval:
                    await self._wait(self.probe_interval - since)
                    continue
                probe = True
            elif wait > 0:
                await self._wait(min(wait, 1.0))
                continue
            if probe:
                if self._inflight:
                    await self._wait(1.0)
                    continue
                self._last_probe = now
                self.stats.probes += 1
            self._queues[head.priority].popleft()
            self._count -= 1
            self._inflight += 1
            self._inflight_ms += est
            task = asyncio.create_task(self._send(head, est))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)
            # let the send reach the board before looking at the budget again
            await asyncio.sleep(0)

    async def _send(self, e: _Entry, est: float) -> None:
        e.attempts += 1
        requeue = False
        try:
            r = await self.mesh.send_frame(e.frame, e.priority)
        finally:
            self._inflight -= 1
            self._inflight_ms = max(0.0, self._inflight_ms - est) if self._inflight else 0.0
            self._wake.set()
        if r.status == DONE:
            self._forget(e)
            self.stats.sent += 1
            self.stats.sent_by_priority[e.priority] += 1
            self.stats.airtime_sent_ms += r.airtime_ms
        elif r.status == DEFERRED:
            self.stats.deferred += 1
            if r.wait_ms == airtime.NEVER:
                self._forget(e)
                self._drop(DROP_NEVER, e.priority)
            elif r.reason == link.DEFER_BANNED:
                self._forget(e)
                self._drop(DROP_REFUSED, e.priority)
            else:
                requeue = True
        elif r.status == LOST:
            self._forget(e)
            self._drop(DROP_LOST, e.priority)
        elif r.detail in RETRYABLE:
            requeue = True  # never reached the board: try again when it is back
        else:
            self._forget(e)
            self._drop(DROP_REFUSED, e.priority)
        if requeue:
            self._requeue(e)

    def _requeue(self, e: _Entry) -> None:
        """Back to the head of its priority; if the queue filled up meanwhile, the usual
        eviction rule applies (the requeued frame itself may be the one to go)."""
        if self._count >= self.capacity:
            low = max(p for p, q in self._queues.items() if q)
            if low <= e.priority:
                self._forget(e)
                self._drop(DROP_QUEUE_FULL, e.priority)
                return
            self._forget(self._queues[low].popleft())
            self._count -= 1
            self._drop(DROP_QUEUE_FULL, low)
        self._queues[e.priority].appendleft(e)
        self._count += 1
        self._wake.set()
