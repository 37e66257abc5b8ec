"""Connections of the peer manager: the listener, outbound dials, feelers, backoff.

`ConnectionsMixin` is the part of `manager.PeerManager` that opens and accepts TCP
connections, runs their handshakes and turns them into established peers:

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

Eviction decisions themselves are `pool.ConnectionPolicy`'s; this module applies them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time

from loragate.addrman import AddrRecord
from loragate.bans import Misbehaviour
from loragate.events import EventKind
from loragate.netgroup import LOCAL_GROUP, group_of
from loragate.peercore import (
    Addr,
    ConnectedPeer,
    endpoint_host,
    is_loopback,
    is_unspecified,
    join_addr,
    record_endpoints,
)
from loragate.peermessages import MessagesMixin
from loragate.pool import PeerSlot
from loragate.session import PRIO_CONTROL, HandshakeFailed, PeerSession
from loragate.transport import FrameStream
from lorawire import messages
from lorawire.frame import MAX_TCP_FRAME
from lorawire.identity import id_hex
from lorawire.record import KIND_NAMES

# One logger for the whole peer manager: log lines keep naming "loragate.manager".
log = logging.getLogger("loragate.manager")


class ConnectionsMixin(MessagesMixin):
    """Listener, dialer and the step from a handshake to an established peer."""

    # ---- slots -------------------------------------------------------------------------

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
        keys = [join_addr(rec.addr)]
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
            self._metric("dropped", "banned")
            await stream.close()
            return
        if not self._conn_buckets.take(host):  # one bucket per peer network (IPv6: its /64)
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
                self.score_for(join_addr((host, port))).handshake(False)
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
                        address=join_addr(p.slot.addr),
                        reason="inbound full",
                    )
                    self._drop(p, "evicted")
                    break
        peer = ConnectedPeer(session, slot, key)
        peer.last_score = slot.score
        self._peers[session.serial] = peer
        self._by_id[nid] = peer
        self.relay.add_peer(session)
        session.start()
        self._metric("peer_connected", kind, direction)
        self._emit(
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
