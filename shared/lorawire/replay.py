"""Replay protection: a sliding window per source over 16-bit frame sequence numbers.

`ReplayWindow` is the anti-replay window of IPsec (RFC 4303 Appendix A; the bitmap idea
of RFC 6479 at a single word): `top` is the highest sequence accepted, bit i of
`bitmap` says whether top - i was seen. Sequence numbers wrap at 65536 and compare by
serial number arithmetic (RFC 1982): seq is "ahead" of top when (seq - top) mod 65536
is in 1..32767. A sequence exactly 32768 away is undefined in RFC 1982 and is refused.

Accepted: ahead of top (the window slides), or behind it by less than WINDOW and not
yet seen. Refused: top itself, a seen one, anything WINDOW or more behind.

`ReplayTable` keeps one window per source id in a fixed number of slots (REPLAY_SOURCES)
and evicts the least recently used source when full. An evicted source starts over:
its next frame is accepted as fresh, so a replay can slip through once per eviction;
an attacker needs more than the table size of live sources to cause that, and it is
bounded by the table size. `forget(source)` drops a window on purpose (e.g. when a
node's newer signed record shows it rebooted and restarted its counter).

Check a frame's tag before its sequence: otherwise forged frames could slide windows.
"""

from lorawire.lru import LruTable

WINDOW = 64
REPLAY_SOURCES = 32
SEQ_MOD = 0x10000
_HALF = 0x8000
_MASK = (1 << WINDOW) - 1


class ReplayWindow:
    __slots__ = ("top", "bitmap")

    def __init__(self):
        self.top = -1  # nothing seen yet
        self.bitmap = 0

    def check(self, seq):
        """True when seq would be accepted; changes nothing."""
        if self.top < 0:
            return True
        ahead = (seq - self.top) % SEQ_MOD
        if ahead == 0:
            return False
        if ahead < _HALF:
            return True
        back = SEQ_MOD - ahead
        return back < WINDOW and not (self.bitmap >> back) & 1

    def check_and_update(self, seq):
        """True (and remember seq) when seq is fresh; False for a replay or a too-old one."""
        if seq < 0 or seq >= SEQ_MOD:
            return False
        if self.top < 0:
            self.top = seq
            self.bitmap = 1
            return True
        ahead = (seq - self.top) % SEQ_MOD
        if ahead == 0:
            return False
        if ahead < _HALF:
            if ahead >= WINDOW:
                self.bitmap = 1
            else:
                self.bitmap = ((self.bitmap << ahead) | 1) & _MASK
            self.top = seq
            return True
        back = SEQ_MOD - ahead
        if back >= WINDOW or (self.bitmap >> back) & 1:
            return False
        self.bitmap |= 1 << back
        return True


class ReplayTable:
    """One ReplayWindow per source id, at most `capacity` of them (LRU eviction)."""

    def __init__(self, capacity=REPLAY_SOURCES):
        self._windows = LruTable(capacity)
        self.capacity = capacity
        self.replays = 0  # frames refused, for status dumps

    def __len__(self):
        return len(self._windows)

    @property
    def evictions(self):
        return self._windows.evictions

    def check_and_update(self, source, seq):
        source = bytes(source)
        window = self._windows.get(source)
        if window is None:
            window = ReplayWindow()
            self._windows.put(source, window)
        if window.check_and_update(seq):
            return True
        self.replays += 1
        return False

    def forget(self, source):
        self._windows.pop(bytes(source))
