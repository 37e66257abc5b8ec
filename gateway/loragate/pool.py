"""Connection policy: which address to dial next, when to retry, whom to evict.

Pure decisions over snapshots (no I/O), so the manager stays small and every rule is
testable on its own.

* Outbound: fill `outbound_target` from the address book, at most
  `max_outbound_per_group` per address group (an attacker who owns one /16 gets at most
  that many of our outbound slots, however many addresses it announces), preferred peer
  kinds first, never a banned or backing-off address, never one already connected.
* Backoff: per address, exponential (`base_s` doubling up to `max_s`) with +/- `jitter`
  so that many gateways losing one peer do not redial in lockstep; reset by a good
  session.
* Inbound eviction, as Bitcoin Core's SelectNodeToEvict: when the inbound cap is reached,
  protect the peers an attacker finds hardest to imitate -- 4 by keyed address group
  (an attacker cannot choose which group hash wins), the 8 with the lowest ping, the 4
  that most recently relayed transactions and the 4 that most recently relayed blocks,
  then half of the rest by longest uptime. Among the unprotected, evict the newest peer
  of the address group with the most connections. Manual peers are never evicted.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from loragate.addrman import AddrMan, AddrRecord
from loragate.netgroup import NetGroup, group_of

Addr = tuple[str, int]

BACKOFF_ENTRIES = 10_000
PICK_TRIES = 64
PROTECT_BY_GROUP = 4
PROTECT_BY_PING = 8
PROTECT_BY_TX = 4
PROTECT_BY_BLOCK = 4


class Backoff:
    """Exponential backoff with jitter per address, in a bounded LRU table."""

    def __init__(
        self,
        base_s: float = 2.0,
        max_s: float = 600.0,
        jitter: float = 0.25,
        rng: random.Random | None = None,
        capacity: int = BACKOFF_ENTRIES,
    ) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.jitter = jitter
        self.capacity = capacity
        self._rng = rng or random.Random()
        # addr -> (consecutive failures, time before which we do not redial)
        self._state: OrderedDict[Addr, tuple[int, float]] = OrderedDict()

    def ready(self, addr: Addr, now: float) -> bool:
        state = self._state.get(addr)
        return state is None or now >= state[1]

    def failed(self, addr: Addr, now: float) -> float:
        failures = self._state.get(addr, (0, 0.0))[0] + 1
        nominal = min(self.max_s, self.base_s * 2 ** (failures - 1))
        delay = nominal * self._rng.uniform(1 - self.jitter, 1 + self.jitter)
        self._state[addr] = (failures, now + delay)
        self._state.move_to_end(addr)
        while len(self._state) > self.capacity:
            self._state.popitem(last=False)
        return delay

    def succeeded(self, addr: Addr) -> None:
        self._state.pop(addr, None)

    def delay(self, addr: Addr) -> float:
        """The nominal (jitter-free) delay the next failure of `addr` would start from."""
        failures = self._state.get(addr, (0, 0.0))[0]
        return 0.0 if failures == 0 else min(self.max_s, self.base_s * 2 ** (failures - 1))

    def failures(self, addr: Addr) -> int:
        return self._state.get(addr, (0, 0.0))[0]


@dataclass
class PeerSlot:
    """What the policy needs to know about one live connection."""

    addr: Addr
    node_id: bytes | None
    kind: str
    outbound: bool
    group: NetGroup
    connected_at: float
    min_ping_ms: float | None = None
    last_block_at: float | None = None
    last_tx_at: float | None = None
    score: float = 50.0
    feeler: bool = False
    manual: bool = False


class ConnectionPolicy:
    def __init__(
        self,
        outbound_target: int,
        inbound_cap: int,
        max_outbound_per_group: int,
        preferred_kinds: Iterable[str] = (),
        secret: bytes | None = None,
    ) -> None:
        self.outbound_target = outbound_target
        self.inbound_cap = inbound_cap
        self.max_outbound_per_group = max_outbound_per_group
        self.preferred_kinds = list(preferred_kinds)
        self._secret = secret or os.urandom(16)

    @staticmethod
    def _regular_outbound(slots: list[PeerSlot]) -> list[PeerSlot]:
        return [s for s in slots if s.outbound and not s.feeler and not s.manual]

    def wants_outbound(self, slots: list[PeerSlot]) -> bool:
        return len(self._regular_outbound(slots)) < self.outbound_target

    def inbound_full(self, slots: list[PeerSlot]) -> bool:
        return sum(1 for s in slots if not s.outbound) >= self.inbound_cap

    def _acceptable(
        self,
        record: AddrRecord,
        slots: list[PeerSlot],
        backoff: Backoff,
        is_banned: Callable[[str], bool],
        now: float,
        group_limit: bool,
    ) -> bool:
        addr = record.addr
        if any(s.addr == addr for s in slots) or not backoff.ready(addr, now):
            return False
        if is_banned(record.host):
            return False
        if group_limit:
            group = group_of(record.host)
            used = sum(1 for s in slots if s.outbound and not s.feeler and s.group == group)
            if used >= self.max_outbound_per_group:
                return False
        return True

    def pick_outbound(
        self,
        book: AddrMan,
        slots: list[PeerSlot],
        backoff: Backoff,
        is_banned: Callable[[str], bool],
        now: float,
    ) -> AddrRecord | None:
        """An address for a regular outbound slot, or None when nothing acceptable is found.

        The first half of the tries asks only for preferred kinds, so a gateway keeps
        full nodes and gateways in its outbound set when the book has them.
        """
        for attempt in range(PICK_TRIES):
            kinds = self.preferred_kinds if attempt < PICK_TRIES // 2 else None
            record = book.select(now=now, kinds=kinds or None)
            if record is None:
                if kinds:
                    continue
                return None
            if self._acceptable(record, slots, backoff, is_banned, now, group_limit=True):
                return record
        return None

    def pick_feeler(
        self,
        book: AddrMan,
        slots: list[PeerSlot],
        backoff: Backoff,
        is_banned: Callable[[str], bool],
        now: float,
    ) -> AddrRecord | None:
        """A short test connection: first to a tried entry a newcomer collides with
        (test-before-evict), else to an untested address from the new table."""
        record = book.select_tried_collision()
        if record is not None and self._acceptable(
            record, slots, backoff, is_banned, now, group_limit=False
        ):
            return record
        for _ in range(PICK_TRIES // 4):
            record = book.select(new_only=True, now=now)
            if record is None:
                return None
            if self._acceptable(record, slots, backoff, is_banned, now, group_limit=True):
                return record
        return None

    def _group_rank(self, group: NetGroup) -> bytes:
        return hashlib.blake2b(group.key(), key=self._secret, digest_size=8).digest()

    def inbound_to_evict(self, slots: list[PeerSlot], now: float) -> PeerSlot | None:
        """The inbound peer to drop for a newcomer, or None (refuse the newcomer)."""
        candidates = [s for s in slots if not s.outbound and not s.manual]

        def protect(
            key: Callable[[PeerSlot], float | bytes],
            count: int,
            reverse: bool,
            only: Callable[[PeerSlot], bool] = lambda s: True,
        ) -> None:
            ranked = sorted(filter(only, candidates), key=key, reverse=reverse)  # type: ignore[arg-type]
            for slot in ranked[:count]:
                candidates.remove(slot)

        protect(lambda s: self._group_rank(s.group), PROTECT_BY_GROUP, True)
        protect(
            lambda s: s.min_ping_ms if s.min_ping_ms is not None else float("inf"),
            PROTECT_BY_PING,
            False,
        )
        # Only peers that actually relayed something earn the "useful data" protection.
        protect(lambda s: s.last_tx_at or 0.0, PROTECT_BY_TX, True, lambda s: bool(s.last_tx_at))
        protect(
            lambda s: s.last_block_at or 0.0,
            PROTECT_BY_BLOCK,
            True,
            lambda s: bool(s.last_block_at),
        )
        protect(lambda s: s.connected_at, len(candidates) // 2, False)
        if not candidates:
            return None
        per_group = Counter(s.group for s in candidates)
        newest_in = {g: max(s.connected_at for s in candidates if s.group == g) for g in per_group}
        crowded = max(per_group, key=lambda g: (per_group[g], newest_in[g]))
        return max(
            (s for s in candidates if s.group == crowded), key=lambda s: (s.connected_at, -s.score)
        )
