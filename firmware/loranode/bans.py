"""Misbehaviour points and a fixed-capacity ban table that survives reboots.

Points: each misbehaviour kind (a lorawire.auth code: the vocabulary both sides share;
names in lorawire.names, on hosts) adds POINT_VALUES[kind] to the source's running total,
kept in a small fixed points table (`points_capacity`, default POINTS = 16; when full,
the entry with the fewest points is replaced, so sources close to a ban stay tracked).
Points are forgiven lazily, one per `decay_ms` without new misbehaviour. Reaching
`threshold` (100) bans the source and clears its points.

Durations: the n-th ban of an id lasts base_ms * 2**(n-1) (10 min, 20, 40, ...), capped
at BAN_MAX_MS (3 days, which keeps every expiry well inside the ticks_diff range); the
`permanent_after`-th ban (default 5th) is permanent. An expired ban stays in its slot as
history (state HISTORY) so the repeat count survives until the slot is needed.
Banning an id that is already banned (e.g. a ban pushed by the gateway) counts as
another repeat; `add_points` on a banned id does nothing and returns True.

A full table frees a slot in this order: a history entry (fewest repeats first, then
the oldest), else the active ban expiring soonest, else — only when every entry is
permanent — the oldest permanent ban. `evicted` counts active bans lost that way.

`is_banned(id, now)` is one dict lookup with no allocation, so the receive path calls it
before any expensive work (tag, signature, decode beyond the header).

Persistence: board clocks restart at 0 on every boot, so the file stores, per id, the
state, the repeat count, the last reason and the *remaining* duration in seconds (not
an absolute time). A ban therefore pauses while the board is off and may, after an
unclean stop, last up to one save interval longer. `maybe_save(now)` writes at most once
per `save_interval_ms` (default a minute, to spare the flash) and only when something
changed; `save()` writes temp-then-rename (persist.py). `load()` accepts the file or
the leftover temporary, and a missing or corrupt file leaves the table empty
(`load_errors` counts corrupt ones, `last_load` says which case happened).

File format v1 (big-endian): b"LCB\\x01", u8 count, count x (id[8], u8 state,
u8 repeats, u8 reason, u32 remaining seconds), sha256(everything before)[:4].

Times are node ticks (loranode.clock: they wrap every 2**30 ms). Call `expire(now)`
(maybe_save does) at least every few days so no expiry stamp ages past half the period;
a ban lasts at most BAN_MAX_MS (3 days) for the same reason. `save` and `load` take the
tick they happen at (0 when not given).
"""

import hashlib
import struct

from loranode.clock import add as ticks_add
from loranode.clock import diff as ticks_diff
from loranode.constants import (
    BAN_BASE_MS,
    BAN_MAX_MS,
    BAN_PERMANENT_AFTER,
    BAN_THRESHOLD,
    BANS,
    ID_LEN,
    POINTS,
    POINTS_DECAY_MS,
    SAVE_INTERVAL_MS,
    new_index,
)
from loranode.persist import TMP_SUFFIX, write_atomic

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

# The board's prices, by lorawire.auth code: bad tag, bad signature, malformed, replay,
# flood, invalid sync, manual, handshake failure (never on a board: no TCP), protocol
# violation. The gateway's are its own ([bans.points]); docs/ARCHITECTURE.md compares.
POINT_VALUES = (20, 50, 25, 10, 25, 50, 100, 0, 25)
_MANUAL = const(6)  # lorawire.auth.MANUAL, not imported: the table needs no codec

HISTORY = const(0)  # expired, kept for the repeat count
ACTIVE = const(1)
PERMANENT = const(2)

_MAGIC = b"LCB\x01"
_ENTRY = ">BBBI"
_ENTRY_LEN = ID_LEN + 7


