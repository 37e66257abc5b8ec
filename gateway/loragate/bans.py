"""Misbehaviour points and the ban list (by node id, by address, by subnet).

Points per misbehaviour type: the gateway's price list, ``config.MISBEHAVIOUR_POINTS``
(documented there; ``[bans.points]`` overrides it), as ``BanPolicy.points``.
Every setting of ``BanPolicy`` that a user may change has its default in
``config.BanSettings``; ``policy_from(cfg.bans)`` is the policy a gateway runs with.

At ``BanPolicy.threshold`` (default 100) points (rounded to a whole point) the peer is
banned; its points reset.
Points are attributed to the node id when known, otherwise to the address.

**Decay:** points halve every ``points_half_life_s`` (default 12 h), computed lazily
from the time of the last update (O(1)). A peer that earns 20 points once a day stays
far below 100 forever; a burst of errors still crosses the threshold.

**Duration:** the n-th ban of a target lasts ``base_duration_s * 2**(n-1)`` (default
1 h, 2 h, 4 h, ...) capped at ``max_duration_s`` (default 7 days); the
``permanent_after``-th ban (default 5) is permanent. Manual bans take an explicit
duration, or the same rule.

**Targets:** ``node:<16 hex>`` or an IP network. An address stands for its peer
network (``netgroup.peer_network``): points earned by an address, its bans and a
manual ban or unban of a single address apply to the IPv4 address itself and to the
IPv6 /64 by default (``BanPolicy.ipv4_prefix`` / ``ipv6_prefix``, from ``[peer_prefix]``),
so a peer rotating through its own /64 stays one target. A CIDR subnet is taken as
given. ``is_banned`` checks a node id in O(1) and an IP against every prefix length that has
at least one ban (at most 33 for IPv4, 129 for IPv6), never against every ban.

Everything is bounded: points, history and evidence are kept for at most
``max_tracked`` targets (least recently updated dropped first); evidence and history
per target are deques. Persistence is delegated to a ``BanSink`` (the store), told of
every change at once so a ban survives a crash.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import time
from collections import deque
from collections.abc import Container
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

from loragate.bounded import BoundedDict
from loragate.config import BanSettings, PeerPrefix
from loragate.netgroup import PEER_PREFIX_IPV4, PEER_PREFIX_IPV6, IPNetwork, peer_network
from lorawire import auth, names


class Misbehaviour(StrEnum):
    """What the gateway charges points for: lorawire's vocabulary (a code in
    `lorawire.auth`, its name in `lorawire.names`), the board's too. MANUAL is not one:
    a manual ban costs no points here."""

    BAD_TAG = names.MISBEHAVIOURS[auth.BAD_TAG]
    BAD_SIGNATURE = names.MISBEHAVIOURS[auth.BAD_SIGNATURE]
    MALFORMED_FRAME = names.MISBEHAVIOURS[auth.MALFORMED]
    REPLAY = names.MISBEHAVIOURS[auth.REPLAY]
    FLOODING = names.MISBEHAVIOURS[auth.FLOOD]
    INVALID_SYNC_DATA = names.MISBEHAVIOURS[auth.INVALID_SYNC]
    HANDSHAKE_FAILURE = names.MISBEHAVIOURS[auth.HANDSHAKE_FAILURE]
    PROTOCOL_VIOLATION = names.MISBEHAVIOURS[auth.PROTOCOL_VIOLATION]

    @property
    def code(self) -> int:
        """The lorawire.auth code, as a board names it."""
        return names.misbehaviour_code(self.value)

    @classmethod
    def from_code(cls, code: int) -> Misbehaviour:
        """The misbehaviour for a lorawire.auth code (`auth.blame`'s answer)."""
        return cls(names.MISBEHAVIOURS[code])


_SETTINGS = BanSettings()  # the defaults of the settings, from the one place


def price_list(points: dict[str, int]) -> dict[Misbehaviour, int]:
    """A `[bans.points]` table (names) as points per Misbehaviour."""
    return {Misbehaviour(name): int(n) for name, n in points.items()}


DEFAULT_POINTS: dict[Misbehaviour, int] = price_list(_SETTINGS.points)


class BanTarget(NamedTuple):
    """``kind`` is "node" (value: 16 hex digits) or "net" (value: compressed CIDR)."""

    kind: str
    value: str

    def __str__(self) -> str:
        if self.kind == "node":
            return "node:" + self.value
        net = ipaddress.ip_network(self.value)
        return str(net.network_address) if net.num_addresses == 1 else self.value

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(self.value)


def node_target(node_id: bytes) -> BanTarget:
    if len(node_id) != 8:
        raise ValueError("node id must be 8 bytes")
    return BanTarget("node", node_id.hex())


def net_target(host_or_cidr: str) -> BanTarget:
    """A single IP or a subnet (host bits are cleared). Raises ValueError."""
    net = ipaddress.ip_network(host_or_cidr, strict=False)
    if isinstance(net, ipaddress.IPv6Network):
        mapped = net.network_address.ipv4_mapped
        if mapped is not None and net.prefixlen >= 96:
            net = ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return BanTarget("net", str(net))


def parse_target(text: str) -> BanTarget:
    """Parse CLI input: ``node:HEX``, 16 hex digits, an IP or a CIDR. Raises ValueError."""
    t = text.strip()
    if t.startswith("node:"):
        t = t[5:]
        return node_target(bytes.fromhex(t))
    if len(t) == 16 and all(c in "0123456789abcdefABCDEF" for c in t):
        return node_target(bytes.fromhex(t))
    try:
        return net_target(t)
    except ValueError:
        raise ValueError(f"not a node id, address or subnet: {text!r}") from None


@dataclass
class Ban:
    target: BanTarget
    created: float
    until: float | None  # None: permanent
    reason: str
    count: int  # this is the count-th ban of the target
    manual: bool = False

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until


@dataclass(frozen=True)
class Evidence:
    target: BanTarget
    time: float
    misbehaviour: str
    points: int
    msg_type: int | None
    reason: str
    frame_sha256: bytes | None


@dataclass
class BanHistoryEntry:
    ban: Ban
    lifted: float | None = None
    lift_reason: str = ""


class BanSink(Protocol):
    """Where changes go to be persisted (``store.Store`` / ``store.AsyncStore``)."""

    def ban_saved(self, ban: Ban) -> None: ...

    def ban_lifted(self, entry: BanHistoryEntry) -> None: ...

    def evidence_added(self, evidence: Evidence) -> None: ...


@dataclass
class BanPolicy:
    threshold: int = _SETTINGS.threshold
    base_duration_s: float = float(_SETTINGS.base_duration_s)
    max_duration_s: float = float(_SETTINGS.max_duration_s)
    permanent_after: int = _SETTINGS.permanent_after
    points_half_life_s: float = _SETTINGS.points_half_life_s
    points: dict[Misbehaviour, int] = field(default_factory=lambda: dict(DEFAULT_POINTS))
    ban_address_with_node: bool = True
    max_tracked: int = 100_000
    evidence_per_target: int = 16
    history_per_target: int = 16
    ipv4_prefix: int = PEER_PREFIX_IPV4  # the leading bits of an address that name a peer
    ipv6_prefix: int = PEER_PREFIX_IPV6

    def duration(self, count: int) -> float | None:
        """Length of the count-th ban; None means permanent."""
        if self.permanent_after and count >= self.permanent_after:
            return None
        return min(self.base_duration_s * 2.0 ** (count - 1), self.max_duration_s)


def policy_from(settings: BanSettings, prefix: PeerPrefix | None = None) -> BanPolicy:
    """The policy the `[bans]` (and `[peer_prefix]`) settings describe."""
    prefix = prefix or PeerPrefix()
    return BanPolicy(
        ipv4_prefix=prefix.ipv4,
        ipv6_prefix=prefix.ipv6,
        threshold=settings.threshold,
        base_duration_s=float(settings.base_duration_s),
        max_duration_s=float(settings.max_duration_s),
        permanent_after=settings.permanent_after,
        points_half_life_s=settings.points_half_life_s,
        points={**DEFAULT_POINTS, **price_list(settings.points)},
    )


class BanManager:
    def __init__(self, policy: BanPolicy | None = None, sink: BanSink | None = None) -> None:
        self.policy = policy or BanPolicy()
        self.sink = sink
        self._bans: dict[BanTarget, Ban] = {}
        # (ip version, prefix length) -> {network int -> ban}
        self._nets: dict[tuple[int, int], dict[int, Ban]] = {}
        self._prefixes: dict[int, list[int]] = {4: [], 6: []}
        self._expiry: list[tuple[float, int, BanTarget]] = []
        self._seq = 0
        cap = self.policy.max_tracked
        self._points: BoundedDict[BanTarget, tuple[float, float]] = BoundedDict(cap)
        self._counts: BoundedDict[BanTarget, int] = BoundedDict(cap)
        self._history: BoundedDict[BanTarget, deque[BanHistoryEntry]] = BoundedDict(cap)
        self._evidence: BoundedDict[BanTarget, deque[Evidence]] = BoundedDict(cap)

    # ---- targets -----------------------------------------------------------------

    def address_target(self, host: str) -> BanTarget:
        """The target an address stands for: its peer network. Raises ValueError."""
        p = self.policy
        return BanTarget("net", str(peer_network(host, p.ipv4_prefix, p.ipv6_prefix)))

    def peer_target(self, target: BanTarget) -> BanTarget:
        """A single-address target widened to its peer network; others unchanged."""
        if target.kind != "net":
            return target
        net = target.network
        if net.prefixlen != net.max_prefixlen:
            return target
        return self.address_target(str(net.network_address))

    def _known(self, target: BanTarget, table: Container[BanTarget]) -> BanTarget:
        """`target` if `table` holds it (a single-address ban from before peer networks),
        else the peer network it stands for."""
        return target if target in table else self.peer_target(target)

    # ---- queries -----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._bans)

    def sizes(self) -> dict[str, int]:
        """How many entries each internal table holds (all bounded; for status and tests):
        bans, targets with points, ban counts, histories, evidence, expiry heap entries."""
        return {
            "bans": len(self._bans),
            "points": len(self._points),
            "counts": len(self._counts),
            "history": len(self._history),
            "evidence": len(self._evidence),
            "expiry": len(self._expiry),
        }

    def bans(self) -> list[Ban]:
        return list(self._bans.values())

    def get(self, target: BanTarget) -> Ban | None:
        return self._bans.get(self._known(target, self._bans))

    def find_ban(
        self, node_id: bytes | None = None, host: str | None = None, now: float | None = None
    ) -> Ban | None:
        """The active ban covering this node id or IP, if any."""
        if now is None:
            now = time.time()
        if node_id is not None:
            ban = self._bans.get(BanTarget("node", node_id.hex()))
            if ban is not None and ban.active(now):
                return ban
        if host is not None:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                return None
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            value = int(ip)
            bits = ip.max_prefixlen
            for plen in self._prefixes[ip.version]:
                table = self._nets[(ip.version, plen)]
                ban = table.get(value >> (bits - plen) << (bits - plen))
                if ban is not None and ban.active(now):
                    return ban
        return None

    def is_banned(
        self, node_id: bytes | None = None, host: str | None = None, now: float | None = None
    ) -> bool:
        return self.find_ban(node_id, host, now) is not None

    def points(self, target: BanTarget, now: float | None = None) -> float:
        """Current (decayed) misbehaviour points of a target."""
        if now is None:
            now = time.time()
        entry = self._points.get(self._known(target, self._points))
        return 0.0 if entry is None else self._decayed(entry, now)

    def history(self, target: BanTarget) -> list[BanHistoryEntry]:
        return list(self._history.get(self._known(target, self._history), ()))

    def evidence(self, target: BanTarget) -> list[Evidence]:
        return list(self._evidence.get(self._known(target, self._evidence), ()))

    def ban_count(self, target: BanTarget) -> int:
        return self._counts.get(self._known(target, self._counts), 0)

    # ---- misbehaviour ------------------------------------------------------------

    def _decayed(self, entry: tuple[float, float], now: float) -> float:
        pts, t = entry
        dt = max(0.0, now - t)
        return pts * 0.5 ** (dt / self.policy.points_half_life_s)

    def misbehaving(
        self,
        kind: Misbehaviour | str,
        *,
        node_id: bytes | None = None,
        host: str | None = None,
        now: float | None = None,
        msg_type: int | None = None,
        reason: str = "",
        frame: bytes | None = None,
        points: int | None = None,
    ) -> list[Ban]:
        """Add points for a misbehaviour; returns the bans this caused (maybe none)."""
        if now is None:
            now = time.time()
        kind = Misbehaviour(kind)
        if node_id is not None:
            target = node_target(node_id)
        elif host is not None:
            target = self.address_target(host)
        else:
            raise ValueError("misbehaviour needs a node id or a host")
        pts = self.policy.points.get(kind, 0) if points is None else points
        ev = Evidence(
            target,
            now,
            kind.value,
            pts,
            msg_type,
            reason,
            hashlib.sha256(frame).digest() if frame is not None else None,
        )
        dq = self._evidence.get(target)
        if dq is None:
            dq = deque(maxlen=self.policy.evidence_per_target)
        dq.append(ev)
        self._evidence.put(target, dq)
        if self.sink is not None:
            self.sink.evidence_added(ev)
        total = self.points(target, now) + pts
        if round(total) < self.policy.threshold:  # decay leaves fractions; compare whole points
            self._points.put(target, (total, now))
            return []
        self._points.pop(target, None)
        why = f"{kind.value}: {reason}" if reason else kind.value
        new: list[Ban] = []
        targets = [target]
        if node_id is not None and host is not None and self.policy.ban_address_with_node:
            targets.append(self.address_target(host))
        for t in targets:
            existing = self._bans.get(t)
            if existing is not None and existing.active(now):
                continue
            new.append(self._ban(t, now, why, manual=False))
        return new

    # ---- ban / unban -------------------------------------------------------------

    def ban(
        self,
        target: BanTarget,
        *,
        now: float | None = None,
        duration_s: float | None = None,
        permanent: bool = False,
        reason: str = "manual",
    ) -> Ban:
        """Manual ban; without ``duration_s`` the growing-duration rule applies. A single
        address bans its peer network."""
        if now is None:
            now = time.time()
        target = self.peer_target(target)
        if duration_s is not None and duration_s <= 0:
            raise ValueError("ban duration must be positive")
        if permanent:
            return self._ban(target, now, reason, manual=True, duration_s=None, by_policy=False)
        return self._ban(
            target, now, reason, manual=True, duration_s=duration_s, by_policy=duration_s is None
        )

    def _ban(
        self,
        target: BanTarget,
        now: float,
        reason: str,
        *,
        manual: bool,
        duration_s: float | None = None,
        by_policy: bool = True,
    ) -> Ban:
        count = self._counts.get(target, 0) + 1
        self._counts.put(target, count)
        if by_policy:
            duration_s = self.policy.duration(count)
        until = None if duration_s is None else now + duration_s
        old = self._bans.get(target)
        if old is not None:
            self._unindex(old)
            self._lift_history(old, now, "replaced")
        ban = Ban(target, now, until, reason, count, manual)
        self._index(ban)
        hist = self._history.get(target)
        if hist is None:
            hist = deque(maxlen=self.policy.history_per_target)
        hist.append(BanHistoryEntry(ban))
        self._history.put(target, hist)
        if self.sink is not None:
            self.sink.ban_saved(ban)
        return ban

    def unban(self, target: BanTarget, *, now: float | None = None, reason: str = "manual") -> bool:
        if now is None:
            now = time.time()
        target = self._known(target, self._bans)
        ban = self._bans.get(target)
        if ban is None:
            return False
        self._unindex(ban)
        self._points.pop(target, None)
        self._lift_history(ban, now, reason)
        return True

    def expire(self, now: float | None = None) -> list[Ban]:
        """Lift every ban whose time is up; returns them."""
        if now is None:
            now = time.time()
        out: list[Ban] = []
        while self._expiry and self._expiry[0][0] <= now:
            until, _, target = heapq.heappop(self._expiry)
            ban = self._bans.get(target)
            if ban is None or ban.until != until:
                continue  # stale heap entry (unbanned or re-banned)
            self._unindex(ban)
            self._lift_history(ban, now, "expired")
            out.append(ban)
        return out

    def restore(self, bans: list[Ban], counts: dict[BanTarget, int] | None = None) -> None:
        """Reload persisted state (without writing it back to the sink)."""
        for target, count in (counts or {}).items():
            self._counts.put(target, count)
        for ban in bans:
            old = self._bans.get(ban.target)
            if old is not None:
                self._unindex(old)
            self._index(ban)
            if self._counts.get(ban.target, 0) < ban.count:
                self._counts.put(ban.target, ban.count)
            hist = self._history.get(ban.target)
            if hist is None:
                hist = deque(maxlen=self.policy.history_per_target)
            hist.append(BanHistoryEntry(ban))
            self._history.put(ban.target, hist)

    # ---- indexes -----------------------------------------------------------------

    def _lift_history(self, ban: Ban, now: float, reason: str) -> None:
        entry: BanHistoryEntry | None = None
        for h in self._history.get(ban.target, ()):
            if h.ban is ban:
                entry = h
        if entry is None:
            entry = BanHistoryEntry(ban)
        entry.lifted = now
        entry.lift_reason = reason
        if self.sink is not None:
            self.sink.ban_lifted(entry)

    def _index(self, ban: Ban) -> None:
        self._bans[ban.target] = ban
        if ban.target.kind == "net":
            net = ban.target.network
            key = (net.version, net.prefixlen)
            table = self._nets.get(key)
            if table is None:
                table = self._nets[key] = {}
                self._prefixes[net.version].append(net.prefixlen)
                self._prefixes[net.version].sort()
            table[int(net.network_address)] = ban
        if ban.until is not None:
            self._seq += 1
            heapq.heappush(self._expiry, (ban.until, self._seq, ban.target))
            if len(self._expiry) > 2 * len(self._bans) + 64:
                # Drop stale entries left by unbans and re-bans so the heap stays bounded.
                self._expiry = [
                    e for e in self._expiry if (b := self._bans.get(e[2])) and b.until == e[0]
                ]
                heapq.heapify(self._expiry)

    def _unindex(self, ban: Ban) -> None:
        self._bans.pop(ban.target, None)
        if ban.target.kind == "net":
            net = ban.target.network
            key = (net.version, net.prefixlen)
            table = self._nets.get(key)
            if table is not None:
                table.pop(int(net.network_address), None)
                if not table:
                    del self._nets[key]
                    self._prefixes[net.version].remove(net.prefixlen)
