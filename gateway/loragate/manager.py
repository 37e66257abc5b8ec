"""The peer manager: connections in and out, peer exchange, scoring, bans, relay.

`PeerManager(cfg, identity, store)` ties the parts together:

* **Listener** on cfg.listen_host:listen_port. Before the handshake: a banned address
  is closed at once, a per-address token bucket limits connection rate (a flood earns
  FLOODING points for the address), and at most `max_pending_inbound` handshakes run
  at once. After it: a banned node id is closed, a second connection of a node already
  connected is closed, and when the inbound cap is reached `ConnectionPolicy.
  inbound_to_evict` over the connected peers (not the newcomer) names the peer to
  drop for it: the lowest-score unprotected one (None: refuse the newcomer).
* **Outbound loop** fills `outbound_target` via `ConnectionPolicy.pick_outbound`
  (at most `max_outbound_per_group` per address group, preferred kinds first),
  skipping banned (address or node id) and backing-off addresses, and taking the
  best remembered score among up to 3 addrman draws; in-flight dials count as slots, so the
  group limit also holds for them. Manual `cfg.connect` peers are dialled outside
  the target and always retried (with backoff). Every `feeler_interval_s` (an eighth
  of it while test-before-evict collisions wait) one feeler (the tried entry a
  newcomer collides with first, else a new-table address) is opened, marked good or
  failed in the book, and closed.
* **Backoff** per address (`pool.Backoff`, wall clock): a failed dial or handshake
  doubles the delay (with jitter); a completed handshake resets it; an outbound
  session shorter than `good_session_s` counts as a failure when it ends.
* **PEX**: after an outbound handshake we send PEX_REQUEST. A request (rate-limited
  per peer in the session) is answered with signed records: ours first, then records
  we verified ourselves (handshakes, PEX, mesh announcements). Received records are
  verified (bad signature: BAD_SIGNATURE points for the sender); their endpoints go to
  the address book with the sender's address as source.
* **Misbehaviour** reported by sessions, by the relay validator and by the relay's
  per-peer INV/object buckets (FLOODING) goes to the `BanManager` (node id and
  address when the frame is attributed, else the address only; handshake failures
  against the address). A ban disconnects every matching peer at once and is
  persisted by the store immediately.
* **Scoring**: one `PeerScore` per peer (keyed `node:<hex>`, or `host:port` before the
  id is known), fed by handshakes, uptime, ping latency, GETDATA response times,
  throughput and valid/invalid messages. The score drives selection and eviction: it
  rides on each `PeerSlot` (refreshed by maintenance), so inbound eviction drops the
  lowest-score unprotected peer; outbound selection prefers the address whose node
  has the better remembered score; rebalancing drops the worst regular outbound peer
  when there are too many.
* **Maintenance** every `maintenance_interval_s`: ban expiry (UNBANNED, reason
  "expired"), addrman collision resolution, throughput sampling (bytes received per
  second since the last pass, from the session's byte counter; passes with less than
  `throughput_min_bytes` are idle and not sampled), score refresh (SCORE_CHANGED when
  a score moves by >= 1), rebalancing, metrics gauges; every `persist_interval_s` the
  book's changed rows and the dirty peer stats are written in one batch.
* **Own record**: kind gateway, endpoint = the bound listen address, sequence number
  kept in the store's kv table (`record_seq`), one higher at every start.

It implements `view.GatewayView` for the control socket. `run_gateway(cfg)` is the
whole process: key, store, manager, control socket, metrics, until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import signal
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from loragate import keys
from loragate.addrman import AddrMan, AddrRecord, load_addrman
from loragate.bans import Ban, BanManager, Misbehaviour, parse_target
from loragate.config import GatewayConfig, parse_endpoint
from loragate.events import Event, EventBus, EventKind
from loragate.netgroup import LOCAL_GROUP, NetGroup, group_of
from loragate.pool import Backoff, ConnectionPolicy, PeerSlot
from loragate.ratelimit import TokenBucket
from loragate.relay import Relay, RelayLimits, Validator
from loragate.scoring import PeerScore, ScoreWeights
from loragate.session import (
    PRIO_CONTROL,
    PRIO_TX,
    HandshakeFailed,
    PeerSession,
    SessionLimits,
    cancel_all,
)
from loragate.store import AsyncStore
from loragate.transport import FrameStream
from loragate.view import (
    AirtimeInfo,
    BanInfo,
    PeerInfo,
    StatusInfo,
    UnbanInfo,
    ViewError,
    ban_info,
    ban_policy,
    check_target,
    evidence_info,
    version,
)
from lorawire import messages
from lorawire import record as wrecord
from lorawire.frame import MAX_TCP_FRAME
from lorawire.identity import Identity, id_hex
from lorawire.record import KIND_NAMES, Record, RecordError

log = logging.getLogger(__name__)

Addr = tuple[str, int]
RECORD_SEQ_KEY = "record_seq"
OWN_SERVICES = wrecord.SVC_RELAY | wrecord.SVC_PEX | wrecord.SVC_BRIDGE


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


class _Peer:
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


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return True


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _endpoint_host(raw: bytes) -> str:
    return str(ipaddress.ip_address(bytes(raw)))


def _endpoints(rec: Record) -> list[tuple[bytes, int]]:
    eps: Any = rec.endpoints
    return [(bytes(h), int(p)) for h, p in eps]


def _join(addr: Addr) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _group_text(group: NetGroup) -> str:
    if group.family == "ipv4" and len(group.prefix) == 2:
        return f"ipv4 {group.prefix[0]}.{group.prefix[1]}.0.0/16"
    if group.family == "ipv6":
        net = ipaddress.IPv6Address(group.prefix.ljust(16, bytes(1)))
        return f"ipv6 {net}/32"
    return f"{group.family} {group.prefix.hex()}".strip()


class PeerManager:
    """Internet peers of one gateway; implements `view.GatewayView`."""

    def __init__(
        self,
        cfg: GatewayConfig,
        identity: Identity,
        store: AsyncStore,
        metrics: Any = None,
        bus: EventBus | None = None,
        *,
        validator: Validator | None = None,
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
        self.relay = Relay(
            validator=validator,
            on_invalid=self._on_invalid_object,
            on_response=self._on_response,
            on_useful=self._on_useful,
            on_flooding=self._on_relay_flooding,
            on_object=self._on_object,
            limits=t.relay,
        )
        self.on_object: Callable[[str, bytes, PeerSession | None], None] | None = None
        self.book = AddrMan()
        self.record: Record | None = None
        self.listen_addr: Addr = (cfg.listen_host, cfg.listen_port)
        self.started_at: float | None = None
        self.manual: list[Addr] = [parse_endpoint(e, "connect") for e in cfg.connect]
        self.stats: Counter[str] = Counter()
        self._peers: dict[int, _Peer] = {}
        self._by_id: dict[bytes, _Peer] = {}
        self._pending_out: dict[Addr, PeerSlot] = {}
        self._pending_in = 0
        self._conn_buckets: OrderedDict[str, TokenBucket] = OrderedDict()
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

    # ---- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        bans, counts = await self.store.load_bans()
        self.banman.restore(bans, counts)
        self.banman.expire()
        self.book = await self.store.run(lambda s: load_addrman(s, rng=self._rng))
        stats = await self.store.run(lambda s: s.load_peer_stats())
        for key, data in stats.items():
            try:
                self._remember_score(key, PeerScore.from_dict(data, self.weights))
            except (TypeError, ValueError):
                continue
        raw = await self.store.get_kv(RECORD_SEQ_KEY)
        seq = (int.from_bytes(raw, "big") if raw else 0) + 1
        await self.store.set_kv(RECORD_SEQ_KEY, seq.to_bytes(8, "big"))
        cfg = self.cfg
        self._server = await asyncio.start_server(
            self._on_inbound, cfg.listen_host, cfg.listen_port, start_serving=False
        )
        sock = self._server.sockets[0].getsockname()
        self.listen_addr = (str(sock[0]), int(sock[1]))
        fields: dict[str, Any] = {
            "kind": wrecord.KIND_GATEWAY,
            "services": OWN_SERVICES,
            "seq": seq,
        }
        if not _is_unspecified(self.listen_addr[0]):
            host = ipaddress.ip_address(self.listen_addr[0]).packed
            fields["endpoints"] = [(host, self.listen_addr[1])]
        self.record = wrecord.decode_record(wrecord.encode_record(fields, self.identity))
        for addr in self.manual:
            with contextlib.suppress(ValueError):
                self.book.add(addr, None, now=time.time())
        self.started_at = time.time()
        self._last_persist = time.monotonic()
        self._last_feeler = self._last_persist
        self._next_feeler = self._last_persist + self.tuning.feeler_interval_s
        await self._server.start_serving()
        self._loops = [
            asyncio.create_task(self._outbound_loop(), name="loragate-outbound"),
            asyncio.create_task(self._maintenance_loop(), name="loragate-maintenance"),
        ]
        self._metric("set_bans", len(self.banman))
        log.info("gateway %s listening on %s", self.identity.hex_id(), _join(self.listen_addr))

    async def stop(self) -> None:
        """Close the listener and every connection, then persist the book and stats."""
        if self._stopping:
            return
        self._stopping = True
        if self._server is not None:
            self._server.close()
        await cancel_all(self._loops)
        await cancel_all(list(self._tasks))
        self.relay.close()
        await asyncio.gather(
            *(p.session.close("shutdown") for p in list(self._peers.values())),
            return_exceptions=True,
        )
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        with contextlib.suppress(Exception):
            await self.persist()

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
        return f"node:{node_id.hex()}" if node_id else _join(addr)

    # ---- slots -------------------------------------------------------------------------

    def _slots(self) -> list[PeerSlot]:
        return [p.slot for p in self._peers.values()]

    def _dial_slots(self) -> list[PeerSlot]:
        """Live and in-flight slots, plus our own address (so we never dial ourselves)."""
        slots = self._slots() + list(self._pending_out.values())
        slots.append(PeerSlot(self.listen_addr, self.identity.id, "gateway", False, LOCAL_GROUP, 0))
        return slots

    def _placeholder(self, addr: Addr, *, feeler: bool = False, manual: bool = False) -> PeerSlot:
        try:
            group = group_of(addr[0])
        except ValueError:
            group = LOCAL_GROUP
        return PeerSlot(addr, None, "full", True, group, time.time(), feeler=feeler, manual=manual)

    def _is_banned_host(self, host: str) -> bool:
        return self.banman.is_banned(host=host)

    def _is_banned_node(self, node_id: bytes) -> bool:
        return self.banman.is_banned(node_id=node_id)

    def _remembered_score(self, rec: AddrRecord) -> float | None:
        """The score we remember for the node at a book entry (by node id, else by
        address), without creating one; None if we never dealt with it."""
        keys = [_join(rec.addr)]
        if rec.node_id is not None:
            keys.insert(0, f"node:{rec.node_id.hex()}")
        for key in keys:
            s = self._scores.get(key)
            if s is not None:
                return s.score()
        return None

    # ---- outbound ------------------------------------------------------------------------

    async def _outbound_loop(self) -> None:
        while True:
            try:
                self.fill_outbound()
            except Exception:
                log.exception("outbound loop")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tuning.outbound_interval_s)

    def _connected_addr(self, addr: Addr) -> bool:
        return any(p.slot.addr == addr for p in self._peers.values())

    def fill_outbound(self) -> int:
        """Start dials for manual peers, free outbound slots and a due feeler; how many."""
        if self._stopping or self.record is None:
            return 0
        now = time.time()
        started = 0
        for addr in self.manual:
            if addr in self._pending_out or self._connected_addr(addr):
                continue
            if not self.backoff.ready(addr, now) or self._is_banned_host(addr[0]):
                continue
            self._start_dial(addr, manual=True)
            started += 1
        slots = self._dial_slots()
        regular_pending = sum(
            1 for s in self._pending_out.values() if not s.feeler and not s.manual
        )
        picks = 0
        while (
            self.policy.wants_outbound(slots)
            and regular_pending < self.tuning.max_pending_outbound
            and picks < 4 * max(1, self.cfg.outbound_target)
        ):
            picks += 1
            rec = self.policy.pick_outbound(
                self.book,
                slots,
                self.backoff,
                self._is_banned_host,
                now,
                score_of=self._remembered_score,
                is_banned_node=self._is_banned_node,
            )
            if rec is None:
                break
            if rec.node_id is not None and (
                rec.node_id in self._by_id or rec.node_id == self.identity.id
            ):
                # Already connected (inbound, under another address) or ourselves.
                slots.append(PeerSlot(rec.addr, rec.node_id, rec.kind, False, LOCAL_GROUP, now))
                continue
            slot = self._start_dial(rec.addr, expected_id=rec.node_id)
            slots.append(slot)
            regular_pending += 1
            started += 1
        mono = time.monotonic()
        interval = self.tuning.feeler_interval_s
        if self.book.collision_count > 0:  # test-before-evict pending: test sooner
            self._next_feeler = min(self._next_feeler, self._last_feeler + interval / 8)
        if mono >= self._next_feeler and not any(s.feeler for s in self._pending_out.values()):
            rec = self.policy.pick_feeler(self.book, slots, self.backoff, self._is_banned_host, now)
            self._last_feeler = mono
            self._next_feeler = mono + interval
            if rec is not None:
                self._start_dial(rec.addr, feeler=True, expected_id=rec.node_id)
                started += 1
        return started

    def _start_dial(
        self,
        addr: Addr,
        *,
        feeler: bool = False,
        manual: bool = False,
        expected_id: bytes | None = None,
    ) -> PeerSlot:
        slot = self._placeholder(addr, feeler=feeler, manual=manual)
        self._pending_out[addr] = slot
        self._spawn(self._dial(addr, slot, expected_id), f"dial-{_join(addr)}")
        return slot

    def _local_addr(self, host: str) -> tuple[str, int] | None:
        """Dial from our listen address when it can reach `host`, so that peers see
        (and group) us by the address we listen on (loopback test networks rely on it)."""
        mine = self.cfg.listen_host
        if _is_unspecified(mine):
            return None
        try:
            same_family = ipaddress.ip_address(mine).version == ipaddress.ip_address(host).version
        except ValueError:
            return None
        if not same_family or _is_loopback(mine) != _is_loopback(host):
            return None
        return (mine, 0)

    def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> FrameStream:
        return FrameStream(
            reader,
            writer,
            max_frame=MAX_TCP_FRAME,
            frame_timeout=self.tuning.frame_timeout_s,
            idle_timeout=self.cfg.read_timeout_s,
        )

    def _new_session(
        self,
        stream: FrameStream,
        *,
        outbound: bool,
        addr: Addr,
        expected_id: bytes | None = None,
    ) -> PeerSession:
        assert self.record is not None
        return PeerSession(
            stream,
            self.identity,
            self.record,
            outbound=outbound,
            addr=addr,
            expected_id=expected_id,
            handshake_timeout_s=self.cfg.handshake_timeout_s,
            ping_interval_s=self.cfg.ping_interval_s,
            limits=self.tuning.session,
            on_message=self._on_message,
            on_misbehaviour=self._on_session_misbehaviour,
            on_closed=self._on_closed,
        )

    async def _dial(self, addr: Addr, slot: PeerSlot, expected_id: bytes | None) -> None:
        now = time.time()
        self.book.attempt(addr, now)
        self.stats["dials"] += 1
        try:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(addr[0], addr[1], local_addr=self._local_addr(addr[0])),
                    self.tuning.connect_timeout_s,
                )
            except (OSError, TimeoutError) as exc:
                self._dial_failed(addr, expected_id, f"connect: {exc}", handshake=False)
                return
            stream = self._stream(reader, writer)
            session = self._new_session(stream, outbound=True, addr=addr, expected_id=expected_id)
            try:
                await session.handshake()
            except HandshakeFailed as exc:
                await stream.close()
                self._dial_failed(addr, expected_id, exc.reason, handshake=True)
                return
            except BaseException:
                await stream.close()
                raise
            self._established(session, feeler=slot.feeler, manual=slot.manual)
        finally:
            self._pending_out.pop(addr, None)
            self._wake.set()

    def _dial_failed(
        self, addr: Addr, node_id: bytes | None, reason: str, *, handshake: bool
    ) -> None:
        now = time.time()
        delay = self.backoff.failed(addr, now)
        self.stats["dial_failures"] += 1
        self.score_for(self._key(node_id, addr)).handshake(False, now)
        if handshake:
            self._metric("handshake_failed", reason)
            self._misbehaving(
                Misbehaviour.HANDSHAKE_FAILURE, None, addr[0], f"outbound handshake: {reason}"
            )
        log.debug("dial %s failed (%s); next try in %.1fs", _join(addr), reason, delay)

    # ---- inbound ---------------------------------------------------------------------------

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        peer = writer.get_extra_info("peername")
        host, port = (str(peer[0]), int(peer[1])) if peer else ("0.0.0.0", 0)
        stream = self._stream(reader, writer)
        if self._stopping:
            await stream.close()
            return
        if self._is_banned_host(host):
            self.stats["refused_banned"] += 1
            self._metric("dropped", "banned")
            await stream.close()
            return
        bucket = self._conn_buckets.get(host)
        if bucket is None:
            bucket = TokenBucket(self.tuning.conn_rate, self.tuning.conn_burst)
            self._conn_buckets[host] = bucket
            while len(self._conn_buckets) > self.tuning.conn_buckets_max:
                self._conn_buckets.popitem(last=False)
        self._conn_buckets.move_to_end(host)
        if not bucket.take():
            self.stats["refused_rate"] += 1
            self._misbehaving(Misbehaviour.FLOODING, None, host, "connection rate above the limit")
            await stream.close()
            return
        if self._pending_in >= self.tuning.max_pending_inbound:
            self.stats["refused_busy"] += 1
            await stream.close()
            return
        self._pending_in += 1
        try:
            session = self._new_session(stream, outbound=False, addr=(host, port))
            try:
                await session.handshake()
            except HandshakeFailed as exc:
                await stream.close()
                self.stats["inbound_handshake_failures"] += 1
                self._metric("handshake_failed", exc.reason)
                self.score_for(_join((host, port))).handshake(False)
                self._misbehaving(
                    Misbehaviour.HANDSHAKE_FAILURE, None, host, f"inbound handshake: {exc.reason}"
                )
                return
            except BaseException:
                await stream.close()
                raise
        finally:
            self._pending_in -= 1
        self._established(session, feeler=False, manual=False)

    # ---- established sessions ------------------------------------------------------------

    def _advertised_addr(self, session: PeerSession) -> Addr:
        """An inbound peer's listening endpoint when its record names one on the host it
        connects from; else the connection's address."""
        rec = session.peer_record
        if rec is not None:
            for raw, port in _endpoints(rec):
                with contextlib.suppress(ValueError):
                    if _endpoint_host(raw) == session.host:
                        return (session.host, int(port))
        return session.addr

    def _established(self, session: PeerSession, *, feeler: bool, manual: bool) -> None:
        nid = session.node_id
        assert nid is not None and session.peer_record is not None
        now = time.time()
        direction = "out" if session.outbound else "in"
        if self._stopping:
            self._spawn(session.close("shutdown"), "close")
            return
        if self.banman.is_banned(nid, session.host, now):
            self.stats["refused_banned_id"] += 1
            self._metric("dropped", "banned")
            self._spawn(session.close("banned"), "close")
            return
        rec = session.peer_record
        self._hold_record(rec)
        kind = KIND_NAMES[rec.kind]
        addr = session.addr if session.outbound else self._advertised_addr(session)
        key = self._key(nid, addr)
        score = self.score_for(key)
        score.handshake(True, now)
        if session.outbound:
            self.backoff.succeeded(addr)
            self.book.good(addr, now)
            self.book.set_peer(addr, node_id=nid, kind=kind, services=rec.services)
        else:
            self._add_record_endpoints(rec, session.host, announce=False)
        if feeler:
            self.stats["feelers"] += 1
            self._spawn(session.close("feeler done"), "close")
            return
        existing = self._by_id.get(nid)
        if existing is not None:
            # Both sides dialled each other at once. Both keep the connection opened by
            # the lower node id, so they agree and do not close both.
            lower_dialled_new = session.outbound == (self.identity.id < nid)
            self.stats["duplicates"] += 1
            if existing.session.outbound != session.outbound and lower_dialled_new:
                self._drop(existing, "duplicate")
            else:
                self._spawn(session.close("duplicate"), "close")
                return
        try:
            group = group_of(addr[0])
        except ValueError:
            group = LOCAL_GROUP
        slot = PeerSlot(
            addr,
            nid,
            kind,
            session.outbound,
            group,
            now,
            score=score.score(now),
            manual=manual,
        )
        if not session.outbound and self.policy.inbound_full(self._slots()):
            # As in Bitcoin Core the newcomer is not a candidate: it only needs a free
            # slot, and the lowest-score unprotected peer makes room for it.
            victim = self.policy.inbound_to_evict(self._slots(), now)
            if victim is None:
                self.stats["refused_full"] += 1
                self._spawn(session.close("inbound full"), "close")
                return
            for p in self._peers.values():
                if p.slot is victim:
                    self.stats["evicted"] += 1
                    self._emit(
                        EventKind.EVICTED,
                        node_id=id_hex(p.slot.node_id) if p.slot.node_id else None,
                        address=_join(p.slot.addr),
                        reason="inbound full",
                    )
                    self._drop(p, "evicted")
                    break
        peer = _Peer(session, slot, key)
        peer.last_score = slot.score
        self._peers[session.serial] = peer
        self._by_id[nid] = peer
        self.relay.add_peer(session)
        session.start()
        self._metric("peer_connected", kind, direction)
        self._emit(
            EventKind.CONNECTED,
            node_id=id_hex(nid),
            address=_join(addr),
            direction=direction,
            kind=kind,
            manual=manual,
        )
        if session.outbound:
            peer.pex_asked = True
            session.send(messages.PEX_REQUEST, {0: messages.PEX_WANT_MAX, 1: []}, PRIO_CONTROL)

    def _drop(self, peer: _Peer, reason: str) -> None:
        """Take a peer out of the tables now and close its session in the background."""
        self._forget(peer, reason)
        peer.session.abort(reason)

    def _forget(self, peer: _Peer, reason: str) -> None:
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
            address=_join(peer.slot.addr),
            direction=direction,
            reason=reason,
            uptime_s=up,
        )
        self._wake.set()

    def _on_closed(self, session: PeerSession) -> None:
        peer = self._peers.get(session.serial)
        if peer is not None:
            self._forget(peer, session.close_reason or "closed")

    # ---- messages ------------------------------------------------------------------------

    def _on_message(self, session: PeerSession, msg_type: int, value: Any, data: bytes) -> None:
        peer = self._peers.get(session.serial)
        if peer is None:
            return
        peer.valid += 1
        self._metric("frame_in", len(data))
        if msg_type == messages.PONG:
            if session.latency_ms is not None:
                self.score_for(peer.score_key).latency(session.latency_ms)
            peer.slot.min_ping_ms = session.min_ping_ms
        elif self.relay.handle(session, msg_type, value):
            pass
        elif msg_type == messages.PEX_REQUEST:
            self._answer_pex(peer, value)
        elif msg_type == messages.PEX_RESPONSE:
            if peer.pex_asked:
                peer.pex_asked = False
                for rv in value[0]:
                    if not self._take_record(rv, peer):
                        break
        elif msg_type == messages.ANNOUNCE:
            self._take_record(value, peer)

    def _answer_pex(self, peer: _Peer, value: dict[int, Any]) -> None:
        want = min(int(value[0]), self.tuning.pex_answer_max, messages.PEX_RECORDS_MAX)
        have = {bytes(p) for p in value[1]}
        exclude = peer.session.node_id
        out: list[Record] = []
        if self.record is not None and self.identity.id[: messages.PREFIX_LEN] not in have:
            out.append(self.record)
        pool = [
            r
            for r in self._records.values()
            if r.endpoints and r.id != exclude and r.id[: messages.PREFIX_LEN] not in have
        ]
        room = max(0, want - len(out))
        out.extend(self._rng.sample(pool, min(room, len(pool))))
        peer.session.send(messages.PEX_RESPONSE, {0: [r.value for r in out]}, PRIO_TX)

    def _hold_record(self, rec: Record) -> bool:
        """Keep a verified record if it is newer than the one held; True if kept."""
        held = self._records.get(rec.id)
        if held is not None and held.seq >= rec.seq:
            return False
        self._records[rec.id] = rec
        self._records.move_to_end(rec.id)
        while len(self._records) > self.tuning.records_max:
            self._records.popitem(last=False)
        return True

    def _take_record(self, value: Any, peer: _Peer) -> bool:
        """Verify a record a peer sent; False if the peer was punished (stop reading)."""
        session = peer.session
        try:
            rec = wrecord.decode_record(value)
            if rec.id == self.identity.id:
                return True
            rec = wrecord.verify_record(rec, held=self._records.get(rec.id))
        except RecordError as exc:
            if exc.reason == wrecord.BAD_SIGNATURE:
                kind = Misbehaviour.BAD_SIGNATURE
            elif exc.reason == wrecord.MALFORMED:
                kind = Misbehaviour.MALFORMED_FRAME
            else:
                return True  # stale or duplicate: nobody's provable fault
            self._misbehaving(kind, session.node_id, session.host, f"peer record: {exc.reason}")
            return False
        self._hold_record(rec)
        self._add_record_endpoints(rec, session.host)
        return True

    def _add_record_endpoints(self, rec: Record, source: str | bytes, announce: bool = True) -> int:
        added = 0
        kind = KIND_NAMES[rec.kind]
        for raw, port in _endpoints(rec):
            try:
                host = _endpoint_host(raw)
                addr = (host, int(port))
                if addr == self.listen_addr:
                    continue
                if self.book.add(addr, source, kind=kind, services=rec.services, node_id=rec.id):
                    added += 1
                    if announce:
                        self._emit(
                            EventKind.DISCOVERED,
                            address=_join(addr),
                            node_id=id_hex(rec.id),
                            kind=kind,
                            source=source.hex() if isinstance(source, bytes) else source,
                        )
            except ValueError:
                continue
        if added:
            self._wake.set()
        return added

    # ---- discovery entry points --------------------------------------------------------

    def add_addresses(
        self,
        addrs: Iterable[tuple[str, int]],
        source: str | bytes | None = None,
        kind: str = "full",
    ) -> int:
        """Addresses from discovery (DNS seeds, mDNS, config); how many were new."""
        added = 0
        now = time.time()
        src = source.hex() if isinstance(source, bytes) else source
        for host, port in addrs:
            try:
                if self.book.add((host, int(port)), source, kind=kind, now=now):
                    added += 1
                    self._emit(
                        EventKind.DISCOVERED,
                        address=_join((host, int(port))),
                        kind=kind,
                        source=src,
                    )
            except ValueError:
                continue
        if added:
            self._wake.set()
        return added

    def add_mesh_announcement(
        self,
        record: Record | bytes | dict[int, Any],
        bridge_id: bytes,
        rssi: float,
        snr: float,
        hops: int,
    ) -> Record | None:
        """A peer record heard on the mesh through bridge `bridge_id`; the Record if it
        verified (stale, duplicate or bad records return None)."""
        try:
            rec = record if isinstance(record, Record) else wrecord.decode_record(record)
            if rec.id == self.identity.id:
                return None
            held = self._records.get(rec.id)
            if held is not None and held.encoded == rec.encoded:
                rec = held  # a re-heard copy: refresh the link data only
            else:
                rec = wrecord.verify_record(rec, held=held)
        except RecordError:
            self.stats["mesh_records_refused"] += 1
            return None
        now = time.time()
        self._hold_record(rec)
        self._mesh[rec.id] = MeshPeer(rec, bytes(bridge_id), rssi, snr, hops, now)
        self._mesh.move_to_end(rec.id)
        while len(self._mesh) > self.tuning.mesh_max:
            self._mesh.popitem(last=False)
        self.score_for(self._key(rec.id, ("", 0))).link(rssi, snr, now)
        if not self._add_record_endpoints(rec, bytes(bridge_id)) and held is None:
            self._emit(
                EventKind.DISCOVERED,
                node_id=id_hex(rec.id),
                kind=KIND_NAMES[rec.kind],
                source="mesh",
                bridge=bytes(bridge_id).hex(),
                hops=hops,
            )
        return rec

    # ---- relay -------------------------------------------------------------------------

    def submit_local(self, kind: str, payload: bytes) -> bytes:
        """An object our node made: relay it to every peer; returns its hash."""
        return self.relay.submit_local(kind, payload)

    def _on_object(self, kind: str, payload: bytes, source: Any) -> None:
        self._metric("relayed", kind)
        if self.on_object is not None:
            self.on_object(kind, payload, source)

    def _on_invalid_object(self, session: Any, kind: str, reason: str) -> None:
        self._misbehaving(Misbehaviour.INVALID_SYNC_DATA, session.node_id, session.host, reason)

    def _on_relay_flooding(self, session: Any, what: str) -> None:
        self._misbehaving(Misbehaviour.FLOODING, session.node_id, session.host, what)

    def _on_response(self, session: Any, ms: float) -> None:
        peer = self._peers.get(session.serial)
        if peer is not None:
            self.score_for(peer.score_key).response_time(ms)

    def _on_useful(self, session: Any, kind: str) -> None:
        peer = self._peers.get(session.serial)
        if peer is None:
            return
        if kind == "block":
            peer.slot.last_block_at = time.time()
        else:
            peer.slot.last_tx_at = time.time()

    # ---- misbehaviour and bans -----------------------------------------------------------

    def _on_session_misbehaviour(
        self,
        session: PeerSession,
        kind: Misbehaviour,
        reason: str,
        attributed: bool,
        msg_type: int | None,
        data: bytes | None,
    ) -> None:
        node = session.node_id if attributed else None
        self._misbehaving(kind, node, session.host, reason, msg_type, data)

    def _misbehaving(
        self,
        kind: Misbehaviour,
        node_id: bytes | None,
        host: str | None,
        reason: str,
        msg_type: int | None = None,
        data: bytes | None = None,
    ) -> list[Ban]:
        self.stats[f"misbehaviour_{kind.value}"] += 1
        self._metric("misbehaviour", kind.value, self.banman.policy.points.get(kind, 0))
        if node_id is not None:
            self.score_for(f"node:{node_id.hex()}").message(False)
        try:
            new = self.banman.misbehaving(
                kind, node_id=node_id, host=host, msg_type=msg_type, reason=reason, frame=data
            )
        except ValueError:
            return []
        for ban in new:
            self._apply_ban(ban)
        return new

    def _covered(self, ban: Ban, peer: _Peer) -> bool:
        t = ban.target
        if t.kind == "node":
            return peer.session.node_id is not None and peer.session.node_id.hex() == t.value
        try:
            return ipaddress.ip_address(peer.session.host) in t.network
        except ValueError:
            return False

    def _apply_ban(self, ban: Ban) -> None:
        for peer in list(self._peers.values()):
            if self._covered(ban, peer):
                self._drop(peer, "banned")
        self._emit(
            EventKind.BANNED,
            target=str(ban.target),
            reason=ban.reason,
            until=ban.until,
            count=ban.count,
            manual=ban.manual,
        )
        self._metric("set_bans", len(self.banman))
        log.info("banned %s: %s", ban.target, ban.reason)

    # ---- maintenance -----------------------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tuning.maintenance_interval_s)
            try:
                await self.maintain()
            except Exception:
                log.exception("maintenance")

    async def maintain(self, persist: bool | None = None) -> None:
        now = time.time()
        for ban in self.banman.expire(now):
            self._emit(EventKind.UNBANNED, target=str(ban.target), reason="expired")
        self.book.resolve_collisions(now)
        for peer in list(self._peers.values()):
            score = self.score_for(peer.score_key)
            if peer.valid:
                score.message(True, now, peer.valid)
                peer.valid = 0
            if peer.session.latency_ms is not None:
                peer.slot.min_ping_ms = peer.session.min_ping_ms
            self._sample_throughput(peer, score, now)
            s = score.score(now)
            peer.slot.score = s
            if abs(s - peer.last_score) >= 1.0:
                peer.last_score = s
                self._emit(
                    EventKind.SCORE_CHANGED,
                    node_id=id_hex(peer.session.node_id or b""),
                    address=_join(peer.slot.addr),
                    score=round(s, 2),
                )
            if peer.session.outbound:
                self.book.connected(peer.slot.addr, now)
        self._rebalance()
        self._metric("set_addrman", self.book.new_count, self.book.tried_count)
        self._metric("set_bans", len(self.banman))
        counts: Counter[tuple[str, str]] = Counter(
            (p.slot.kind, "out" if p.slot.outbound else "in") for p in self._peers.values()
        )
        self._metric("set_peers", dict(counts))
        mono = time.monotonic()
        if persist or (
            persist is None and mono - self._last_persist >= self.tuning.persist_interval_s
        ):
            self._last_persist = mono
            await self.persist()
        self._wake.set()

    def _sample_throughput(self, peer: _Peer, score: PeerScore, now: float) -> None:
        """Feed the bytes/s the peer sent us since the last sample into its score.

        Only intervals in which the peer sent at least `throughput_min_bytes` count: an
        idle peer (pings only) says nothing about how fast it delivers, and must not
        look slow for being quiet."""
        mono = time.monotonic()
        got = peer.session.stream.bytes_in
        dt = mono - peer.tp_at
        if dt <= 0:
            return
        sent = got - peer.tp_bytes
        peer.tp_bytes = got
        peer.tp_at = mono
        if sent >= self.tuning.throughput_min_bytes:
            score.throughput(sent / dt, now)

    def _rebalance(self) -> None:
        regular = [
            p
            for p in self._peers.values()
            if p.slot.outbound and not p.slot.manual and not p.slot.feeler
        ]
        extra = len(regular) - self.cfg.outbound_target
        if extra > 0:
            for p in sorted(regular, key=lambda p: p.slot.score)[:extra]:
                self._drop(p, "rebalance")
        inbound = [p for p in self._peers.values() if not p.slot.outbound]
        while len(inbound) > self.cfg.inbound_cap:
            victim = self.policy.inbound_to_evict(self._slots(), time.time())
            if victim is None:
                break
            match = [p for p in inbound if p.slot is victim]
            if not match:
                break
            self._emit(
                EventKind.EVICTED, address=_join(victim.addr), reason="inbound above the cap"
            )
            self._drop(match[0], "evicted")
            inbound.remove(match[0])

    async def persist(self) -> None:
        """Write the book's changed rows and the dirty peer stats in one batch."""
        changes = self.book.take_changes()
        stats: list[tuple[str, dict[str, Any], float]] = []
        for key in self._dirty_scores:
            s = self._scores.get(key)
            if s is not None:
                stats.append((key, s.to_dict(), s.updated))
        self._dirty_scores.clear()

        def run(st: Any) -> None:
            st.write_address_changes(changes.full, changes.upserts, changes.deletes)
            for key, data, updated in stats:
                st.queue_peer_stats(key, data, updated)
            st.flush()

        await self.store.run(run)

    # ---- GatewayView -------------------------------------------------------------------

    async def peers(self) -> list[PeerInfo]:
        now = time.time()
        out: list[PeerInfo] = []
        for p in self._peers.values():
            s = p.session
            score = self._scores.get(p.score_key)
            out.append(
                PeerInfo(
                    node_id=id_hex(s.node_id) if s.node_id else None,
                    address=_join(p.slot.addr),
                    kind=p.slot.kind,
                    state="connected",
                    direction="out" if s.outbound else "in",
                    score=None if score is None else round(score.score(now), 1),
                    latency_ms=s.latency_ms,
                    rssi=None,
                    snr=None,
                    hops=None,
                    connected_since=p.slot.connected_at,
                    last_seen=now,
                    bytes_in=s.stream.bytes_in,
                    bytes_out=s.stream.bytes_out,
                    group=_group_text(p.slot.group),
                )
            )
        for m in self._mesh.values():
            score = self._scores.get(f"node:{m.record.id.hex()}")
            out.append(
                PeerInfo(
                    node_id=id_hex(m.record.id),
                    address=None,
                    kind=KIND_NAMES[m.record.kind],
                    state="connected",
                    direction="mesh",
                    score=None if score is None else round(score.score(now), 1),
                    latency_ms=None,
                    rssi=m.rssi,
                    snr=m.snr,
                    hops=m.hops,
                    connected_since=None,
                    last_seen=m.last_seen,
                    bytes_in=0,
                    bytes_out=0,
                    group=f"mesh {m.bridge_id.hex()}",
                )
            )
        return out

    async def bans(self) -> list[BanInfo]:
        now = time.time()
        active = [b for b in self.banman.bans() if b.active(now)]
        active.sort(key=lambda b: b.created, reverse=True)
        return [ban_info(b, list(reversed(self.banman.evidence(b.target)))) for b in active]

    async def status(self) -> StatusInfo:
        kinds: Counter[str] = Counter(p.slot.kind for p in self._peers.values())
        dirs: Counter[str] = Counter(
            "out" if p.slot.outbound else "in" for p in self._peers.values()
        )
        if self._mesh:
            dirs["mesh"] = len(self._mesh)
            for m in self._mesh.values():
                kinds[KIND_NAMES[m.record.kind]] += 1
        now = time.time()
        return StatusInfo(
            state="running",
            node_id=self.identity.hex_id(),
            version=version(),
            uptime_s=None if self.started_at is None else now - self.started_at,
            listen=_join(self.listen_addr),
            peers_total=len(self._peers) + len(self._mesh),
            peers_by_kind=dict(kinds),
            peers_by_direction=dict(dirs),
            addrman_new=self.book.new_count,
            addrman_tried=self.book.tried_count,
            bans_active=sum(1 for b in self.banman.bans() if b.active(now)),
            relayed=dict(self.relay.relayed),
            airtime=self._airtime(),
            database=str(self.cfg.db_path),
        )

    def _airtime(self) -> AirtimeInfo | None:
        """The bridge's duty-cycle figures (None without a bridge or before its stats)."""
        side = self.mesh_side
        if side is None:
            return None
        b = side.link.budget()
        used, budget = b.get("airtime_used_ms"), b.get("airtime_budget_ms")
        if used is None or budget is None:
            return None
        return AirtimeInfo(used_ms=float(used), budget_ms=float(budget), window_s=3600.0)

    async def ban(self, target: str, duration_s: float | None, reason: str) -> BanInfo:
        parsed = parse_target(check_target(target))
        if duration_s is not None and not duration_s > 0:
            raise ViewError("ban duration must be positive")
        ban = self.banman.ban(
            parsed,
            duration_s=duration_s,
            permanent=duration_s is None,
            reason=reason or "manual",
        )
        self._apply_ban(ban)
        await self.store.drain()
        return ban_info(ban, list(reversed(self.banman.evidence(parsed))))

    async def unban(self, target: str) -> UnbanInfo:
        parsed = parse_target(check_target(target))
        removed = self.banman.unban(parsed)
        if removed:
            self._emit(EventKind.UNBANNED, target=str(parsed), reason="manual")
            self._metric("set_bans", len(self.banman))
            await self.store.drain()
        return UnbanInfo(target=str(parsed), removed=removed)

    # ---- small queries (tests, status) -------------------------------------------------

    @property
    def peer_count(self) -> int:
        return len(self._peers)

    def sessions(self) -> list[PeerSession]:
        return [p.session for p in self._peers.values()]

    def slots(self) -> list[PeerSlot]:
        return self._slots()

    def connected_ids(self) -> set[bytes]:
        return set(self._by_id)


