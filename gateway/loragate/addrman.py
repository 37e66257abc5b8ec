"""Address book in the manner of Bitcoin Core's addrman (src/addrman.cpp, addrman_impl.h).

Two fixed-size tables of buckets:

* **new** (``NEW_BUCKET_COUNT`` x ``BUCKET_SIZE``): addresses heard of but never
  connected to. The bucket is a keyed hash of the address group *and* the group of the
  source that told us, and one source group reaches at most
  ``NEW_BUCKETS_PER_SOURCE_GROUP`` buckets, so one source (or one /16) cannot fill the
  book. An address may sit in up to ``NEW_BUCKETS_PER_ADDRESS`` new buckets (refcount);
  each further reference is added with probability 1/2^refcount.
* **tried** (``TRIED_BUCKET_COUNT`` x ``BUCKET_SIZE``): addresses we connected to. The
  bucket is a keyed hash of the address and its group; one group reaches at most
  ``TRIED_BUCKETS_PER_GROUP`` buckets.

The position inside a bucket is a keyed hash of the address, so an address has exactly
one slot per bucket. The hash key is a 16-byte secret kept with the book (persisted),
so an attacker cannot predict the layout. Hash: BLAKE2b keyed, 8-byte digest, with a
domain tag per use (Bitcoin uses SipHash/SHA256d; any keyed PRF does).

Rules kept from Bitcoin Core:

* A new slot already taken is only overwritten if the occupant is "terrible" or has
  other references while the newcomer has none.
* ``good()`` moves to tried with **test-before-evict**: when the tried slot is taken,
  the newcomer goes into a small collision set (at most ``TRIED_COLLISION_SIZE``).
  The connection layer asks ``select_tried_collision()`` for the old occupant, opens a
  feeler to it and reports ``good``/``attempt``; ``resolve_collisions()`` then keeps the
  old entry if it answered within ``REPLACEMENT_S``, and evicts it (back to new)
  otherwise, or when the test window has passed.
* ``select()`` picks tried or new with equal chance (when both are non-empty), then
  random bucket / random position until it hits, accepting an entry with probability
  ``chance_factor * chance(entry)``; ``chance_factor`` grows by 1.2 per miss so it
  always ends. ``chance`` is 0.66^attempts (at most 8) and x0.01 if tried in the last
  10 minutes. Unlike Core, "terrible" entries are skipped outright, and the search gives
  up after ``SELECT_MAX_PROBES`` probes (returns ``None``) so a book full of terrible
  or filtered-out entries cannot spin forever.
* ``is_terrible``: not tried in the last minute and (seen in the future, or not seen
  for ``HORIZON_S``, or never succeeded after ``RETRIES`` attempts, or failed
  ``MAX_FAILURES`` times with no success in ``MIN_FAIL_S``).

Capacity: 1024*64 + 256*64 = 81,920 slots; a stream of 100,000 addresses fills it,
the rest is dropped by the slot rules (as in Core). Selection never scans the whole
book: per-bucket fill counts let it skip empty buckets in O(1).

Persistence keeps one row per address (source group, tried flag, timestamps). On load
each new entry goes back into the single bucket of its recorded source (extra refcounts
are not persisted); tried entries return to their tried slot.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import time
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from loragate.netgroup import IPAddress, NetGroup, ip_group, parse_ip, source_group
from loragate.store import AddrRow, Store

NEW_BUCKET_COUNT_LOG2 = 10
TRIED_BUCKET_COUNT_LOG2 = 8
BUCKET_SIZE_LOG2 = 6
NEW_BUCKET_COUNT = 1 << NEW_BUCKET_COUNT_LOG2  # 1024
TRIED_BUCKET_COUNT = 1 << TRIED_BUCKET_COUNT_LOG2  # 256
BUCKET_SIZE = 1 << BUCKET_SIZE_LOG2  # 64
TRIED_BUCKETS_PER_GROUP = 8
NEW_BUCKETS_PER_SOURCE_GROUP = 64
NEW_BUCKETS_PER_ADDRESS = 8
CAPACITY = (NEW_BUCKET_COUNT + TRIED_BUCKET_COUNT) * BUCKET_SIZE

HORIZON_S = 30 * 86400.0
RETRIES = 3
MAX_FAILURES = 10
MIN_FAIL_S = 7 * 86400.0
REPLACEMENT_S = 4 * 3600.0
TRIED_COLLISION_SIZE = 10
TEST_WINDOW_S = 40 * 60.0
RECENT_TRY_S = 60.0
FUTURE_SLACK_S = 10 * 60.0
CHANCE_RECENT_S = 10 * 60.0
CONNECTED_UPDATE_S = 20 * 60.0
SELECT_MAX_PROBES = 20_000
MAX_DIRTY = 2 * CAPACITY
SECRET_BYTES = 16
MAX_INTERNED_GROUPS = 2 * CAPACITY
SECRET_KV_KEY = "addrman_secret"

KINDS = ("full", "light", "gateway", "mesh")

Addr = tuple[str, int]
Source = str | bytes | NetGroup | None

_EMPTY = -1


class ConsistencyError(RuntimeError):
    """Raised by ``check_consistency`` when internal indexes disagree."""


class AddrRecord(NamedTuple):
    """Read-only snapshot of one entry, as returned by selection."""

    host: str
    port: int
    node_id: bytes | None
    kind: str
    services: int
    last_seen: float
    last_try: float
    last_success: float
    attempts: int
    in_tried: bool

    @property
    def addr(self) -> Addr:
        return (self.host, self.port)


class AddrInfo:
    """One address with its statistics (internal, mutable)."""

    __slots__ = (
        "host",
        "port",
        "node_id",
        "kind",
        "services",
        "last_seen",
        "last_try",
        "last_count_attempt",
        "last_success",
        "attempts",
        "source",
        "group",
        "key",
        "ref_count",
        "in_tried",
        "random_pos",
    )

    def __init__(
        self,
        host: str,
        port: int,
        key: bytes,
        group: NetGroup,
        source: NetGroup,
        kind: str,
        services: int,
        node_id: bytes | None,
        last_seen: float,
    ) -> None:
        self.host = host
        self.port = port
        self.key = key
        self.group = group
        self.source = source
        self.kind = kind
        self.services = services
        self.node_id = node_id
        self.last_seen = last_seen
        self.last_try = 0.0
        self.last_count_attempt = 0.0
        self.last_success = 0.0
        self.attempts = 0
        self.ref_count = 0
        self.in_tried = False
        self.random_pos = -1

    def is_terrible(self, now: float) -> bool:
        """Whether the entry is not worth keeping (Bitcoin Core's IsTerrible)."""
        if self.last_try and now - self.last_try < RECENT_TRY_S:
            return False
        if self.last_seen > now + FUTURE_SLACK_S:
            return True
        if now - self.last_seen > HORIZON_S:
            return True
        if self.last_success == 0 and self.attempts >= RETRIES:
            return True
        return now - self.last_success > MIN_FAIL_S and self.attempts >= MAX_FAILURES

    def chance(self, now: float) -> float:
        """Relative selection chance (Bitcoin Core's GetChance)."""
        c = 1.0
        if now - self.last_try < CHANCE_RECENT_S:
            c *= 0.01
        return c * 0.66 ** min(self.attempts, 8)

    def record(self) -> AddrRecord:
        return AddrRecord(
            self.host,
            self.port,
            self.node_id,
            self.kind,
            self.services,
            self.last_seen,
            self.last_try,
            self.last_success,
            self.attempts,
            self.in_tried,
        )


@dataclass
class Changes:
    """Rows to persist since the last ``take_changes`` (``full``: replace everything)."""

    full: bool
    upserts: list[AddrRow] = field(default_factory=list)
    deletes: list[Addr] = field(default_factory=list)


def addr_key(host: str, port: int) -> bytes:
    """Canonical bytes of an address: packed IP then big-endian port."""
    return parse_ip(host).packed + port.to_bytes(2, "big")


class AddrMan:
    """The address book. Not thread-safe: use it from the event loop only."""

    def __init__(self, secret: bytes | None = None, *, rng: random.Random | None = None) -> None:
        if secret is None:
            secret = os.urandom(SECRET_BYTES)
        if len(secret) != SECRET_BYTES:
            raise ValueError("addrman secret must be 16 bytes")
        self.secret = bytes(secret)
        self._hasher = hashlib.blake2b(key=self.secret, digest_size=8)
        # Not a CSPRNG, but seeded from os.urandom and never exposed to peers.
        self._rng = rng if rng is not None else random.Random(os.urandom(16))
        self._new = array("i", [_EMPTY]) * (NEW_BUCKET_COUNT * BUCKET_SIZE)
        self._tried = array("i", [_EMPTY]) * (TRIED_BUCKET_COUNT * BUCKET_SIZE)
        self._new_fill = array("H", [0]) * NEW_BUCKET_COUNT
        self._tried_fill = array("H", [0]) * TRIED_BUCKET_COUNT
        self._info: dict[int, AddrInfo] = {}
        self._ids: dict[Addr, int] = {}
        self._random: list[int] = []
        self._next_id = 0
        self._n_new = 0
        self._n_tried = 0
        self._kind_new = dict.fromkeys(KINDS, 0)
        self._kind_tried = dict.fromkeys(KINDS, 0)
        self._collisions: dict[int, None] = {}
        self._last_good = 1.0
        self._dirty: set[Addr] = set()
        self._dirty_full = True
        self._groups: dict[NetGroup, NetGroup] = {}

    def rekey(self, secret: bytes) -> None:
        """Take another secret; only while the book is empty (every bucket position
        depends on it)."""
        if self._info:
            raise ValueError("only an empty address book can change its secret")
        if len(secret) != SECRET_BYTES:
            raise ValueError("addrman secret must be 16 bytes")
        self.secret = bytes(secret)
        self._hasher = hashlib.blake2b(key=self.secret, digest_size=8)

    # ---- sizes -------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n_new + self._n_tried

    @property
    def new_count(self) -> int:
        return self._n_new

    @property
    def tried_count(self) -> int:
        return self._n_tried

    @property
    def collision_count(self) -> int:
        return len(self._collisions)

    def __contains__(self, addr: object) -> bool:
        return addr in self._ids

    def get(self, addr: Addr) -> AddrRecord | None:
        info = self._find(addr)
        return None if info is None else info.record()

    def addresses(self) -> list[Addr]:
        """Every address held, in the order they were first added."""
        return list(self._ids)

    # ---- where the keyed hash puts things (Core's tests use FindAddressEntry) -----

    def tried_slot(self, addr: Addr) -> tuple[int, int]:
        """(bucket, position) an address held here takes in the tried table."""
        info = self._known(addr)
        bucket = self._tried_bucket(info)
        return bucket, self._position(False, bucket, info)

    def new_slot(self, addr: Addr, source: str | bytes | None) -> tuple[int, int]:
        """(bucket, position) an address held here takes in the new table when
        `source` told us of it."""
        info = self._known(addr)
        bucket = self._new_bucket(info, source_group(source))
        return bucket, self._position(True, bucket, info)

    def occupied(self, table: str) -> list[tuple[int, Addr]]:
        """(bucket, address) of every occupied slot of the "new" or "tried" table."""
        slots = {"new": self._new, "tried": self._tried}[table]
        info = self._info
        return [
            (i // BUCKET_SIZE, (info[n].host, info[n].port))
            for i, n in enumerate(slots)
            if n != _EMPTY
        ]

    def _known(self, addr: Addr) -> AddrInfo:
        info = self._find(addr)
        if info is None:
            raise KeyError(f"{addr} is not in the book")
        return info

    def _find(self, addr: Addr) -> AddrInfo | None:
        nid = self._ids.get(addr)
        if nid is None:
            try:
                nid = self._ids.get(_canon(addr))
            except ValueError:
                return None
        return None if nid is None else self._info[nid]

    # ---- hashing -----------------------------------------------------------------

    def _hash(self, *parts: bytes) -> int:
        h = self._hasher.copy()
        for p in parts:
            h.update(p)
        return int.from_bytes(h.digest(), "little")

    def _tried_bucket(self, info: AddrInfo) -> int:
        h1 = self._hash(b"T1", info.key) % TRIED_BUCKETS_PER_GROUP
        return self._hash(b"T2", info.group.key(), bytes((h1,))) % TRIED_BUCKET_COUNT

    def _new_bucket(self, info: AddrInfo, src: NetGroup) -> int:
        skey = src.key()
        h1 = self._hash(b"N1", info.group.key(), skey) % NEW_BUCKETS_PER_SOURCE_GROUP
        return self._hash(b"N2", skey, bytes((h1,))) % NEW_BUCKET_COUNT

    def _position(self, new: bool, bucket: int, info: AddrInfo) -> int:
        tag = b"PN" if new else b"PK"
        return self._hash(tag, bucket.to_bytes(2, "big"), info.key) % BUCKET_SIZE

    # ---- internal table operations ------------------------------------------------

    def _create(
        self,
        ip: IPAddress,
        port: int,
        src: NetGroup,
        kind: str,
        services: int,
        node_id: bytes | None,
        seen: float,
    ) -> tuple[int, AddrInfo]:
        host = str(ip)
        nid = self._next_id
        self._next_id += 1
        group = self._intern(ip_group(ip))
        src = self._intern(src)
        info = AddrInfo(
            host,
            port,
            ip.packed + port.to_bytes(2, "big"),
            group,
            src,
            kind,
            services,
            node_id,
            seen,
        )
        info.random_pos = len(self._random)
        self._random.append(nid)
        self._info[nid] = info
        self._ids[(host, port)] = nid
        return nid, info

    def _intern(self, group: NetGroup) -> NetGroup:
        """Share one NetGroup object per group (saves ~100 bytes per entry)."""
        got = self._groups.get(group)
        if got is None:
            if len(self._groups) >= MAX_INTERNED_GROUPS:
                self._groups.clear()
            got = self._groups[group] = group
        return got

    def _delete(self, nid: int) -> None:
        info = self._info[nid]
        assert not info.in_tried and info.ref_count == 0
        last = self._random[-1]
        pos = info.random_pos
        self._random[pos] = last
        self._info[last].random_pos = pos
        self._random.pop()
        del self._ids[(info.host, info.port)]
        del self._info[nid]
        self._mark_dirty(info)

    def _mark_dirty(self, info: AddrInfo) -> None:
        if self._dirty_full:
            return
        self._dirty.add((info.host, info.port))
        if len(self._dirty) > MAX_DIRTY:
            self._dirty.clear()
            self._dirty_full = True

    def _new_slot_put(self, slot: int, nid: int, info: AddrInfo) -> None:
        self._new[slot] = nid
        self._new_fill[slot // BUCKET_SIZE] += 1
        if info.ref_count == 0:
            self._n_new += 1
            self._kind_new[info.kind] += 1
        info.ref_count += 1

    def _clear_new(self, slot: int) -> None:
        """Empty one new slot, deleting its entry when no reference is left."""
        nid = self._new[slot]
        if nid == _EMPTY:
            return
        info = self._info[nid]
        self._new[slot] = _EMPTY
        self._new_fill[slot // BUCKET_SIZE] -= 1
        info.ref_count -= 1
        if info.ref_count == 0:
            self._n_new -= 1
            self._kind_new[info.kind] -= 1
            self._delete(nid)

    def _remove_from_new(self, nid: int, info: AddrInfo) -> None:
        """Drop every new reference of an entry without deleting it."""
        # Most entries sit only in the bucket of their first source: look there first.
        first = self._new_bucket(info, info.source)
        for b in itertools.chain((first,), range(NEW_BUCKET_COUNT)):
            if info.ref_count == 0:
                break
            slot = b * BUCKET_SIZE + self._position(True, b, info)
            if self._new[slot] == nid:
                self._new[slot] = _EMPTY
                self._new_fill[b] -= 1
                info.ref_count -= 1
                if info.ref_count == 0:
                    self._n_new -= 1
                    self._kind_new[info.kind] -= 1

    def _make_tried(self, nid: int, info: AddrInfo) -> None:
        self._remove_from_new(nid, info)
        bucket = self._tried_bucket(info)
        slot = bucket * BUCKET_SIZE + self._position(False, bucket, info)
        old_id = self._tried[slot]
        if old_id != _EMPTY:
            # Evict the occupant back to new, in the bucket of its original source.
            old = self._info[old_id]
            old.in_tried = False
            self._tried[slot] = _EMPTY
            self._tried_fill[bucket] -= 1
            self._n_tried -= 1
            self._kind_tried[old.kind] -= 1
            nb = self._new_bucket(old, old.source)
            nslot = nb * BUCKET_SIZE + self._position(True, nb, old)
            self._clear_new(nslot)
            self._new_slot_put(nslot, old_id, old)
            self._mark_dirty(old)
        self._tried[slot] = nid
        self._tried_fill[bucket] += 1
        self._n_tried += 1
        self._kind_tried[info.kind] += 1
        info.in_tried = True
        self._mark_dirty(info)

    # ---- public API --------------------------------------------------------------

    def add(
        self,
        addr: Addr,
        source: Source = None,
        *,
        kind: str = "full",
        services: int = 0,
        node_id: bytes | None = None,
        seen: float | None = None,
        time_penalty: float = 0.0,
        now: float | None = None,
    ) -> bool:
        """Add or refresh an address heard from ``source``; True if it is a new entry.

        ``seen`` is the address's advertised last-seen time (default ``now``), lowered by
        ``time_penalty`` as Core does for relayed addresses. Raises ValueError for a host
        that is not an IP literal, a bad port or an unknown kind.
        """
        if now is None:
            now = time.time()
        ip, port = _canon_ip(addr)
        host = str(ip)
        if kind not in self._kind_new:
            raise ValueError(f"unknown peer kind {kind!r}")
        src = source_group(source)
        seen = now if seen is None else seen
        nid = self._ids.get((host, port))
        is_new = nid is None
        if nid is not None:
            info = self._info[nid]
            online = now - seen < 86400.0
            interval = 3600.0 if online else 86400.0
            if info.last_seen < seen - interval - time_penalty:
                info.last_seen = max(0.0, seen - time_penalty)
                self._mark_dirty(info)
            if services & ~info.services:
                info.services |= services
                self._mark_dirty(info)
            if node_id is not None and info.node_id is None:
                info.node_id = node_id
                self._mark_dirty(info)
            if seen <= info.last_seen or info.in_tried:
                return False
            if info.ref_count >= NEW_BUCKETS_PER_ADDRESS:
                return False
            if info.ref_count > 0 and self._rng.getrandbits(info.ref_count) != 0:
                return False
        else:
            nid, info = self._create(
                ip, port, src, kind, services, node_id, max(0.0, seen - time_penalty)
            )
        bucket = self._new_bucket(info, src)
        slot = bucket * BUCKET_SIZE + self._position(True, bucket, info)
        occupant = self._new[slot]
        if occupant != nid:
            insert = occupant == _EMPTY
            if not insert:
                old = self._info[occupant]
                insert = old.is_terrible(now) or (old.ref_count > 1 and info.ref_count == 0)
            if insert:
                self._clear_new(slot)
                self._new_slot_put(slot, nid, info)
                self._mark_dirty(info)
            elif info.ref_count == 0:
                self._delete(nid)
                return False
        return is_new

    def good(self, addr: Addr, now: float | None = None, *, test_before_evict: bool = True) -> bool:
        """Mark a successful connection; True if the entry moved into tried."""
        if now is None:
            now = time.time()
        info = self._find(addr)
        if info is None:
            return False
        nid = self._ids[(info.host, info.port)]
        self._last_good = now
        info.last_success = now
        info.last_try = now
        info.attempts = 0
        self._mark_dirty(info)
        if info.in_tried:
            return False
        bucket = self._tried_bucket(info)
        slot = bucket * BUCKET_SIZE + self._position(False, bucket, info)
        if test_before_evict and self._tried[slot] != _EMPTY:
            if len(self._collisions) < TRIED_COLLISION_SIZE:
                self._collisions[nid] = None
            return False
        self._make_tried(nid, info)
        return True

    def attempt(self, addr: Addr, now: float | None = None, *, count_failure: bool = True) -> None:
        """Record a connection attempt (counted once per successful-connection epoch)."""
        if now is None:
            now = time.time()
        info = self._find(addr)
        if info is None:
            return
        info.last_try = now
        if count_failure and info.last_count_attempt < self._last_good:
            info.last_count_attempt = now
            info.attempts += 1
        self._mark_dirty(info)

    def connected(self, addr: Addr, now: float | None = None) -> None:
        """A live session with the address: refresh last-seen every 20 minutes at most."""
        if now is None:
            now = time.time()
        info = self._find(addr)
        if info is not None and now - info.last_seen > CONNECTED_UPDATE_S:
            info.last_seen = now
            self._mark_dirty(info)

    def set_peer(
        self,
        addr: Addr,
        *,
        node_id: bytes | None = None,
        kind: str | None = None,
        services: int | None = None,
    ) -> None:
        """Store what the handshake told us about an address."""
        info = self._find(addr)
        if info is None:
            return
        if kind is not None and kind != info.kind:
            if kind not in self._kind_new:
                raise ValueError(f"unknown peer kind {kind!r}")
            counts = self._kind_tried if info.in_tried else self._kind_new
            if info.in_tried or info.ref_count:
                counts[info.kind] -= 1
                counts[kind] += 1
            info.kind = kind
        if node_id is not None:
            info.node_id = node_id
        if services is not None:
            info.services = services
        self._mark_dirty(info)

    def remove(self, addr: Addr) -> bool:
        """Forget an address entirely (e.g. it was banned)."""
        info = self._find(addr)
        if info is None:
            return False
        nid = self._ids[(info.host, info.port)]
        if info.in_tried:
            bucket = self._tried_bucket(info)
            slot = bucket * BUCKET_SIZE + self._position(False, bucket, info)
            self._tried[slot] = _EMPTY
            self._tried_fill[bucket] -= 1
            self._n_tried -= 1
            self._kind_tried[info.kind] -= 1
            info.in_tried = False
        else:
            self._remove_from_new(nid, info)
        self._collisions.pop(nid, None)
        self._delete(nid)
        return True

    def is_terrible(self, addr: Addr, now: float | None = None) -> bool:
        info = self._find(addr)
        return info is not None and info.is_terrible(time.time() if now is None else now)

    def select(
        self,
        new_only: bool = False,
        now: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> AddrRecord | None:
        """Pick an address to connect to, or None (empty book, or nothing acceptable found)."""
        if now is None:
            now = time.time()
        want: frozenset[str] | None = None
        if kinds is None:
            n_new, n_tried = self._n_new, self._n_tried
        else:
            want = frozenset(kinds)
            n_new = sum(self._kind_new.get(k, 0) for k in want)
            n_tried = sum(self._kind_tried.get(k, 0) for k in want)
        if n_new == 0 and (new_only or n_tried == 0):
            return None
        rng = self._rng
        if not new_only and n_tried > 0 and (n_new == 0 or rng.getrandbits(1)):
            table, fill, bucket_bits = self._tried, self._tried_fill, TRIED_BUCKET_COUNT_LOG2
        else:
            table, fill, bucket_bits = self._new, self._new_fill, NEW_BUCKET_COUNT_LOG2
        chance_factor = 1.0
        info_map = self._info
        rand = rng.random
        bits = rng.getrandbits  # bucket counts and sizes are powers of two
        mask = BUCKET_SIZE - 1
        for _ in range(SELECT_MAX_PROBES):
            bucket = bits(bucket_bits)
            if fill[bucket] == 0:
                continue
            base = bucket * BUCKET_SIZE
            start = bits(BUCKET_SIZE_LOG2)
            nid = table[base + start]
            i = 1
            while nid == _EMPTY:
                nid = table[base + ((start + i) & mask)]
                i += 1
            info = info_map[nid]
            if want is not None and info.kind not in want:
                continue
            if info.is_terrible(now):
                continue
            if rand() < chance_factor * info.chance(now):
                return info.record()
            chance_factor *= 1.2
        return None

    def sample(
        self, max_count: int, max_pct: int = 23, now: float | None = None
    ) -> list[AddrRecord]:
        """Random non-terrible addresses for a peer-exchange answer (Core's GetAddr)."""
        if now is None:
            now = time.time()
        n = len(self._random)
        limit = min(max_count, max_pct * n // 100) if max_pct else max_count
        out: list[AddrRecord] = []
        rnd = self._random
        for i in range(n):
            if len(out) >= limit:
                break
            j = i + self._rng.randrange(n - i)
            rnd[i], rnd[j] = rnd[j], rnd[i]
            self._info[rnd[i]].random_pos = i
            self._info[rnd[j]].random_pos = j
            info = self._info[rnd[i]]
            if not info.is_terrible(now):
                out.append(info.record())
        return out

    # ---- test-before-evict ---------------------------------------------------------

    def resolve_collisions(self, now: float | None = None) -> None:
        """Settle pending tried collisions from the feeler results recorded so far."""
        if now is None:
            now = time.time()
        for nid in list(self._collisions):
            erase = False
            info_new = self._info.get(nid)
            if info_new is None or info_new.in_tried:
                erase = True
            else:
                bucket = self._tried_bucket(info_new)
                slot = bucket * BUCKET_SIZE + self._position(False, bucket, info_new)
                old_id = self._tried[slot]
                if old_id == _EMPTY:
                    self.good((info_new.host, info_new.port), now, test_before_evict=False)
                    erase = True
                else:
                    old = self._info[old_id]
                    if now - old.last_success < REPLACEMENT_S:
                        erase = True  # the old entry answered recently: keep it
                    elif now - old.last_try < REPLACEMENT_S:
                        if now - old.last_try > RECENT_TRY_S:
                            # Tried recently and failed: evict it.
                            self._good_force(info_new, now)
                            erase = True
                    elif now - info_new.last_success > TEST_WINDOW_S:
                        # No feeler result in time: give up testing and evict.
                        self._good_force(info_new, now)
                        erase = True
            if erase:
                self._collisions.pop(nid, None)

    def _good_force(self, info: AddrInfo, now: float) -> None:
        self.good((info.host, info.port), now, test_before_evict=False)

    def select_tried_collision(self) -> AddrRecord | None:
        """The tried occupant a pending newcomer collides with: open a feeler to it."""
        if not self._collisions:
            return None
        ids = list(self._collisions)
        nid = ids[self._rng.randrange(len(ids))]
        info_new = self._info.get(nid)
        if info_new is None:
            del self._collisions[nid]
            return None
        bucket = self._tried_bucket(info_new)
        old_id = self._tried[bucket * BUCKET_SIZE + self._position(False, bucket, info_new)]
        if old_id == _EMPTY:
            return None
        return self._info[old_id].record()

    # ---- persistence -------------------------------------------------------------

    def _row(self, info: AddrInfo) -> AddrRow:
        return AddrRow(
            info.host,
            info.port,
            info.node_id,
            info.kind,
            info.services,
            info.last_seen,
            info.last_try,
            info.last_success,
            info.attempts,
            info.source.family,
            info.source.prefix,
            info.in_tried,
        )

    def rows(self) -> Iterator[AddrRow]:
        """Every entry as a persistence row."""
        for info in self._info.values():
            yield self._row(info)

    def take_changes(self) -> Changes:
        """Rows changed since the last call (everything after load or overflow)."""
        if self._dirty_full:
            self._dirty_full = False
            self._dirty.clear()
            return Changes(True, list(self.rows()))
        changes = Changes(False)
        for addr in self._dirty:
            nid = self._ids.get(addr)
            if nid is None:
                changes.deletes.append(addr)
            else:
                changes.upserts.append(self._row(self._info[nid]))
        self._dirty.clear()
        return changes

    def load_rows(self, rows: Iterable[AddrRow]) -> int:
        """Insert persisted rows (into an empty book); returns entries placed."""
        placed = 0
        for row in rows:
            try:
                ip, port = _canon_ip((row.host, row.port))
            except ValueError:
                continue
            if (str(ip), port) in self._ids or row.kind not in self._kind_new:
                continue
            src = NetGroup(row.source_family, row.source_prefix)
            nid, info = self._create(
                ip, port, src, row.kind, row.services, row.node_id, row.last_seen
            )
            info.last_try = row.last_try
            info.last_success = row.last_success
            info.attempts = row.attempts
            if row.in_tried:
                bucket = self._tried_bucket(info)
                slot = bucket * BUCKET_SIZE + self._position(False, bucket, info)
                if self._tried[slot] == _EMPTY:
                    self._tried[slot] = nid
                    self._tried_fill[bucket] += 1
                    self._n_tried += 1
                    self._kind_tried[info.kind] += 1
                    info.in_tried = True
                    placed += 1
                    continue
            bucket = self._new_bucket(info, src)
            slot = bucket * BUCKET_SIZE + self._position(True, bucket, info)
            if self._new[slot] == _EMPTY:
                self._new_slot_put(slot, nid, info)
                placed += 1
            else:
                self._delete(nid)
        self._dirty_full = True
        return placed

    # ---- invariants ----------------------------------------------------------------

    def check_consistency(self) -> None:
        """Verify every internal index (Core's CheckAddrman); raise ConsistencyError."""

        def fail(msg: str) -> None:
            raise ConsistencyError(msg)

        if not (len(self._info) == len(self._ids) == len(self._random)):
            fail("index sizes differ")
        if len(self._info) != self._n_new + self._n_tried:
            fail("entry count != new + tried")
        if self._n_new > NEW_BUCKET_COUNT * BUCKET_SIZE:
            fail("new table over capacity")
        if self._n_tried > TRIED_BUCKET_COUNT * BUCKET_SIZE:
            fail("tried table over capacity")
        n_tried = 0
        n_new = 0
        kind_new = dict.fromkeys(KINDS, 0)
        kind_tried = dict.fromkeys(KINDS, 0)
        for nid, info in self._info.items():
            if self._ids.get((info.host, info.port)) != nid:
                fail("address map mismatch")
            if self._random[info.random_pos] != nid:
                fail("random position mismatch")
            if info.in_tried:
                if info.ref_count:
                    fail("tried entry has new references")
                n_tried += 1
                kind_tried[info.kind] += 1
            else:
                if not 1 <= info.ref_count <= NEW_BUCKETS_PER_ADDRESS:
                    fail(f"bad refcount {info.ref_count}")
                n_new += 1
                kind_new[info.kind] += 1
        if n_tried != self._n_tried or n_new != self._n_new:
            fail("table counters wrong")
        if kind_new != self._kind_new or kind_tried != self._kind_tried:
            fail("kind counters wrong")
        seen_tried = 0
        for bucket in range(TRIED_BUCKET_COUNT):
            fill = 0
            for pos in range(BUCKET_SIZE):
                nid = self._tried[bucket * BUCKET_SIZE + pos]
                if nid == _EMPTY:
                    continue
                fill += 1
                occ = self._info.get(nid)
                if occ is None or not occ.in_tried:
                    fail("tried slot holds a non-tried entry")
                    return
                if self._tried_bucket(occ) != bucket or self._position(False, bucket, occ) != pos:
                    fail("tried entry in the wrong slot")
            if fill != self._tried_fill[bucket]:
                fail("tried bucket fill wrong")
            seen_tried += fill
        if seen_tried != self._n_tried:
            fail("tried slots != tried count")
        refs: dict[int, int] = {}
        for bucket in range(NEW_BUCKET_COUNT):
            fill = 0
            for pos in range(BUCKET_SIZE):
                nid = self._new[bucket * BUCKET_SIZE + pos]
                if nid == _EMPTY:
                    continue
                fill += 1
                occ = self._info.get(nid)
                if occ is None or occ.in_tried:
                    fail("new slot holds a missing or tried entry")
                    return
                if self._position(True, bucket, occ) != pos:
                    fail("new entry in the wrong slot")
                refs[nid] = refs.get(nid, 0) + 1
            if fill != self._new_fill[bucket]:
                fail("new bucket fill wrong")
        for nid, info in self._info.items():
            if not info.in_tried and refs.get(nid, 0) != info.ref_count:
                fail("refcount does not match new slots")
        if len(self._collisions) > TRIED_COLLISION_SIZE:
            fail("collision set over capacity")


def _canon_ip(addr: Addr) -> tuple[IPAddress, int]:
    host, port = addr
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(f"bad port {port!r}")
    return parse_ip(host), port


def _canon(addr: Addr) -> Addr:
    ip, port = _canon_ip(addr)
    return str(ip), port


def load_addrman(
    store: Store, *, rng: random.Random | None = None, into: AddrMan | None = None
) -> AddrMan:
    """Build the book from the store (creating and saving its secret on first use);
    `into`: fill this empty book instead (it takes the store's secret)."""
    secret = store.get_kv(SECRET_KV_KEY)
    if secret is None or len(secret) != SECRET_BYTES:
        secret = os.urandom(SECRET_BYTES)
        store.set_kv(SECRET_KV_KEY, secret)
    if into is None:
        book = AddrMan(secret, rng=rng)
    else:
        book = into
        book.rekey(secret)
    rows = list(store.load_addresses())
    if book.load_rows(rows) == len(rows):
        book.take_changes()  # what was just loaded is already stored
    # else: some rows did not fit; the next save rewrites the table in full.
    return book


def save_addrman(book: AddrMan, store: Store, *, flush: bool = True) -> int:
    """Queue the book's changes in the store (batched); returns the rows written."""
    changes = book.take_changes()
    store.write_address_changes(changes.full, changes.upserts, changes.deletes)
    if flush:
        store.flush()
    return len(changes.upserts) + len(changes.deletes)
