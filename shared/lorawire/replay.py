"""Replay protection: a sliding window per source over 16-bit frame sequence numbers.

A window is the anti-replay window of IPsec (RFC 4303 Appendix A): `top` is the highest
sequence accepted, bit i of `bits` says whether top - i was seen. WINDOW is 30, so the
bitmap is one small int on a 32-bit board (a 64-bit one would be a heap-allocated long
int, rebuilt on every frame). Sequence numbers wrap at 65536 and compare by serial
number arithmetic (RFC 1982): seq is "ahead" of top when (seq - top) mod 65536 is in
1..32767. A sequence exactly 32768 away is undefined in RFC 1982 and is refused.

Accepted: ahead of top (the window slides), or behind it by less than WINDOW and not yet
seen. Refused: top itself, a seen one, anything WINDOW or more behind.

`ReplayTable` keeps, per source id, one window per channel (0: network-tagged frames,
1: link-tagged ones, so a member holding the network key cannot slide the window of a
source's link traffic) in preallocated arrays with REPLAY_SOURCES slots, and evicts the
least recently used source when full. An evicted source starts over: its next frame is
accepted as fresh, so a replay can slip through once per eviction; an attacker needs
more than the table size of live sources to cause that. `forget(source)` drops a source
on purpose (e.g. when a node's newer signed record shows it rebooted).

Check a frame's tag before its sequence: otherwise forged frames could slide windows.
Nothing here allocates, except the table's index entry for a new source.
"""

from array import array

WINDOW = 30
REPLAY_SOURCES = 32
CHANNELS = 2
SEQ_MOD = 0x10000
_HALF = 0x8000
_BITS = (1 << WINDOW) - 1
_RENUMBER_AT = 1 << 29


def _accept(tops, bits, i, seq):
    """Check seq against window i of the arrays and slide it; True when seq is fresh."""
    if seq < 0 or seq >= SEQ_MOD:
        return False
    top = tops[i]
    if top < 0:
        tops[i] = seq
        bits[i] = 1
        return True
    ahead = (seq - top) % SEQ_MOD
    if ahead == 0:
        return False
    if ahead < _HALF:
        tops[i] = seq
        # mask before shifting: bits << ahead could pass 2**30, a long int on a board
        bits[i] = 1 if ahead >= WINDOW else ((bits[i] & (_BITS >> ahead)) << ahead) | 1
        return True
    back = SEQ_MOD - ahead
    if back >= WINDOW or (bits[i] >> back) & 1:
        return False
    bits[i] |= 1 << back
    return True


class ReplayWindow:
    """One window on its own (tests, and sessions that need just one)."""

    def __init__(self):
        self._top = array("i", [-1])
        self._bits = array("i", [0])

    @property
    def top(self):
        return self._top[0]

    def check(self, seq):
        """True when seq would be accepted; changes nothing."""
        return _accept(array("i", self._top), array("i", self._bits), 0, seq)

    def check_and_update(self, seq):
        """True (and remember seq) when seq is fresh; False for a replay or a too-old one."""
        return _accept(self._top, self._bits, 0, seq)


class ReplayTable:
    """Windows of up to `capacity` sources, CHANNELS per source, least recently used evicted."""

    def __init__(self, capacity=REPLAY_SOURCES):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.ids = [None] * capacity
        self._index = {}
        self._top = array("i", [-1] * (CHANNELS * capacity))
        self._bits = array("i", [0] * (CHANNELS * capacity))
        self._stamp = array("i", [0] * capacity)
        self._clock = 0
        self.count = 0
        self.replays = 0  # frames refused, for status dumps
        self.evictions = 0

    def __len__(self):
        return self.count

    def _slot(self, source):
        s = self._index.get(source, -1)
        if s >= 0:
            return s
        if self.count < self.capacity:
            s = self.ids.index(None)
            self.count += 1
        else:
            s = 0
            for i in range(1, self.capacity):
                if self._stamp[i] < self._stamp[s]:
                    s = i
            del self._index[self.ids[s]]
            self.evictions += 1
        if type(source) is not bytes:
            source = bytes(source)
        self.ids[s] = source
        self._index[source] = s
        for c in range(CHANNELS):
            self._top[CHANNELS * s + c] = -1
            self._bits[CHANNELS * s + c] = 0
        return s

    def _touch(self, s):
        c = self._clock + 1
        if c >= _RENUMBER_AT:
            c = self._renumber()
        self._clock = c
        self._stamp[s] = c

    def _renumber(self):
        """Keep stamps small ints: ranks 1..capacity, in order; returns the next stamp.
        (A method of its own: the sort key's closure would cost a heap cell on every
        _touch, which runs per frame.)"""
        stamp = self._stamp
        order = sorted(range(self.capacity), key=lambda i: stamp[i])
        for rank, i in enumerate(order):
            stamp[i] = rank + 1
        return self.capacity + 1

    def check_and_update(self, source, seq, channel=0):
        """True (and remember) when seq is fresh for `source` on `channel`; else False."""
        s = self._slot(source)
        self._touch(s)
        if _accept(self._top, self._bits, CHANNELS * s + channel, seq):
            return True
        self.replays += 1
        return False

    def forget(self, source):
        s = self._index.pop(bytes(source), -1)
        if s >= 0:
            self.ids[s] = None
            self.count -= 1
