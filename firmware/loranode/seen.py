"""Duplicate suppression: a fixed ring of recently seen keys plus a bounded index.

A key is (origin id, sequence) for frames, or a content hash (bytes) for
content-addressed objects (txids, block hashes; stored with sequence HASH_SEQ). The
ring remembers the last `capacity` keys; adding to a full ring forgets the oldest. The
membership index is an open-addressing hash table (linear probing, backward-shift
deletion) in a preallocated array of at least twice the capacity, so a lookup is a few
probes, never a scan of the ring, and no operation allocates (on MicroPython `hash()`
of bytes is a small int cached in the object). Keys must be `bytes`.
"""

from array import array

from loranode.constants import SEEN

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

HASH_SEQ = const(-1)  # sequence slot of content-hash keys (frame sequences are u16)


class SeenRing:
    def __init__(self, capacity=SEEN):
        if not 1 <= capacity <= 16383:
            raise ValueError("capacity out of range")
        n = capacity
        self.capacity = n
        self._keys = [None] * n
        self._seqs = array("i", bytes(4 * n))
        self._pos = 0
        self.count = 0
        self.duplicates = 0
        size = 4
        while size < 2 * n:
            size <<= 1
        self._mask = size - 1
        t = array("h", bytes(2 * size))
        for i in range(size):
            t[i] = -1
        self._table = t

    def __len__(self):
        return self.count

    def _home(self, key, seq):
        return (hash(key) ^ (seq * 2533)) & self._mask

    def _find(self, key, seq):
        """Index-table position holding (key, seq), or -1."""
        t = self._table
        m = self._mask
        i = self._home(key, seq)
        while True:
            s = t[i]
            if s < 0:
                return -1
            if self._seqs[s] == seq and self._keys[s] == key:
                return i
            i = (i + 1) & m

    def contains(self, key, seq=HASH_SEQ):
        return self._find(key, seq) >= 0

    def check_and_add(self, key, seq=HASH_SEQ):
        """True (and remembered) if (key, seq) is new; False for a duplicate."""
        if self._find(key, seq) >= 0:
            self.duplicates += 1
            return False
        s = self._pos
        if self._keys[s] is not None:
            self._unlink(self._find(self._keys[s], self._seqs[s]))
        else:
            self.count += 1
        self._keys[s] = key
        self._seqs[s] = seq
        t = self._table
        m = self._mask
        i = self._home(key, seq)
        while t[i] >= 0:
            i = (i + 1) & m
        t[i] = s
        self._pos = s + 1 if s + 1 < self.capacity else 0
        return True

    def check_and_add_hash(self, digest):
        return self.check_and_add(digest, HASH_SEQ)

    def _unlink(self, i):
        # backward-shift deletion keeps every probe chain unbroken without tombstones
        t = self._table
        m = self._mask
        t[i] = -1
        j = i
        while True:
            j = (j + 1) & m
            s = t[j]
            if s < 0:
                return
            k = self._home(self._keys[s], self._seqs[s])
            # entry at j may move to the hole at i unless its home lies cyclically in (i, j]
            if i <= j:
                stays = i < k <= j
            else:
                stays = k > i or k <= j
            if not stays:
                t[i] = s
                t[j] = -1
                i = j

    def clear(self):
        for s in range(self.capacity):
            self._keys[s] = None
        t = self._table
        for i in range(len(t)):
            t[i] = -1
        self._pos = 0
        self.count = 0
