"""The peer manager's tables: connected peers, their scores, verified records, mesh peers.

Every part of the peer manager works on these by reference (as Bitcoin Core's
`CConnman` and `PeerManager` share their node tables); each table owns its own rules:

* `PeerTable`: the established peers (`ConnectedPeer`), by session serial and by node
  id. `drop(peer, reason)` takes a peer out at once and aborts its session; `forget` is
  the one way out of the table, and settles the session into the peer's score (its
  uptime and the valid messages not yet counted), publishes DISCONNECTED and calls the
  `on_departure(peer, uptime_s)` listeners (the connector's backoff and relay seat).
* `ScoreTable`: one `PeerScore` per score key (`scoring.node_key(id)`, or `host:port`
  before the id is known), bounded; the keys changed since the last write are dirty.
* `RecordTable`: the newest verified signed record per node id, bounded.
* `MeshPeerTable`: mesh nodes heard through a bridge (record, bridge, RSSI/SNR, hops).

`settled_score` gives what a connected peer's score would be if it left now: what the
score table holds once it has gone, and what a stopped gateway shows for it.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from loragate.bounded import BoundedDict
from loragate.events import EventKind
from loragate.listeners import Listeners
from loragate.netgroup import NetGroup
from loragate.pool import PeerSlot
from loragate.scoring import PeerScore, ScoreWeights, node_key
from loragate.session import PeerSession
from loragate.telemetry import Telemetry
from lorawire.identity import id_hex
from lorawire.record import Record

log = logging.getLogger(__name__)

Addr = tuple[str, int]


def join_addr(addr: Addr) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def score_key(node_id: bytes | None, addr: Addr) -> str:
    """The score table key of a peer: its node id when known, else its address."""
    return node_key(node_id) if node_id else join_addr(addr)


def group_text(group: NetGroup) -> str:
    if group.family == "ipv4" and len(group.prefix) == 2:
        return f"ipv4 {group.prefix[0]}.{group.prefix[1]}.0.0/16"
    if group.family == "ipv6":
        net = ipaddress.IPv6Address(group.prefix.ljust(16, bytes(1)))
        return f"ipv6 {net}/32"
    return f"{group.family} {group.prefix.hex()}".strip()


def endpoint_host(raw: bytes) -> str:
    return str(ipaddress.ip_address(bytes(raw)))


def record_endpoints(rec: Record) -> list[tuple[bytes, int]]:
    eps: Any = rec.endpoints
    return [(bytes(h), int(p)) for h, p in eps]


# ---- scores ----------------------------------------------------------------------------


class ScoreTable:
    """Bounded table of scores; `for_update` marks a key dirty (to be persisted)."""

    def __init__(self, weights: ScoreWeights, maxlen: int) -> None:
        self.weights = weights
        self._scores: BoundedDict[str, PeerScore] = BoundedDict(maxlen, on_evict=self._evicted)
        self._dirty: set[str] = set()

    def _evicted(self, key: str, score: PeerScore) -> None:
        self._dirty.discard(key)

    def get(self, key: str) -> PeerScore | None:
        """The score held for `key`, if any: a read that creates nothing, dirties nothing."""
        return self._scores.get(key)

    def for_update(self, key: str) -> PeerScore:
        """The score of `key` (a new one if none is held), to be changed and persisted."""
        score = self._scores.get(key)
        if score is None:
            score = PeerScore(self.weights)
            self._scores.put(key, score)
        else:
            self._scores.touch(key)
        self._dirty.add(key)
        return score

    def load(self, key: str, data: dict[str, Any]) -> bool:
        """A score as persisted (not dirty); False if the row is not readable."""
        try:
            self._scores.put(key, PeerScore.from_dict(data, self.weights))
        except (TypeError, ValueError):
            return False
        return True

    def take_dirty(self) -> list[tuple[str, dict[str, Any], float]]:
        """(key, persisted form, last update) of every score changed since the last call."""
        out: list[tuple[str, dict[str, Any], float]] = []
        for key in self._dirty:
            s = self._scores.get(key)
            if s is not None:
                out.append((key, s.to_dict(), s.updated))
        self._dirty.clear()
        return out

    def __len__(self) -> int:
        return len(self._scores)

    def __contains__(self, key: object) -> bool:
        return key in self._scores


# ---- records and mesh peers ------------------------------------------------------------


class RecordTable:
    """The newest verified record per node id (PEX answers, record checks)."""

    def __init__(self, maxlen: int) -> None:
        self._records: BoundedDict[bytes, Record] = BoundedDict(maxlen)

    def get(self, node_id: bytes) -> Record | None:
        return self._records.get(node_id)

    def hold(self, rec: Record) -> bool:
        """Keep a verified record if it is newer than the one held; True if kept."""
        held = self._records.get(rec.id)
        if held is not None and held.seq >= rec.seq:
            return False
        self._records.put(rec.id, rec)
        return True

    def values(self) -> list[Record]:
        return list(self._records.values())

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._records

    def __len__(self) -> int:
        return len(self._records)


@dataclass
class MeshPeer:
    record: Record
    bridge_id: bytes
    rssi: float | None  # the bridge radio's link to it: direct neighbours only
    snr: float | None
    hops: int  # relays between it and the bridge (0: a direct neighbour)
    last_seen: float  # the last frame from it that passed its tag check


class MeshPeerTable:
    """Mesh nodes heard through a bridge, least recently heard forgotten first."""

    def __init__(self, maxlen: int) -> None:
        self._peers: BoundedDict[bytes, MeshPeer] = BoundedDict(maxlen)

    def heard(self, peer: MeshPeer) -> None:
        self._peers.put(peer.record.id, peer)

    def touch(self, node_id: bytes, now: float) -> None:
        """Another frame from a known mesh peer: it was last seen now."""
        peer = self._peers.get(node_id)
        if peer is not None:
            peer.last_seen = now

    def forget(self, node_id: bytes) -> bool:
        """A banned node is no peer of ours any more; False if it was not one."""
        return self._peers.pop(node_id, None) is not None

    def get(self, node_id: bytes) -> MeshPeer | None:
        return self._peers.get(node_id)

    def __iter__(self) -> Iterator[MeshPeer]:
        return iter(list(self._peers.values()))

    def __len__(self) -> int:
        return len(self._peers)


# ---- connected peers -------------------------------------------------------------------


class ConnectedPeer:
    """An established peer: its session, its pool slot and its score bookkeeping."""

    __slots__ = (
        "session",
        "slot",
        "score_key",
        "last_score",
        "valid",
        "pex_asked",
        "tp_bytes",
        "tp_at",
    )

    def __init__(self, session: PeerSession, slot: PeerSlot, key: str) -> None:
        self.session = session
        self.slot = slot
        self.score_key = key
        self.last_score = slot.score
        self.valid = 0  # valid messages not yet counted into the score (maintenance does)
        self.pex_asked = False
        # Throughput sampling: bytes received and monotonic time at the last sample.
        self.tp_bytes = session.stream.bytes_in
        self.tp_at = time.monotonic()

    def uptime(self, now: float) -> float:
        return max(0.0, now - self.slot.connected_at)


def _settle(score: PeerScore, peer: ConnectedPeer, now: float) -> None:
    score.uptime(peer.uptime(now), now=now)
    if peer.valid:
        score.message(True, now, peer.valid)


def settled_score(scores: ScoreTable, peer: ConnectedPeer, now: float) -> float | None:
    """The score `peer` would keep if it left now (None: nothing held for it)."""
    held = scores.get(peer.score_key)
    if held is None:
        return None
    copy = PeerScore.from_dict(held.to_dict(), held.weights)
    _settle(copy, peer, now)
    return copy.score(now)


class PeerTable:
    """Established peers by session serial and by node id (see module docstring)."""

    def __init__(self, scores: ScoreTable, telemetry: Telemetry) -> None:
        self.scores = scores
        self.telemetry = telemetry
        self.on_departure: Listeners[[ConnectedPeer, float]] = Listeners("on_departure", log)
        self._peers: dict[int, ConnectedPeer] = {}
        self._by_id: dict[bytes, ConnectedPeer] = {}

    def add(self, peer: ConnectedPeer) -> None:
        nid = peer.session.node_id
        assert nid is not None, "only an established session joins the table"
        self._peers[peer.session.serial] = peer
        self._by_id[nid] = peer

    def get(self, serial: int) -> ConnectedPeer | None:
        return self._peers.get(serial)

    def by_id(self, node_id: bytes) -> ConnectedPeer | None:
        return self._by_id.get(node_id)

    def __iter__(self) -> Iterator[ConnectedPeer]:
        """A snapshot: dropping peers while iterating is safe."""
        return iter(list(self._peers.values()))

    def __len__(self) -> int:
        return len(self._peers)

    def slots(self) -> list[PeerSlot]:
        return [p.slot for p in self._peers.values()]

    def node_ids(self) -> set[bytes]:
        return set(self._by_id)

    def has_addr(self, addr: Addr) -> bool:
        return any(p.slot.addr == addr for p in self._peers.values())

    def drop(self, peer: ConnectedPeer, reason: str) -> None:
        """Take a peer out of the tables now and close its session in the background."""
        self.forget(peer, reason)
        peer.session.abort(reason)

    def forget(self, peer: ConnectedPeer, reason: str) -> None:
        """The peer is gone (its session ended, or `drop`): settle and announce it."""
        session = peer.session
        if self._peers.pop(session.serial, None) is None:
            return
        nid = session.node_id
        if nid is not None and self._by_id.get(nid) is peer:
            del self._by_id[nid]
        now = time.time()
        up = peer.uptime(now)
        _settle(self.scores.for_update(peer.score_key), peer, now)
        peer.valid = 0
        direction = "out" if session.outbound else "in"
        self.telemetry.metric("peer_disconnected", peer.slot.kind, direction)
        self.telemetry.emit(
            EventKind.DISCONNECTED,
            node_id=id_hex(nid) if nid else None,
            address=join_addr(peer.slot.addr),
            direction=direction,
            reason=reason,
            uptime_s=up,
        )
        self.on_departure(peer, up)
