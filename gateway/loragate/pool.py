"""Connection policy: which address to dial next, when to retry, whom to evict.

Pure decisions over snapshots (no I/O), so the manager stays small and every rule is
testable on its own.

* Outbound: fill `outbound_target` from the address book, at most
  `max_outbound_per_group` per address group (an attacker who owns one /16 gets at most
  that many of our outbound slots, however many addresses it announces), preferred peer
  kinds first, never a banned (by address or by known node id) or backing-off address,
  never one already connected. The score steers the choice: `pick_outbound` draws up
  to `OUTBOUND_CANDIDATES` (3) distinct acceptable addresses from `AddrMan.select` and
  dials the one whose node has the best remembered score (unknown = 50, ties: the
  first drawn, i.e. addrman's random order). Every candidate comes out of addrman's
  bucketed random selection and passes the group limit, so the score only ranks among
  what the anti-eclipse selection offers; it cannot pull in an address addrman would
  not have drawn, and an address group still holds at most its share of the slots.
* Backoff: per address, exponential (`base_s` doubling up to `max_s`) with +/- `jitter`
  so that many gateways losing one peer do not redial in lockstep; reset by a good
  session.
* Inbound eviction, as Bitcoin Core's SelectNodeToEvict: when the inbound cap is reached,
  protect the peers an attacker finds hardest to imitate -- 4 by keyed address group
  (an attacker cannot choose which group hash wins), the 8 with the lowest ping, the 4
  that most recently relayed transactions and the 4 that most recently relayed blocks,
  then half of the rest by longest uptime. Among the unprotected, the score decides:
  evict the peer with the LOWEST score; peers within `EVICT_SCORE_TIE` (1 point) of
  the lowest count as tied, and among them the one in the address group with the most
  connections goes first, then the youngest (latest `connected_at`). So a misbehaving
  or slow peer goes before a good one, while among equally unknown newcomers the
  Bitcoin Core rule (newest of the most crowded group) still applies. Manual peers are
  never evicted.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from loragate.addrman import AddrMan, AddrRecord
from loragate.bounded import BoundedDict
from loragate.netgroup import NetGroup, group_of

Addr = tuple[str, int]

BACKOFF_ENTRIES = 10_000
PICK_TRIES = 64
PROTECT_BY_GROUP = 4
PROTECT_BY_PING = 8
PROTECT_BY_TX = 4
PROTECT_BY_BLOCK = 4
OUTBOUND_CANDIDATES = 3  # addrman draws ranked by score for one outbound slot
EVICT_SCORE_TIE = 1.0  # eviction: scores this close to the lowest count as tied
NEUTRAL_SCORE = 50.0


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
        self._state: BoundedDict[Addr, tuple[int, float]] = BoundedDict(capacity)

    def __len__(self) -> int:
        """Addresses with a failure on record."""
        return len(self._state)

    def ready(self, addr: Addr, now: float) -> bool:
        state = self._state.get(addr)
        return state is None or now >= state[1]

    def failed(self, addr: Addr, now: float) -> float:
        failures = self._state.get(addr, (0, 0.0))[0] + 1
        nominal = min(self.max_s, self.base_s * 2 ** (failures - 1))
        delay = nominal * self._rng.uniform(1 - self.jitter, 1 + self.jitter)
        self._state.put(addr, (failures, now + delay))
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
        score_of: Callable[[AddrRecord], float | None] | None = None,
        is_banned_node: Callable[[bytes], bool] | None = None,
    ) -> AddrRecord | None:
        """An address for a regular outbound slot, or None when nothing acceptable is found.

        The first half of the tries asks only for preferred kinds, so a gateway keeps
        full nodes and gateways in its outbound set when the book has them. Up to
        `OUTBOUND_CANDIDATES` distinct acceptable records are drawn; the one with the
        best `score_of` (None: unknown, counted as 50) wins, the first drawn on a tie.
        """
        found: list[AddrRecord] = []
        seen: set[Addr] = set()
        preferred = self.preferred_kinds
        for attempt in range(PICK_TRIES):
            kinds = preferred if attempt < PICK_TRIES // 2 else None
            if found and preferred and kinds is None:
                break  # preferred-kind candidates found: do not mix in other kinds
            record = book.select(now=now, kinds=kinds or None)
            if record is None:
                if kinds:
                    continue
                break
            if record.addr in seen:
                continue
            seen.add(record.addr)
            if not self._acceptable(record, slots, backoff, is_banned, now, group_limit=True):
                continue
            if (
                is_banned_node is not None
                and record.node_id is not None
                and is_banned_node(record.node_id)
            ):
                continue
            found.append(record)
            if len(found) >= OUTBOUND_CANDIDATES:
                break
        if not found:
            return None
        if score_of is None:
            return found[0]

        def rank(r: AddrRecord) -> float:
            s = score_of(r)
            return NEUTRAL_SCORE if s is None else s

        return max(found, key=rank)  # max keeps the first of equal ranks

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

    def group_rank(self, group: NetGroup) -> bytes:
        """The keyed rank of an address group: the highest ranks are protected from
        eviction (an attacker cannot tell which groups those are)."""
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

        protect(lambda s: self.group_rank(s.group), PROTECT_BY_GROUP, True)
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
        lowest = min(s.score for s in candidates)
        tied = [s for s in candidates if s.score - lowest < EVICT_SCORE_TIE]
        per_group = Counter(s.group for s in tied)
        return max(tied, key=lambda s: (per_group[s.group], s.connected_at))
