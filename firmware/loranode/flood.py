"""Per-source flood limit: token buckets, one per recently heard source.

Every received frame that passed the header-only checks takes one token from its
source's bucket: `rate` tokens (frames) per node-clock minute, at most `burst` held
(the node options flood_rate_per_min / flood_burst; a rate of 0 disables the limit).
Times are node ticks (loranode.clock). The table holds one bucket per peer-table slot, preallocated
in parallel lists; an unknown source takes the least recently used bucket (`evicted`)
and starts full. Which frames spend tokens and who is charged for a frame over the
limit is the receive path's business (loranode.receive: only authenticated, fresh
frames spend them).
"""

from loranode.clock import diff
from loranode.constants import new_index

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

FLOOD_COST = const(60000)  # one frame in bucket units (1 unit = 1 ms at 1 frame/minute)


class FloodTable:
    """Per-source token buckets in preallocated parallel lists (see the module docstring).

    Units: a bucket holds up to burst * FLOOD_COST; it refills `rate` units per ms
    (rate frames per minute) and a frame costs FLOOD_COST. Times are node-clock ms.
    """

    def __init__(self, capacity, rate_per_min, burst):
        self.capacity = capacity
        self.rate = rate_per_min
        self.full = burst * FLOOD_COST
        self.ids = [None] * capacity
        self.credit = [0] * capacity
        self.t = [0] * capacity  # last frame seen (LRU key)
        self.index = new_index(capacity)
        self.count = 0
        self.evicted = 0

    def __len__(self):
        return self.count

    def _victim(self):
        best = 0
        for i in range(self.capacity):
            if self.ids[i] is None:
                return i
            if diff(self.t[i], self.t[best]) < 0:
                best = i
        return best

    def allow(self, src, now):
        """Take one token from src's bucket; False when it is empty (over the limit)."""
        if self.rate <= 0:
            return True
        i = self.index.get(src)
        if i is None:
            i = self._victim()
            old = self.ids[i]
            if old is None:
                self.count += 1
            else:
                del self.index[old]
                self.evicted += 1
            self.ids[i] = src
            self.index[src] = i
            self.credit[i] = self.full
        else:
            d = diff(now, self.t[i])
            if d > 0:
                room = self.full - self.credit[i]
                if d >= room // self.rate + 1:
                    self.credit[i] = self.full
                else:
                    self.credit[i] += d * self.rate
        self.t[i] = now
        if self.credit[i] >= FLOOD_COST:
            self.credit[i] -= FLOOD_COST
            return True
        return False

    def forget(self, src):
        i = self.index.get(src)
        if i is not None:
            del self.index[src]
            self.ids[i] = None
            self.count -= 1
