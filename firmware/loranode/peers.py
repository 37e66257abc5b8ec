"""Fixed-capacity peer table in parallel preallocated arrays.

A slot holds one peer: id (8 bytes), kind, first/last heard (ticks
ms), hop count and next hop id, RSSI/SNR moving averages (Q4), ping RTT average (ms),
decayed success / failure / valid / invalid counters (Q8, see score.py), score and
flags. `find(id)` goes through a dict index bounded by the capacity (preallocated, see
constants.new_index); ids must be `bytes`.

Eviction rule (applied only when the table is full and an unknown id is heard):

1. Every entry has a protection class:
   4 pinned (flag PROTECTED, set by configuration),
   3 gateway (kind gateway or flag GATEWAY),
   2 current next hop (flag NEXT_HOP, set by routing),
   1 recently heard direct neighbour (hop count 0, heard within `recent_ms`),
   0 none.
   An entry on PROBATION has class 0 unless it is pinned: a newcomer cannot buy
   protection by claiming to be a gateway.
2. Entries are ranked by (class, probation first, effective score, least recently
   heard first); the effective score is the stored score decayed by the time since the
   peer was last heard, so silent peers sink. The victim is the lowest-ranked entry.
   Because the class is the first key, a protected entry is never chosen while an
   unprotected one exists; and because the ranking covers every entry, at least
   `min_evictable` (2) entries are always evictable: the unprotected ones, topped up
   with the weakest protected ones when fewer than 2 are unprotected
   (`evictable_slots`). A table full of neighbours therefore still rotates.
3. A newcomer is inserted on PROBATION unless it is `verified` (its signed announcement
   checked). A verified newcomer takes the victim's slot. A newcomer on probation takes
   the victim's slot only if the victim is itself on probation, or if the newcomer's
   starting score (neutral history, its own RSSI/SNR) is higher than the victim's
   effective score; otherwise it is rejected (`rejected` counts them) and the table is
   unchanged. A flood of single-heard identities thus churns only the probation band.
4. Probation ends when the peer is heard again at least `probation_gap_ms` after it was
   first heard, or when `verify(slot)` is called.

Record store: a slot may hold the peer's signed record (`rec[s]`, its wire bytes, with
`rec_seq[s]` and `rec_t[s]`, when it was learned), stored by `store_record` once the
signature checked out; `has_record(s)` says whether it does. A record never outlives its
slot: whenever a slot is cleared (eviction, removal) its record goes with it and the
`on_clear(slot)` hook, if set, is called, so per-slot state kept elsewhere (peer
exchange) is reset in one place.

Timestamps are node ticks (loranode.clock: wrapping every 2**30 ms, compared with
`diff`). Call `age_out(now)` now and then (the node does it hourly; at most every 5 days
is required) so stamps older than MAX_AGE_MS are clamped before the period could make
them look recent.
"""

from array import array

from loranode.clock import add as ticks_add
from loranode.clock import diff as ticks_diff
from loranode.constants import (
    MAX_AGE_MS,
    MIN_EVICTABLE,
    PEERS,
    PROBATION_GAP_MS,
    RECENT_MS,
    new_index,
)
from loranode.score import COUNT_CAP, RSSI_NONE, RTT_NONE, SNR_NONE, Q, Scorer, ewma

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

KIND_FULL = const(0)
KIND_LIGHT = const(1)
KIND_GATEWAY = const(2)
KIND_MESH = const(3)
KIND_UNKNOWN = const(255)  # not announced yet

PROTECTED = const(0x01)
GATEWAY = const(0x02)
NEXT_HOP = const(0x04)
PROBATION = const(0x08)
VERIFIED = const(0x10)

CLASS_NONE = const(0)
CLASS_RECENT = const(1)
CLASS_NEXT_HOP = const(2)
CLASS_GATEWAY = const(3)
CLASS_PINNED = const(4)

_MAX_HOPS = 255
_RTT_MAX = 600000


def _filled(typecode, n, value):
    return array(typecode, [value] * n)


def _q4(x):
    # dBm / dB to Q4, clamped to what an int16 holds
    q = int(x * 16)
    if q < -32000:
        return -32000
    return q if q < 32000 else 32000


