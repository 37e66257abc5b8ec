"""The peer manager's shared state: tuning, the peer table, scores and events.

`ManagerCore` holds what every part of `manager.PeerManager` works on: the config,
identity, store, address book, ban manager, connection policy and backoff, the table of
established peers (`ConnectedPeer`, by session serial and by node id), the verified
records and mesh peers we hold, and the bounded score table. It also takes a peer out
of the tables (`_drop`, `_forget`) and publishes metrics and events.

* **Scoring**: one `PeerScore` per peer (keyed `node:<hex>`, or `host:port` before the
  id is known), fed by handshakes, uptime, ping latency, GETDATA response times,
  throughput and valid/invalid messages. The score drives selection and eviction: it
  rides on each `PeerSlot` (refreshed by maintenance), so inbound eviction drops the
  lowest-score unprotected peer; outbound selection prefers the address whose node
  has the better remembered score; rebalancing drops the worst regular outbound peer
  when there are too many.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loragate.addrman import AddrMan
from loragate.bans import BanManager
from loragate.config import GatewayConfig, parse_endpoint
from loragate.events import Event, EventBus, EventKind
from loragate.netgroup import NetGroup
from loragate.pool import Backoff, ConnectionPolicy, PeerSlot
from loragate.ratelimit import AddressBuckets
from loragate.relay import Relay, RelayLimits
from loragate.scoring import PeerScore, ScoreWeights
from loragate.session import PeerSession, SessionLimits
from loragate.store import AsyncStore
from loragate.view import ban_policy
from lorawire.identity import Identity, id_hex
from lorawire.record import Record

# One logger for the whole peer manager: log lines keep naming "loragate.manager".
log = logging.getLogger("loragate.manager")

Addr = tuple[str, int]


@dataclass
class ManagerTuning:
    """Timings and limits that are not user settings (tests shorten them)."""

    outbound_interval_s: float = 1.0
    feeler_interval_s: float = 120.0
    maintenance_interval_s: float = 5.0
    persist_interval_s: float = 60.0
    connect_timeout_s: float = 5.0
    frame_timeout_s: float = 10.0  # a started frame must be complete by then (slow-loris)
    good_session_s: float = 10.0
    conn_rate: float = 1.0  # inbound connections per second per address
    conn_burst: float = 10.0
    conn_buckets_max: int = 4096
    max_pending_inbound: int = 64
    max_pending_outbound: int = 8
    pex_answer_max: int = 16
    records_max: int = 4096
    scores_max: int = 10_000
    mesh_max: int = 1024
    backoff_base_s: float = 2.0
    backoff_max_s: float = 600.0
    backoff_jitter: float = 0.25
    throughput_min_bytes: int = 4096  # a maintenance interval with less is "idle"
    session: SessionLimits = field(default_factory=SessionLimits)
    relay: RelayLimits = field(default_factory=RelayLimits)


@dataclass
class MeshPeer:
    record: Record
    bridge_id: bytes
    rssi: float
    snr: float
    hops: int
    last_seen: float


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

    def __init__(self, session: PeerSession, slot: PeerSlot, score_key: str) -> None:
        self.session = session
        self.slot = slot
        self.score_key = score_key
        self.last_score = 50.0
        self.valid = 0
        self.pex_asked = False
        # Throughput sampling: bytes received and monotonic time at the last sample.
        self.tp_bytes = session.stream.bytes_in
        self.tp_at = time.monotonic()


def is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return True


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_host(raw: bytes) -> str:
    return str(ipaddress.ip_address(bytes(raw)))


def record_endpoints(rec: Record) -> list[tuple[bytes, int]]:
    eps: Any = rec.endpoints
    return [(bytes(h), int(p)) for h, p in eps]


def join_addr(addr: Addr) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def group_text(group: NetGroup) -> str:
    if group.family == "ipv4" and len(group.prefix) == 2:
        return f"ipv4 {group.prefix[0]}.{group.prefix[1]}.0.0/16"
    if group.family == "ipv6":
        net = ipaddress.IPv6Address(group.prefix.ljust(16, bytes(1)))
        return f"ipv6 {net}/32"
    return f"{group.family} {group.prefix.hex()}".strip()


class ManagerCore:
    """State and table operations shared by the parts of `PeerManager`."""

    relay: Relay  # built by PeerManager, whose other parts take the relay's callbacks

    def __init__(
        self,
        cfg: GatewayConfig,
        identity: Identity,
        store: AsyncStore,
        metrics: Any = None,
        bus: EventBus | None = None,
        *,
        tuning: ManagerTuning | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.identity = identity
        self.store = store
        self.metrics = metrics
        self.bus = bus if bus is not None else EventBus()
        self.tuning = tuning or ManagerTuning()
        self._rng = rng or random.Random()
        t = self.tuning
        self.policy = ConnectionPolicy(
            cfg.outbound_target, cfg.inbound_cap, cfg.max_outbound_per_group, cfg.preferred_kinds
        )
        self.backoff = Backoff(t.backoff_base_s, t.backoff_max_s, t.backoff_jitter, rng=self._rng)
        self.banman = BanManager(ban_policy(cfg), sink=store)
        s = cfg.score
        self.weights = ScoreWeights(
            reliability=s.reliability_weight,
            performance=s.performance_weight,
            behaviour=s.behaviour_weight,
            half_life_s=s.half_life_s,
        )
        self.on_object: Callable[[str, bytes, PeerSession | None], None] | None = None
        self.book = AddrMan()
        self.record: Record | None = None
        self.listen_addr: Addr = (cfg.listen_host, cfg.listen_port)
        self.started_at: float | None = None
        self.manual: list[Addr] = [parse_endpoint(e, "connect") for e in cfg.connect]
        self.stats: Counter[str] = Counter()
        self._peers: dict[int, ConnectedPeer] = {}
        self._by_id: dict[bytes, ConnectedPeer] = {}
        self._pending_out: dict[Addr, PeerSlot] = {}
        self._pending_in = 0
        self._conn_buckets = AddressBuckets(
            self.tuning.conn_rate,
            self.tuning.conn_burst,
            self.tuning.conn_buckets_max,
            cfg.peer_prefix.ipv4,
            cfg.peer_prefix.ipv6,
        )
        self._records: OrderedDict[bytes, Record] = OrderedDict()
        self._scores: OrderedDict[str, PeerScore] = OrderedDict()
        self._dirty_scores: set[str] = set()
        self._mesh: OrderedDict[bytes, MeshPeer] = OrderedDict()
        self.mesh_side: Any = None  # loragate.mesh.MeshSide when a bridge is configured
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._next_feeler = 0.0
        self._last_feeler = 0.0
        self._last_persist = 0.0
        self._stopping = False

    # ---- metrics (optional, and tolerant of a differing metrics API) ---------------

    def _metric(self, name: str, *args: Any) -> None:
        m = self.metrics
        if m is None:
            return
        fn = getattr(m, name, None)
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.debug("metrics.%s failed", name, exc_info=True)

    def _emit(self, event: EventKind, /, **details: Any) -> None:
        self.bus.publish(Event(event, time.time(), details))

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- scores ----------------------------------------------------------------------

    def _remember_score(self, key: str, score: PeerScore) -> None:
        self._scores[key] = score
        self._scores.move_to_end(key)
        while len(self._scores) > self.tuning.scores_max:
            old, _ = self._scores.popitem(last=False)
            self._dirty_scores.discard(old)

    def score_for(self, key: str) -> PeerScore:
        s = self._scores.get(key)
        if s is None:
            s = PeerScore(self.weights)
            self._remember_score(key, s)
        else:
            self._scores.move_to_end(key)
        self._dirty_scores.add(key)
        return s

    @staticmethod
    def _key(node_id: bytes | None, addr: Addr) -> str:
        return f"node:{node_id.hex()}" if node_id else join_addr(addr)

    # ---- the peer table ---------------------------------------------------------------

    def _slots(self) -> list[PeerSlot]:
        return [p.slot for p in self._peers.values()]

    def _drop(self, peer: ConnectedPeer, reason: str) -> None:
        """Take a peer out of the tables now and close its session in the background."""
        self._forget(peer, reason)
        peer.session.abort(reason)

    def _forget(self, peer: ConnectedPeer, reason: str) -> None:
        session = peer.session
        if self._peers.pop(session.serial, None) is None:
            return
        nid = session.node_id
        if nid is not None and self._by_id.get(nid) is peer:
            del self._by_id[nid]
        self.relay.remove_peer(session)
        now = time.time()
        up = max(0.0, now - peer.slot.connected_at)
        score = self.score_for(peer.score_key)
        score.uptime(up, now=now)
        if peer.valid:
            score.message(True, now, peer.valid)
            peer.valid = 0
        if session.outbound and not peer.slot.manual and up < self.tuning.good_session_s:
            self.backoff.failed(peer.slot.addr, now)
        elif peer.slot.manual and up < self.tuning.good_session_s:
            self.backoff.failed(peer.slot.addr, now)
        direction = "out" if session.outbound else "in"
        self._metric("peer_disconnected", peer.slot.kind, direction)
        self._emit(
            EventKind.DISCONNECTED,
            node_id=id_hex(nid) if nid else None,
            address=join_addr(peer.slot.addr),
            direction=direction,
            reason=reason,
            uptime_s=up,
        )
        self._wake.set()

    def _on_closed(self, session: PeerSession) -> None:
        peer = self._peers.get(session.serial)
        if peer is not None:
            self._forget(peer, session.close_reason or "closed")
