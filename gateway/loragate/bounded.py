"""A mapping that holds at most `maxlen` entries and forgets the stalest first.

Every table of the gateway that a peer can make grow (scores, records, token buckets,
dedupe sets, ban points...) is one of these. Order is recency of *writes*: `put` (and
`d[key] = value`) makes an entry the newest, `touch` does so without a new value, and
plain reads (`get`, `d[key]`, `in`) leave the order alone, so a lookup made on a
stranger's behalf cannot keep an entry alive. When a `put` goes over `maxlen` the
oldest entries are dropped and handed to `on_evict(key, value)`.

Why not `cachetools.LRUCache`: it moves an entry on every read, and its iteration
order is insertion, not recency; several tables here evict by "least recently
written" and iterate oldest-first to pick victims.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, ItemsView, Iterator, KeysView, ValuesView
from typing import Generic, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class BoundedDict(Generic[K, V]):
    __slots__ = ("maxlen", "evictions", "_data", "_on_evict")

    def __init__(self, maxlen: int, on_evict: Callable[[K, V], None] | None = None) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self.maxlen = maxlen
        self.evictions = 0  # entries dropped for room, over the table's life
        self._data: OrderedDict[K, V] = OrderedDict()
        self._on_evict = on_evict

    # ---- writes ------------------------------------------------------------------

    def put(self, key: K, value: V) -> None:
        """Insert or replace `key`, make it the newest, drop the oldest beyond maxlen."""
        data = self._data
        data[key] = value
        data.move_to_end(key)
        while len(data) > self.maxlen:
            old, gone = data.popitem(last=False)
            self.evictions += 1
            if self._on_evict is not None:
                self._on_evict(old, gone)

    __setitem__ = put

    def setdefault(self, key: K, default: V) -> V:
        """The value held for `key`; when there is none, `default` is put (as newest)."""
        if key in self._data:
            return self._data[key]
        self.put(key, default)
        return default

    def touch(self, key: K) -> bool:
        """Make an entry the newest without changing it; False if there is none."""
        if key not in self._data:
            return False
        self._data.move_to_end(key)
        return True

    @overload
    def pop(self, key: K) -> V | None: ...

    @overload
    def pop(self, key: K, default: D) -> V | D: ...

    def pop(self, key: K, default: D | None = None) -> V | D | None:
        """Remove an entry (not an eviction: `on_evict` is not called)."""
        return self._data.pop(key, default)

    def __delitem__(self, key: K) -> None:
        del self._data[key]

    def pop_oldest(self) -> tuple[K, V]:
        """Remove and return the oldest entry (KeyError when empty)."""
        if not self._data:
            raise KeyError("pop_oldest(): the table is empty")
        return self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    # ---- reads (they never change the order) -------------------------------------

    @overload
    def get(self, key: K) -> V | None: ...

    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: D | None = None) -> V | D | None:
        return self._data.get(key, default)

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        """Keys, oldest first."""
        return iter(self._data)

    def keys(self) -> KeysView[K]:
        return self._data.keys()

    def values(self) -> ValuesView[V]:
        return self._data.values()

    def items(self) -> ItemsView[K, V]:
        return self._data.items()

    def __repr__(self) -> str:
        return f"BoundedDict({len(self._data)}/{self.maxlen})"
