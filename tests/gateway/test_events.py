"""Event bus: bounded subscriber queues that drop the oldest, callbacks, filtering."""

from __future__ import annotations

import asyncio

import pytest

from loragate.events import Event, EventBus, EventKind


def test_slow_subscriber_drops_oldest_and_counts() -> None:
    async def main() -> None:
        bus = EventBus()
        slow = bus.subscribe(maxsize=3)
        fast = bus.subscribe(maxsize=100)
        for i in range(10):
            bus.emit(EventKind.DISCOVERED, now=float(i), addr=f"10.0.0.{i}")
        assert slow.dropped == 7 and fast.dropped == 0
        got = [slow.get_nowait().details["addr"] for _ in range(3)]
        assert got == ["10.0.0.7", "10.0.0.8", "10.0.0.9"]
        with pytest.raises(asyncio.QueueEmpty):
            slow.get_nowait()
        assert fast.queue.qsize() == 10
        first = await fast.get()
        assert first.kind is EventKind.DISCOVERED and first.time == 0.0

    asyncio.run(main())


def test_async_iteration_and_kind_filter() -> None:
    async def main() -> None:
        bus = EventBus()
        bans = bus.subscribe(kinds={EventKind.BANNED, EventKind.UNBANNED})
        received: list[Event] = []

        async def consume() -> None:
            async for ev in bans:
                received.append(ev)
                if len(received) == 2:
                    return

        task = asyncio.create_task(consume())
        bus.emit("connected", peer="a")
        bus.emit("banned", target="node:01")
        bus.emit("score_changed", peer="a", score=40.0)
        bus.emit("unbanned", target="node:01")
        await asyncio.wait_for(task, 2)
        assert [e.kind for e in received] == [EventKind.BANNED, EventKind.UNBANNED]
        bans.close()
        bus.emit("banned", target="x")
        assert bans.queue.empty()

    asyncio.run(main())


def test_callbacks_run_synchronously_and_errors_are_contained() -> None:
    bus = EventBus()
    seen: list[str] = []

    def bad(ev: Event) -> None:
        raise RuntimeError("subscriber bug")

    bus.add_callback(bad)
    remove = bus.add_callback(lambda ev: seen.append(ev.kind.value))
    bus.emit(EventKind.EVICTED, peer="p")
    assert seen == ["evicted"]
    remove()
    bus.emit(EventKind.EVICTED, peer="p")
    assert seen == ["evicted"] and bus.published == 2
    with pytest.raises(ValueError):
        bus.emit("not_a_kind")
    with pytest.raises(ValueError):
        bus.subscribe(maxsize=0)
