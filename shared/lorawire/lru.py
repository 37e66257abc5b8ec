"""A fixed-capacity map that evicts the least recently used entry when full.

MicroPython's OrderedDict has no move_to_end, so recency is a counter stamped on each
get/put and eviction scans for the smallest stamp: O(capacity), which for the small
tables it serves (16 link keys, 32 replay windows) is cheaper than keeping a list.
The counter would become a long int on an ESP32 after 2**30 touches (decades of LoRa
traffic); that is harmless.
"""


class LruTable:
    def __init__(self, capacity):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._items = {}  # key -> [stamp, value]
        self._clock = 0
        self.evictions = 0

    def __len__(self):
        return len(self._items)

    def __contains__(self, key):
        return key in self._items

    def get(self, key, default=None):
        entry = self._items.get(key)
        if entry is None:
            return default
        self._clock += 1
        entry[0] = self._clock
        return entry[1]

    def put(self, key, value):
        """Insert or replace; returns the evicted key, or None."""
        self._clock += 1
        entry = self._items.get(key)
        if entry is not None:
            entry[0] = self._clock
            entry[1] = value
            return None
        evicted = None
        if len(self._items) >= self.capacity:
            oldest = None
            for k, e in self._items.items():
                if oldest is None or e[0] < oldest:
                    oldest = e[0]
                    evicted = k
            del self._items[evicted]
            self.evictions += 1
        self._items[key] = [self._clock, value]
        return evicted

    def pop(self, key, default=None):
        entry = self._items.pop(key, None)
        return default if entry is None else entry[1]

    def keys(self):
        return list(self._items.keys())