_ = evidence_info  # re-exported for callers that format ban evidence


async def run_gateway(cfg: GatewayConfig, *, stop: asyncio.Event | None = None) -> None:
    """The gateway process: load or create the key, open the store, run the manager,
    the control socket and (if `metrics_port`) the metrics endpoint until SIGINT/SIGTERM
    (or `stop` is set), then shut down cleanly and flush the store."""
    from loragate.control import ControlServer

    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if cfg.key_path.exists():
        identity = keys.load_identity(cfg.key_path)
    else:
        identity = keys.create_identity(cfg.key_path)
    cfg.network_key_bytes()  # a bad key file is a config error now, not later
    store = await AsyncStore.open(cfg.db_path)
    metrics: Any = None
    bus = EventBus()
    try:
        from loragate.metrics import GatewayMetrics

        metrics = GatewayMetrics(version=version())
        metrics.attach(bus)
    except Exception:  # metrics are optional
        log.warning("metrics unavailable", exc_info=True)
        metrics = None
    manager = PeerManager(cfg, identity, store, metrics, bus)
    control = ControlServer(manager, cfg.control_path)
    done = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, done.set)
            handled.append(sig)
    mesh: Any = None
    from loragate.discovery import Discovery

    def discovered(addrs: list[tuple[str, int]], source: str | None, kind: str) -> None:
        manager.add_addresses(addrs, source, kind)

    discovery = Discovery(
        cfg,
        discovered,
        identity.hex_id(),
        cfg.listen_port,
        book_size=lambda: len(manager.book),
    )
    try:
        await manager.start()
        await discovery.start()
        if cfg.serial_port:
            from loragate.mesh import start_mesh  # mesh imports this module

            mesh = manager.mesh_side = await start_mesh(cfg, manager)
        await control.start()
        if metrics is not None and cfg.metrics_port:
            port = metrics.start_http(cfg.metrics_host, cfg.metrics_port)
            log.info("metrics on http://%s:%d/metrics", cfg.metrics_host, port)
        await done.wait()
        log.info("shutting down")
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await control.close()
        await discovery.stop()
        if mesh is not None:
            manager.mesh_side = None
            with contextlib.suppress(Exception):
                await mesh.close()
        await manager.stop()
        if metrics is not None:
            with contextlib.suppress(Exception):
                metrics.stop_http()
        await store.close()
