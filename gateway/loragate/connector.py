"""The peer manager's connections: listener, outbound dials, feelers, backoff, eviction.

`Connector` opens and accepts TCP connections, runs their handshakes and turns them into
established peers (Bitcoin Core's `CConnman`); what the peers then say goes to the
`MessageHandler`.

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
  best remembered score among up to 3 addrman draws; in-flight dials count as slots, so
  the group limit also holds for them. Manual `cfg.connect` peers are dialled outside
  the target and always retried (with backoff). Every `feeler_interval_s` (an eighth
  of it while test-before-evict collisions wait) one feeler (the tried entry a
  newcomer collides with first, else a new-table address) is opened, marked good or
  failed in the book, and closed.
* **Backoff** per address (`pool.Backoff`, wall clock): a failed dial or handshake
  doubles the delay (with jitter); a completed handshake resets it; an outbound or
  manual session shorter than `good_session_s` counts as a failure when it ends.

Eviction decisions themselves are `pool.ConnectionPolicy`'s; this module applies them.
`start()` binds the listener (so the own record can name its address), `serve()` opens
it and starts the outbound loop; `wake()` makes the loop look again now.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from loragate.addrman import AddrMan, AddrRecord
from loragate.bans import BanManager, Misbehaviour
from loragate.config import GatewayConfig, parse_endpoint
from loragate.events import EventKind
from loragate.handler import MessageHandler
from loragate.netgroup import LOCAL_GROUP, group_of
from loragate.ownnode import Addr, OwnNode, is_unspecified
from loragate.peertable import (
    ConnectedPeer,
    PeerTable,
    RecordTable,
    ScoreTable,
    endpoint_host,
    join_addr,
    record_endpoints,
    score_key,
)
from loragate.pool import Backoff, ConnectionPolicy, PeerSlot
from loragate.ratelimit import AddressBuckets
from loragate.relay import Relay
from loragate.scoring import node_key
from loragate.session import PRIO_CONTROL, HandshakeFailed, PeerSession, cancel_all
from loragate.telemetry import Telemetry
from loragate.transport import FrameStream
from loragate.tuning import ManagerTuning
from lorawire import messages
from lorawire.frame import MAX_TCP_FRAME
from lorawire.identity import id_hex
from lorawire.record import KIND_NAMES

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Connector:
    def __init__(
        self,
        cfg: GatewayConfig,
        own: OwnNode,
        tuning: ManagerTuning,
        *,
        table: PeerTable,
        scores: ScoreTable,
        records: RecordTable,
        book: AddrMan,
        banman: BanManager,
        policy: ConnectionPolicy,
        backoff: Backoff,
        relay: Relay,
        handler: MessageHandler,
        telemetry: Telemetry,
        stats: Counter[str],
    ) -> None:
        self.cfg = cfg
        self.own = own
        self.tuning = tuning
        self.table = table
        self.scores = scores
        self.records = records
        self.book = book
        self.banman = banman
        self.policy = policy
        self.backoff = backoff
        self.relay = relay
        self.handler = handler
        self.telemetry = telemetry
        self.stats = stats
        self.manual: list[Addr] = [parse_endpoint(e, "connect") for e in cfg.connect]
        self.pending_out: dict[Addr, PeerSlot] = {}  # dials in flight
        self._pending_in = 0
        self._conn_buckets = AddressBuckets(
            tuning.conn_rate,
            tuning.conn_burst,
            tuning.conn_buckets_max,
            cfg.peer_prefix.ipv4,
            cfg.peer_prefix.ipv6,
        )
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._next_feeler = 0.0
        self._last_feeler = 0.0
        self._stopping = False
        handler.on_new_addresses.add(self.wake)
        table.on_departure.add(self._departed)

    # ---- life cycle --------------------------------------------------------------------

    async def start(self) -> Addr:
        """Bind the listener (not serving yet); the bound address, also in `own`."""
        cfg = self.cfg
        self._server = await asyncio.start_server(
            self._on_inbound, cfg.listen_host, cfg.listen_port, start_serving=False
        )
        sock = self._server.sockets[0].getsockname()
        self.own.listen_addr = (str(sock[0]), int(sock[1]))
        return self.own.listen_addr

    async def serve(self) -> None:
        """Accept connections and start dialling (the own record must exist by now)."""
        assert self._server is not None, "start() first"
        for addr in self.manual:
            with contextlib.suppress(ValueError):
                self.book.add(addr, None, now=time.time())
        mono = time.monotonic()
        self._last_feeler = mono
        self._next_feeler = mono + self.tuning.feeler_interval_s
        await self._server.start_serving()
        self._loop = asyncio.create_task(self._outbound_loop(), name="loragate-outbound")

    async def stop(self) -> None:
        """Close the listener and every connection (the peers' departures are settled)."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        await cancel_all([self._loop] if self._loop is not None else [])
        await cancel_all(list(self._tasks))
        await asyncio.gather(
            *(p.session.close("shutdown") for p in self.table), return_exceptions=True
        )
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def wake(self) -> None:
        """Look for dials to start now (new addresses, a free slot)."""
        self._wake.set()

    def add_manual(self, addr: Addr) -> bool:
        """Keep a connection to `addr` from now on, as a `connect` setting does (until the
        gateway stops); False if it was a manual peer already. Dialled at once."""
        if addr in self.manual:
            return False
        self.manual.append(addr)
        with contextlib.suppress(ValueError):
            self.book.add(addr, None, now=time.time())
        self.backoff.succeeded(addr)  # an operator asked: no waiting out an old backoff
        self.wake()
        return True

    def remove_manual(self, addr: Addr) -> bool:
        """No longer keep `addr` connected (an open connection stays, as a regular peer
        would); False if it was no manual peer."""
        if addr not in self.manual:
            return False
        self.manual.remove(addr)
        for peer in self.table:
            if peer.slot.addr == addr:
                peer.slot.manual = False
        return True

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- slots -------------------------------------------------------------------------

    def _dial_slots(self) -> list[PeerSlot]:
        """Live and in-flight slots, plus our own address (so we never dial ourselves)."""
        slots = self.table.slots() + list(self.pending_out.values())
        own = PeerSlot(self.own.listen_addr, self.own.identity.id, "gateway", False, LOCAL_GROUP, 0)
        slots.append(own)
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
        keys = [join_addr(rec.addr)]
        if rec.node_id is not None:
            keys.insert(0, node_key(rec.node_id))
        for key in keys:
            s = self.scores.get(key)
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

    def fill_outbound(self) -> int:
        """Start dials for manual peers, free outbound slots and a due feeler; how many."""
        if self._stopping or self.own.record is None:
            return 0
        now = time.time()
        started = 0
        for addr in self.manual:
            if addr in self.pending_out or self.table.has_addr(addr):
                continue
            if not self.backoff.ready(addr, now) or self._is_banned_host(addr[0]):
                continue
            self._start_dial(addr, manual=True)
            started += 1
        slots = self._dial_slots()
        regular_pending = sum(1 for s in self.pending_out.values() if not s.feeler and not s.manual)
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
                self.table.by_id(rec.node_id) is not None or rec.node_id == self.own.identity.id
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
        if mono >= self._next_feeler and not any(s.feeler for s in self.pending_out.values()):
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
        self.pending_out[addr] = slot
        self._spawn(self._dial(addr, slot, expected_id), f"dial-{join_addr(addr)}")
        return slot

    def _local_addr(self, host: str) -> tuple[str, int] | None:
        """Dial from our listen address when it can reach `host`, so that peers see
        (and group) us by the address we listen on (loopback test networks rely on it)."""
        mine = self.cfg.listen_host
        if is_unspecified(mine):
            return None
        try:
            same_family = ipaddress.ip_address(mine).version == ipaddress.ip_address(host).version
        except ValueError:
            return None
        if not same_family or is_loopback(mine) != is_loopback(host):
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
        record = self.own.record
        assert record is not None
        return PeerSession(
            stream,
            self.own.identity,
            record,
            outbound=outbound,
            addr=addr,
            expected_id=expected_id,
            handshake_timeout_s=self.cfg.handshake_timeout_s,
            ping_interval_s=self.cfg.ping_interval_s,
            limits=self.tuning.session,
            on_message=self.handler.on_message,
            on_misbehaviour=self.handler.on_session_misbehaviour,
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
            self.pending_out.pop(addr, None)
            self._wake.set()

    def _dial_failed(
        self, addr: Addr, node_id: bytes | None, reason: str, *, handshake: bool
    ) -> None:
        now = time.time()
        delay = self.backoff.failed(addr, now)
        self.stats["dial_failures"] += 1
        self.scores.for_update(score_key(node_id, addr)).handshake(False, now)
        if handshake:
            self.telemetry.metric("handshake_failed", reason)
            self.handler.misbehaving(
                Misbehaviour.HANDSHAKE_FAILURE, None, addr[0], f"outbound handshake: {reason}"
            )
        log.debug("dial %s failed (%s); next try in %.1fs", join_addr(addr), reason, delay)

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
            self.telemetry.metric("refused", "banned")
            self.telemetry.metric("dropped", "banned")
            await stream.close()
            return
        if not self._conn_buckets.take(host):  # one bucket per peer network (IPv6: its /64)
            self.stats["refused_rate"] += 1
            self.telemetry.metric("refused", "rate")
            self.handler.misbehaving(
                Misbehaviour.FLOODING, None, host, "connection rate above the limit"
            )
            await stream.close()
            return
        if self._pending_in >= self.tuning.max_pending_inbound:
            self.stats["refused_busy"] += 1
            self.telemetry.metric("refused", "busy")
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
                self.telemetry.metric("handshake_failed", exc.reason)
                self.scores.for_update(join_addr((host, port))).handshake(False)
                self.handler.misbehaving(
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
            for raw, port in record_endpoints(rec):
                with contextlib.suppress(ValueError):
                    if endpoint_host(raw) == session.host:
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
            self.telemetry.metric("refused", "banned_id")
            self.telemetry.metric("dropped", "banned")
            self._spawn(session.close("banned"), "close")
            return
        rec = session.peer_record
        self.records.hold(rec)
        kind = KIND_NAMES[rec.kind]
        addr = session.addr if session.outbound else self._advertised_addr(session)
        key = score_key(nid, addr)
        score = self.scores.for_update(key)
        score.handshake(True, now)
        if session.outbound:
            self.backoff.succeeded(addr)
            self.book.good(addr, now)
            self.book.set_peer(addr, node_id=nid, kind=kind, services=rec.services)
        else:
            self.handler.add_record_endpoints(rec, session.host, announce=False)
        if feeler:
            self.stats["feelers"] += 1
            self._spawn(session.close("feeler done"), "close")
            return
        existing = self.table.by_id(nid)
        if existing is not None:
            # Both sides dialled each other at once. Both keep the connection opened by
            # the lower node id, so they agree and do not close both.
            lower_dialled_new = session.outbound == (self.own.identity.id < nid)
            self.stats["duplicates"] += 1
            self.telemetry.metric("refused", "duplicate")
            if existing.session.outbound != session.outbound and lower_dialled_new:
                self.table.drop(existing, "duplicate")
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
        if not session.outbound and self.policy.inbound_full(self.table.slots()):
            # As in Bitcoin Core the newcomer is not a candidate: it only needs a free
            # slot, and the lowest-score unprotected peer makes room for it.
            if not self.evict_inbound("inbound full", now):
                self.stats["refused_full"] += 1
                self.telemetry.metric("refused", "full")
                self._spawn(session.close("inbound full"), "close")
                return
        peer = ConnectedPeer(session, slot, key)
        self.table.add(peer)
        self.relay.add_peer(session)
        session.start()
        self.telemetry.metric("peer_connected", kind, direction)
        self.telemetry.emit(
            EventKind.CONNECTED,
            node_id=id_hex(nid),
            address=join_addr(addr),
            direction=direction,
            kind=kind,
            manual=manual,
        )
        if session.outbound:
            peer.pex_asked = True
            session.send(messages.PEX_REQUEST, {0: messages.PEX_WANT_MAX, 1: []}, PRIO_CONTROL)

    def evict_inbound(self, reason: str, now: float) -> bool:
        """Drop the inbound peer `ConnectionPolicy.inbound_to_evict` names; False if it
        names none (every inbound peer is protected)."""
        victim = self.policy.inbound_to_evict(self.table.slots(), now)
        if victim is None:
            return False
        for p in self.table:
            if p.slot is victim:
                self.stats["evicted"] += 1
                self.telemetry.emit(
                    EventKind.EVICTED,
                    node_id=id_hex(p.slot.node_id) if p.slot.node_id else None,
                    address=join_addr(p.slot.addr),
                    reason=reason,
                )
                self.table.drop(p, "evicted")
                return True
        return False

    # ---- departures ----------------------------------------------------------------------

    def _on_closed(self, session: PeerSession) -> None:
        peer = self.table.get(session.serial)
        if peer is not None:
            self.table.forget(peer, session.close_reason or "closed")

    def _departed(self, peer: ConnectedPeer, uptime_s: float) -> None:
        self.relay.remove_peer(peer.session)
        slot = peer.slot
        if (slot.outbound or slot.manual) and uptime_s < self.tuning.good_session_s:
            self.backoff.failed(slot.addr, time.time())
        self._wake.set()
