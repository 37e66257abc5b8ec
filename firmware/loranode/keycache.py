"""Pairwise link keys per neighbour id, fixed capacity, least-recently-used eviction.

Recency is a counter stamped on every get/put (renumbered when it nears 2**29, so it
stays a small int on the ESP32). Ids must be `bytes`; keys are 32 bytes.
"""

from loranode.constants import KEY_CACHE, KEY_LEN, new_index

_RENUMBER_AT = 1 << 29


class KeyCache:
    def __init__(self, capacity=KEY_CACHE):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        n = capacity
        self.capacity = n
        self._index = new_index(n)
        self.ids = [None] * n
        self.keys = [None] * n
        self.stamp = [0] * n
        self._clock = 0
        self.count = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self):
        return self.count

    def _touch(self, s):
        c = self._clock + 1
        if c >= _RENUMBER_AT:
            c = self._renumber() + 1
        self._clock = c
        self.stamp[s] = c

    def _renumber(self):
        # ranks 1..count in recency order; O(n^2) but runs once per 2**29 touches
        n = self.capacity
        top = 0
        for s in range(n):
            if self.ids[s] is None:
                continue
            r = 1
            for o in range(n):
                if self.ids[o] is not None and self.stamp[o] < self.stamp[s]:
                    r += 1
            self.stamp[s] = r
            if r > top:
                top = r
        return top

    def get(self, node_id):
        s = self._index.get(node_id, -1)
        if s < 0:
            self.misses += 1
            return None
        self.hits += 1
        self._touch(s)
        return self.keys[s]

    def put(self, node_id, key):
        if len(key) != KEY_LEN:
            raise ValueError("link key must be 32 bytes")
        s = self._index.get(node_id, -1)
        if s < 0:
            if self.count < self.capacity:
                s = self.ids.index(None)
            else:
                s = 0
                for i in range(1, self.capacity):
                    if self.stamp[i] < self.stamp[s]:
                        s = i
                del self._index[self.ids[s]]
                self.count -= 1
                self.evictions += 1
            self.ids[s] = node_id
            self._index[node_id] = s
            self.count += 1
        self.keys[s] = key
        self._touch(s)
        return s

    def remove(self, node_id):
        s = self._index.get(node_id, -1)
        if s < 0:
            return False
        del self._index[node_id]
        self.ids[s] = None
        self.keys[s] = None
        self.count -= 1
        return True