class BanTable:
    def __init__(
        self,
        capacity=BANS,
        path=None,
        threshold=BAN_THRESHOLD,
        base_ms=BAN_BASE_MS,
        permanent_after=BAN_PERMANENT_AFTER,
        max_ms=BAN_MAX_MS,
        points=None,
        points_capacity=POINTS,
        decay_ms=POINTS_DECAY_MS,
        save_interval_ms=SAVE_INTERVAL_MS,
    ):
        if not 1 <= capacity <= 255 or points_capacity < 1:
            raise ValueError("capacity must be 1..255")
        n = capacity
        self.capacity = n
        self.path = path
        self.threshold = threshold
        self.base_ms = base_ms
        self.permanent_after = permanent_after
        self.max_ms = max_ms if max_ms < BAN_MAX_MS else BAN_MAX_MS
        self.point_values = tuple(points) if points is not None else POINT_VALUES
        self.decay_ms = decay_ms
        self.save_interval_ms = save_interval_ms
        self._index = new_index(n)
        self.ids = [None] * n
        self.state = bytearray(n)
        self.repeats = bytearray(n)
        self.reason = bytearray(n)
        self.expiry = [0] * n
        self.serial = [0] * n
        self._serial = 0
        self.count = 0
        pn = points_capacity
        self.points_capacity = pn
        self._pindex = new_index(pn)
        self.pids = [None] * pn
        self.pts = [0] * pn
        self.pt = [0] * pn
        self.pcount = 0
        self.dirty = False
        self._last_save = None
        self.bans_total = 0
        self.evicted = 0
        self.saves = 0
        self.save_errors = 0
        self.load_errors = 0
        self.last_load = None

    def __len__(self):
        return self.count

    # --- the hot path ------------------------------------------------------------

    def is_banned(self, node_id, now):
        s = self._index.get(node_id, -1)
        if s < 0:
            return False
        st = self.state[s]
        if st == PERMANENT:
            return True
        if st == ACTIVE:
            if ticks_diff(self.expiry[s], now) > 0:
                return True
            self.state[s] = HISTORY
            self.dirty = True
        return False

    # --- points ------------------------------------------------------------------

    def add_points(self, node_id, kind, now):
        """Charge node_id for one misbehaviour of `kind`; True if it is (now) banned."""
        if self.is_banned(node_id, now):
            return True
        p = self._pindex.get(node_id, -1)
        if p < 0:
            p = self._new_points(node_id, now)
        else:
            el = ticks_diff(now, self.pt[p])
            if el > 0 and self.decay_ms > 0:
                lost = el // self.decay_ms
                v = self.pts[p] - lost
                self.pts[p] = v if v > 0 else 0
            self.pt[p] = now
        self.pts[p] += self.point_values[kind]
        if self.pts[p] >= self.threshold:
            self.ban(node_id, now, kind)
            return True
        return False

    def points(self, node_id):
        p = self._pindex.get(node_id, -1)
        return 0 if p < 0 else self.pts[p]

    def _new_points(self, node_id, now):
        if self.pcount < self.points_capacity:
            p = self.pids.index(None)
        else:
            p = 0
            for i in range(1, self.points_capacity):
                if self.pts[i] < self.pts[p] or (
                    self.pts[i] == self.pts[p] and ticks_diff(self.pt[i], self.pt[p]) < 0
                ):
                    p = i
            del self._pindex[self.pids[p]]
            self.pcount -= 1
        self.pids[p] = node_id
        self._pindex[node_id] = p
        self.pts[p] = 0
        self.pt[p] = now
        self.pcount += 1
        return p

    def _drop_points(self, node_id):
        p = self._pindex.get(node_id, -1)
        if p >= 0:
            del self._pindex[node_id]
            self.pids[p] = None
            self.pcount -= 1

    # --- bans --------------------------------------------------------------------

    def duration_ms(self, repeat):
        """Length of the repeat-th ban (1-based); -1 means permanent."""
        if repeat >= self.permanent_after:
            return -1
        d = self.base_ms
        i = 1
        while i < repeat and d < self.max_ms:
            d *= 2
            i += 1
        return d if d < self.max_ms else self.max_ms

    def ban(self, node_id, now, reason=_MANUAL, duration_ms=None, permanent=False):
        """Ban node_id; duration_ms None follows the doubling rule. Returns the slot."""
        if len(node_id) != ID_LEN:
            raise ValueError("node id must be 8 bytes")
        s = self._index.get(node_id, -1)
        if s < 0:
            s = self._alloc(now)
            self.ids[s] = bytes(node_id)
            self._index[self.ids[s]] = s
            self.repeats[s] = 0
            self.count += 1
        rep = self.repeats[s] + 1
        if rep > 255:
            rep = 255
        self.repeats[s] = rep
        if not permanent:
            if duration_ms is None:
                duration_ms = self.duration_ms(rep)
                permanent = duration_ms < 0
            elif duration_ms > self.max_ms:
                duration_ms = self.max_ms
        if permanent:
            self.state[s] = PERMANENT
        else:
            self.state[s] = ACTIVE
            self.expiry[s] = ticks_add(now, duration_ms)
        self.reason[s] = reason
        self._serial += 1
        self.serial[s] = self._serial
        self.bans_total += 1
        self.dirty = True
        self._drop_points(node_id)
        return s

    def _alloc(self, now):
        if self.count < self.capacity:
            return self.ids.index(None)
        self.expire(now)
        best = -1
        for s in range(self.capacity):
            if self.state[s] != HISTORY:
                continue
            if (
                best < 0
                or self.repeats[s] < self.repeats[best]
                or (self.repeats[s] == self.repeats[best] and self.serial[s] < self.serial[best])
            ):
                best = s
        if best < 0:
            for s in range(self.capacity):
                if self.state[s] != ACTIVE:
                    continue
                if best < 0 or ticks_diff(self.expiry[s], self.expiry[best]) < 0:
                    best = s
            if best < 0:
                for s in range(self.capacity):
                    if best < 0 or self.serial[s] < self.serial[best]:
                        best = s
            self.evicted += 1
        self._remove_slot(best)
        return best

    def _remove_slot(self, s):
        del self._index[self.ids[s]]
        self.ids[s] = None
        self.state[s] = HISTORY
        self.count -= 1
        self.dirty = True

    def unban(self, node_id, forget=True):
        """Lift a ban; `forget` also drops the repeat count. True if it was known."""
        s = self._index.get(node_id, -1)
        if s < 0:
            return False
        if forget:
            self._remove_slot(s)
        else:
            self.state[s] = HISTORY
            self.dirty = True
        return True

    def expire(self, now):
        """Turn ended bans into history and forget fully forgiven points; returns how many
        bans ended. (A stale points stamp must not age past half the ticks period.)"""
        if self.decay_ms > 0:
            forgiven = self.threshold * self.decay_ms
            for p in range(self.points_capacity):
                if self.pids[p] is not None and ticks_diff(now, self.pt[p]) >= forgiven:
                    self._drop_points(self.pids[p])
        n = 0
        for s in range(self.capacity):
            if self.state[s] == ACTIVE and ticks_diff(self.expiry[s], now) <= 0:
                self.state[s] = HISTORY
                self.dirty = True
                n += 1
        return n

    def remaining_ms(self, s, now):
        """-1 permanent, 0 not banned, else ms left for slot s."""
        st = self.state[s]
        if st == PERMANENT:
            return -1
        if st == ACTIVE:
            d = ticks_diff(self.expiry[s], now)
            if d > 0:
                return d
        return 0

    def dump(self, now):
        """(id, remaining ms (-1 permanent, 0 expired), repeats, reason code) per slot."""
        for s in range(self.capacity):
            if self.ids[s] is not None:
                yield (self.ids[s], self.remaining_ms(s, now), self.repeats[s], self.reason[s])

    def active_count(self, now):
        n = 0
        for s in range(self.capacity):
            if self.ids[s] is not None and self.remaining_ms(s, now) != 0:
                n += 1
        return n

    # --- persistence ---------------------------------------------------------------

    def to_bytes(self, now):
        out = bytearray(_MAGIC)
        out.append(self.count)
        for s in range(self.capacity):
            ident = self.ids[s]
            if ident is None:
                continue
            st = self.state[s]
            rem = 0
            if st == ACTIVE:
                d = ticks_diff(self.expiry[s], now)
                if d > 0:
                    rem = (d + 999) // 1000
                else:
                    st = HISTORY
            out.extend(ident)
            out.extend(struct.pack(_ENTRY, st, self.repeats[s], self.reason[s], rem))
        out.extend(hashlib.sha256(out).digest()[:4])
        return bytes(out)

    def save(self, path=None, now=None):
        """Write the table atomically now; raises OSError on failure."""
        path = path or self.path
        if not path:
            raise ValueError("no ban file path")
        if now is None:
            now = 0
        write_atomic(path, self.to_bytes(now))
        self.dirty = False
        self._last_save = now
        self.saves += 1

    def maybe_save(self, now):
        """Expire bans and, if changed and the interval has passed, save. True if saved."""
        self.expire(now)
        if not self.dirty or not self.path:
            return False
        if self._last_save is not None and ticks_diff(now, self._last_save) < self.save_interval_ms:
            return False
        try:
            self.save(self.path, now)
        except OSError:
            self.save_errors += 1
            self._last_save = now
            return False
        return True

    def _parse(self, data):
        if data is None or len(data) < len(_MAGIC) + 5 or data[:4] != _MAGIC:
            return None
        n = data[4]
        if len(data) != 5 + n * _ENTRY_LEN + 4:
            return None
        if hashlib.sha256(data[:-4]).digest()[:4] != data[-4:]:
            return None
        out = []
        o = 5
        for _ in range(n):
            nid = bytes(data[o : o + ID_LEN])
            st, rep, why, rem = struct.unpack(_ENTRY, data[o + ID_LEN : o + _ENTRY_LEN])
            if st > PERMANENT or why >= len(POINT_VALUES):
                return None
            out.append((nid, st, rep, why, rem))
            o += _ENTRY_LEN
        return out

    def _clear(self):
        for s in range(self.capacity):
            if self.ids[s] is not None:
                self._remove_slot(s)
        self.dirty = False

    def load(self, path=None, now=None):
        """Replace the table with the saved one. True if a valid file was read."""
        path = path or self.path
        if not path:
            raise ValueError("no ban file path")
        if now is None:
            now = 0
        self._clear()
        entries = None
        found = False
        for p in (path, path + TMP_SUFFIX):
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            found = True
            entries = self._parse(data)
            if entries is not None:
                break
        if entries is None:
            if found:
                self.load_errors += 1
                self.last_load = "corrupt"
            else:
                self.last_load = "missing"
            return False
        for nid, st, rep, why, rem in entries:
            if nid in self._index:
                continue
            s = self._alloc(now)
            self.ids[s] = nid
            self._index[nid] = s
            self.count += 1
            self.repeats[s] = rep
            self.reason[s] = why
            self.state[s] = st
            if st == ACTIVE:
                ms = rem * 1000
                self.expiry[s] = ticks_add(now, ms if ms < self.max_ms else self.max_ms)
            self._serial += 1
            self.serial[s] = self._serial
        self.dirty = False
        self.last_load = "ok"
        return True
