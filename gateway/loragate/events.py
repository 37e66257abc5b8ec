"""A small event bus: bounded per-subscriber queues plus synchronous callbacks.

``publish`` never blocks and never raises because of a subscriber: when a subscriber's
queue is full the *oldest* event is dropped and counted in ``Subscription.dropped``; a
callback that raises is logged and ignored. Use it from the event loop thread only
(asyncio.Queue is not thread-safe).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1024


class EventKind(StrEnum):
    DISCOVERED = "discovered"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    SCORE_CHANGED = "score_changed"
    BANNED = "banned"
    UNBANNED = "unbanned"
    EVICTED = "evicted"
    # the bridge board's link (mesh wing): up when its HELLO came, down when it went away
    BRIDGE_UP = "bridge_up"
    BRIDGE_DOWN = "bridge_down"
    # the bridge's duty-cycle budget: no room left for a frame / room again
    BUDGET_EXHAUSTED = "budget_exhausted"
    BUDGET_RETURNED = "budget_returned"
    # downlink objects refused because the air cannot carry them (counted, said once in a while)
    DOWNLINK_SHED = "downlink_shed"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    time: float = field(default_factory=time.time)
    details: dict[str, Any] = field(default_factory=dict)


Callback = Callable[[Event], None]


class Subscription:
    """One subscriber's bounded queue; async-iterable."""

    def __init__(self, bus: EventBus, maxsize: int, kinds: frozenset[EventKind] | None) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.kinds = kinds
        self.dropped = 0
        self._bus = bus

    def _offer(self, event: Event) -> None:
        if self.kinds is not None and event.kind not in self.kinds:
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    async def get(self) -> Event:
        return await self.queue.get()

    def get_nowait(self) -> Event:
        """Raises asyncio.QueueEmpty when nothing is waiting."""
        return self.queue.get_nowait()

    def close(self) -> None:
        self._bus.unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Event]:
        while True:
            yield await self.queue.get()


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._callbacks: list[Callback] = []
        self.published = 0

    def subscribe(
        self, maxsize: int = DEFAULT_QUEUE_SIZE, kinds: set[EventKind] | None = None
    ) -> Subscription:
        if maxsize < 1:
            raise ValueError("queue size must be at least 1")
        sub = Subscription(self, maxsize, frozenset(kinds) if kinds is not None else None)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def add_callback(self, fn: Callback) -> Callable[[], None]:
        """Call ``fn(event)`` synchronously on every publish; returns a remover."""
        self._callbacks.append(fn)

        def remove() -> None:
            if fn in self._callbacks:
                self._callbacks.remove(fn)

        return remove

    def publish(self, event: Event) -> None:
        self.published += 1
        for sub in list(self._subs):
            sub._offer(event)
        for fn in list(self._callbacks):
            try:
                fn(event)
            except Exception:
                log.exception("event callback %r failed on %s", fn, event.kind)

    def emit(self, kind: EventKind | str, now: float | None = None, **details: Any) -> Event:
        """Build and publish an event; returns it."""
        event = Event(EventKind(kind), time.time() if now is None else now, details)
        self.publish(event)
        return event