class PeerTable:
    def __init__(
        self,
        capacity=PEERS,
        scorer=None,
        recent_ms=RECENT_MS,
        probation_gap_ms=PROBATION_GAP_MS,
        min_evictable=MIN_EVICTABLE,
    ):
        if capacity < 1 or min_evictable < 1:
            raise ValueError("capacity and min_evictable must be >= 1")
        n = capacity
        self.capacity = n
        self.scorer = scorer if scorer is not None else Scorer()
        self.recent_ms = recent_ms
        self.probation_gap_ms = probation_gap_ms
        self.min_evictable = min_evictable
        self._index = new_index(n)
        self.ids = [None] * n
        self.kind = bytearray(n)
        self.flags = bytearray(n)
        self.hops = bytearray(n)
        self.next_hop = [None] * n
        self.first_heard = [0] * n
        self.last_heard = [0] * n
        self.t_decay = [0] * n
        # small fields in typed arrays: 2 or 4 bytes per entry instead of a word
        self.rssi = _filled("h", n, RSSI_NONE)
        self.snr = _filled("h", n, SNR_NONE)
        self.rtt = _filled("i", n, RTT_NONE)
        self.succ = _filled("H", n, 0)
        self.fail = _filled("H", n, 0)
        self.valid = _filled("H", n, 0)
        self.invalid = _filled("H", n, 0)
        self.score = _filled("H", n, 0)
        self.rec = [None] * n  # signed record bytes (answers PEX), or None
        self.rec_seq = [0] * n
        self.rec_t = [0] * n  # tick when the record was learned
        self.on_clear = None
        self.count = 0
        self.evictions = 0
        self.rejected = 0

    def __len__(self):
        return self.count

    def find(self, node_id):
        """Slot of node_id, or -1."""
        return self._index.get(node_id, -1)

    # --- admission ---------------------------------------------------------------

    def heard(
        self,
        node_id,
        now,
        rssi=None,
        snr=None,
        hops=0,
        next_hop=None,
        kind=None,
        verified=False,
    ):
        """Record a valid frame from node_id; returns its slot, or -1 if not admitted.

        rssi (dBm) and snr (dB) feed the link averages only for direct receptions
        (hops == 0): for relayed frames they describe the relay's link, not the peer's.
        """
        s = self._index.get(node_id, -1)
        if hops > _MAX_HOPS:
            hops = _MAX_HOPS
        if s < 0:
            s = self._admit(node_id, now, rssi, snr, hops, verified)
            if s < 0:
                return -1
            self.hops[s] = hops
            self.next_hop[s] = next_hop
        else:
            self._decay(s, now)
            v = self.valid[s] + Q
            self.valid[s] = v if v < COUNT_CAP else COUNT_CAP
            f = self.flags[s]
            if f & PROBATION and ticks_diff(now, self.first_heard[s]) >= self.probation_gap_ms:
                self.flags[s] = f & ~PROBATION
            if (
                hops <= self.hops[s]
                or next_hop == self.next_hop[s]
                or ticks_diff(now, self.last_heard[s]) >= self.recent_ms
            ):
                self.hops[s] = hops
                self.next_hop[s] = next_hop
            if hops == 0:
                if rssi is not None:
                    r = self.rssi[s]
                    q = _q4(rssi)
                    self.rssi[s] = q if r == RSSI_NONE else ewma(r, q)
                if snr is not None:
                    r = self.snr[s]
                    q = _q4(snr)
                    self.snr[s] = q if r == SNR_NONE else ewma(r, q)
        self.last_heard[s] = now
        if kind is not None:
            self.kind[s] = kind
            if kind == KIND_GATEWAY:
                self.flags[s] |= GATEWAY
        if verified:
            self.flags[s] = (self.flags[s] | VERIFIED) & ~PROBATION
        self._rescore(s)
        return s

    upsert = heard

    def _admit(self, node_id, now, rssi, snr, hops, verified):
        rq = _q4(rssi) if (rssi is not None and hops == 0) else RSSI_NONE
        sq = _q4(snr) if (snr is not None and hops == 0) else SNR_NONE
        if self.count < self.capacity:
            s = self.ids.index(None)
        else:
            s = self.victim(now)
            if not verified and not self.flags[s] & PROBATION:
                mine = self.scorer.compute(0, 0, Q, 0, rq, sq, RTT_NONE)
                if mine <= self.effective_score(s, now):
                    self.rejected += 1
                    return -1
            self._clear(s)
            self.evictions += 1
        self.ids[s] = node_id
        self._index[node_id] = s
        self.count += 1
        self.kind[s] = KIND_UNKNOWN
        self.flags[s] = PROBATION
        self.first_heard[s] = now
        self.t_decay[s] = now
        self.rssi[s] = rq
        self.snr[s] = sq
        self.rtt[s] = RTT_NONE
        self.succ[s] = 0
        self.fail[s] = 0
        self.valid[s] = Q
        self.invalid[s] = 0
        return s

    def _clear(self, s):
        del self._index[self.ids[s]]
        self.ids[s] = None
        self.next_hop[s] = None
        self.rec[s] = None
        self.flags[s] = 0
        self.count -= 1
        if self.on_clear is not None:
            self.on_clear(s)

    # --- records -------------------------------------------------------------------

    def has_record(self, s):
        return s >= 0 and self.rec[s] is not None

    def store_record(self, s, encoded, seq, now):
        """Keep the verified record of slot s (replacing an older one)."""
        self.rec[s] = encoded
        self.rec_seq[s] = seq
        self.rec_t[s] = now

    def remove(self, node_id):
        s = self._index.get(node_id, -1)
        if s < 0:
            return False
        self._clear(s)
        return True

    # --- protection and eviction ---------------------------------------------------

    def age(self, s, now):
        """ms since slot s was last heard (never negative)."""
        d = ticks_diff(now, self.last_heard[s])
        return d if d > 0 else 0

    def protection_class(self, s, now):
        f = self.flags[s]
        if f & PROTECTED:
            return CLASS_PINNED
        if f & PROBATION:
            return CLASS_NONE
        if f & GATEWAY or self.kind[s] == KIND_GATEWAY:
            return CLASS_GATEWAY
        if f & NEXT_HOP:
            return CLASS_NEXT_HOP
        if self.hops[s] == 0 and self.age(s, now) < self.recent_ms:
            return CLASS_RECENT
        return CLASS_NONE

    def effective_score(self, s, now):
        sc = self.scorer
        return sc.decay(self.score[s], sc.steps(self.age(s, now)))

    def _rank(self, s, now):
        # (class, probation first, effective score) packed in one small int
        r = self.protection_class(s, now) << 12
        if not self.flags[s] & PROBATION:
            r |= 1 << 11
        return r | self.effective_score(s, now)

    def victim(self, now):
        """Slot the eviction rule would free next, or -1 if the table is empty."""
        best = -1
        best_rank = 0
        best_age = 0
        ids = self.ids
        for s in range(self.capacity):
            if ids[s] is None:
                continue
            r = self._rank(s, now)
            a = self.age(s, now)
            if best < 0 or r < best_rank or (r == best_rank and a > best_age):
                best = s
                best_rank = r
                best_age = a
        return best

    def evictable_slots(self, now):
        """Slots eviction may pick: the unprotected ones, topped up with the weakest
        protected ones to at least min_evictable (status and tests; allocates)."""
        occupied = [s for s in range(self.capacity) if self.ids[s] is not None]
        out = [s for s in occupied if self.protection_class(s, now) == CLASS_NONE]
        if len(out) < self.min_evictable:
            rest = [s for s in occupied if s not in out]
            rest.sort(key=lambda s: (self._rank(s, now), -self.age(s, now)))
            out.extend(rest[: self.min_evictable - len(out)])
        return out

    # --- events --------------------------------------------------------------------

    def _decay(self, s, now):
        sc = self.scorer
        st = sc.steps(ticks_diff(now, self.t_decay[s]))
        if st:
            self.succ[s] = sc.decay(self.succ[s], st)
            self.fail[s] = sc.decay(self.fail[s], st)
            self.valid[s] = sc.decay(self.valid[s], st)
            self.invalid[s] = sc.decay(self.invalid[s], st)
            if st >= 384:  # 24 half-lives: everything is 0 anyway
                self.t_decay[s] = now
            else:
                self.t_decay[s] = ticks_add(self.t_decay[s], st * sc.step_ms)

    def _rescore(self, s):
        self.score[s] = self.scorer.compute(
            self.succ[s],
            self.fail[s],
            self.valid[s],
            self.invalid[s],
            self.rssi[s],
            self.snr[s],
            self.rtt[s],
        )

    def _bump(self, arr, s):
        v = arr[s] + Q
        arr[s] = v if v < COUNT_CAP else COUNT_CAP

    def record_ping(self, s, rtt_ms, now):
        """A ping to slot s was answered after rtt_ms."""
        if self.ids[s] is None:
            return
        self._decay(s, now)
        self._bump(self.succ, s)
        r = self.rtt[s]
        rtt_ms = int(rtt_ms)
        if rtt_ms < 0:
            rtt_ms = 0
        elif rtt_ms > _RTT_MAX:
            rtt_ms = _RTT_MAX
        self.rtt[s] = rtt_ms if r == RTT_NONE else ewma(r, rtt_ms)
        self._rescore(s)

    def record_ack(self, s, now):
        """A unicast to slot s was acknowledged."""
        if self.ids[s] is None:
            return
        self._decay(s, now)
        self._bump(self.succ, s)
        self._rescore(s)

    def record_failure(self, s, now):
        """A ping or unicast to slot s went unanswered."""
        if self.ids[s] is None:
            return
        self._decay(s, now)
        self._bump(self.fail, s)
        self._rescore(s)

    def record_valid(self, s, now):
        if self.ids[s] is None:
            return
        self._decay(s, now)
        self._bump(self.valid, s)
        self._rescore(s)

    def record_invalid(self, s, now):
        """The application or codec reported an invalid message from slot s."""
        if self.ids[s] is None:
            return
        self._decay(s, now)
        self._bump(self.invalid, s)
        self._rescore(s)

    # --- flags, keys, routes -----------------------------------------------------

    def set_flag(self, s, flag):
        if self.ids[s] is not None:
            self.flags[s] |= flag

    def clear_flag(self, s, flag):
        self.flags[s] &= ~flag

    def verify(self, s, kind=None):
        """The peer's signed record checked out: end probation (its key is in the record,
        which `store_record` keeps)."""
        if self.ids[s] is None:
            return
        self.flags[s] = (self.flags[s] | VERIFIED) & ~PROBATION
        if kind is not None:
            self.kind[s] = kind
            if kind == KIND_GATEWAY:
                self.flags[s] |= GATEWAY

    def age_out(self, now):
        """Clamp stamps older than MAX_AGE_MS (wrap-around safety); O(capacity)."""
        old = ticks_add(now, -MAX_AGE_MS)
        for s in range(self.capacity):
            if self.ids[s] is None:
                continue
            for arr in (self.last_heard, self.first_heard, self.t_decay):
                d = ticks_diff(now, arr[s])
                if d > MAX_AGE_MS or d < -60000:
                    arr[s] = old

    # --- iteration ---------------------------------------------------------------

    def slots(self):
        """Occupied slots, in slot order."""
        for s in range(self.capacity):
            if self.ids[s] is not None:
                yield s

    def entry(self, s, now):
        """(id, kind, flags, score, effective score, rssi dBm or None, snr dB or None,
        rtt ms or None, hops, next hop, age ms, successes, failures, invalid) for dumps."""
        r = self.rssi[s]
        n = self.snr[s]
        t = self.rtt[s]
        return (
            self.ids[s],
            self.kind[s],
            self.flags[s],
            self.score[s],
            self.effective_score(s, now),
            None if r == RSSI_NONE else r // 16,
            None if n == SNR_NONE else n // 16,
            None if t == RTT_NONE else t,
            self.hops[s],
            self.next_hop[s],
            self.age(s, now),
            self.succ[s] // Q,
            self.fail[s] // Q,
            self.invalid[s] // Q,
        )

    def dump(self, now):
        for s in self.slots():
            yield self.entry(s, now)
