"""What peers tell the gateway: session messages, PEX, records, and misbehaviour into bans.

`MessageHandler` is the peer manager's protocol logic (Bitcoin Core's `PeerManager`
beside `CConnman`): it opens no connection and owns no socket. It takes

* established sessions' messages (`on_message`, installed on every session by the
  connector): PONG feeds the latency score; INV / GETDATA / TX / BLOCK go to the relay;
  PEX_REQUEST is answered (rate-limited per peer in the session) with signed records:
  ours first, then records we verified ourselves (handshakes, PEX, mesh announcements);
  records received (PEX_RESPONSE after our request, ANNOUNCE) are verified (bad
  signature: BAD_SIGNATURE points for the sender) and their endpoints go to the address
  book with the sender's address as source;
* discovery's addresses (`add_addresses`) and the mesh wing's verified announcements
  (`add_mesh_announcement`);
* the relay's reports, as listeners on it: response times and useful deliveries for
  the sender's score and eviction protection, FLOODING and INVALID_SYNC_DATA for the
  TCP peers (the mesh wing charges its own nodes);
* misbehaviour (`misbehaving`) from sessions, the relay and the mesh wing, which goes to
  the `BanManager` (node id and address when the frame is attributed, else the address
  only). A ban drops every matching connected peer at once and is persisted by the store
  immediately.

It announces new book entries through `on_new_addresses` (the connector dials sooner).
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from loragate.addrman import AddrMan
from loragate.bans import Ban, BanManager, BanTarget, Misbehaviour
from loragate.events import EventKind
from loragate.listeners import Listeners
from loragate.ownnode import OwnNode
from loragate.peertable import (
    ConnectedPeer,
    MeshPeer,
    MeshPeerTable,
    PeerTable,
    RecordTable,
    ScoreTable,
    endpoint_host,
    join_addr,
    record_endpoints,
)
from loragate.relay import RELAY_TYPES, Relay, RelayPeer
from loragate.scoring import node_key
from loragate.session import PRIO_TX, PeerSession
from loragate.telemetry import Telemetry
from loragate.tuning import ManagerTuning
from lorawire import messages
from lorawire import record as wrecord
from lorawire.identity import id_hex
from lorawire.record import KIND_NAMES, Record, RecordError

log = logging.getLogger(__name__)


class MessageHandler:
    def __init__(
        self,
        own: OwnNode,
        tuning: ManagerTuning,
        *,
        table: PeerTable,
        scores: ScoreTable,
        records: RecordTable,
        mesh_peers: MeshPeerTable,
        book: AddrMan,
        banman: BanManager,
        relay: Relay,
        telemetry: Telemetry,
        stats: Counter[str],
        rng: random.Random,
    ) -> None:
        self.own = own
        self.tuning = tuning
        self.table = table
        self.scores = scores
        self.records = records
        self.mesh_peers = mesh_peers
        self.book = book
        self.banman = banman
        self.relay = relay
        self.telemetry = telemetry
        self.stats = stats
        self._rng = rng
        self.on_new_addresses: Listeners[[]] = Listeners("on_new_addresses", log)
        relay.on_object.add(self._on_object)
        relay.on_invalid.add(self._on_invalid_object)
        relay.on_flooding.add(self._on_relay_flooding)
        relay.on_response.add(self._on_response)
        relay.on_useful.add(self._on_useful)

    # ---- session messages ----------------------------------------------------------

    def on_message(self, session: PeerSession, msg_type: int, value: Any, data: bytes) -> None:
        peer = self.table.get(session.serial)
        if peer is None:
            return
        peer.valid += 1
        self.telemetry.metric("frame_in", len(data))
        handle = HANDLERS.get(msg_type)
        if handle is not None:
            handle(self, peer, value)
        elif msg_type in RELAY_TYPES:
            self.relay.handle(session, msg_type, value)

    def _on_pong(self, peer: ConnectedPeer, value: Any) -> None:
        session = peer.session
        if session.latency_ms is not None:
            self.scores.for_update(peer.score_key).latency(session.latency_ms)
        peer.slot.min_ping_ms = session.min_ping_ms

    def _on_pex_response(self, peer: ConnectedPeer, value: Any) -> None:
        if peer.pex_asked:
            peer.pex_asked = False
            for rv in value[0]:
                if not self._take_record(rv, peer):
                    break

    def _on_announce(self, peer: ConnectedPeer, value: Any) -> None:
        self._take_record(value, peer)

    def on_session_misbehaviour(
        self,
        session: PeerSession,
        kind: Misbehaviour,
        reason: str,
        attributed: bool,
        msg_type: int | None,
        data: bytes | None,
    ) -> None:
        node = session.node_id if attributed else None
        self.misbehaving(kind, node, session.host, reason, msg_type, data)

    def _answer_pex(self, peer: ConnectedPeer, value: dict[int, Any]) -> None:
        want = min(int(value[0]), self.tuning.pex_answer_max, messages.PEX_RECORDS_MAX)
        have = {bytes(p) for p in value[1]}
        exclude = peer.session.node_id
        out: list[Record] = []
        own = self.own.record
        if own is not None and own.id[: messages.PREFIX_LEN] not in have:
            out.append(own)
        pool = [
            r
            for r in self.records.values()
            if r.endpoints and r.id != exclude and r.id[: messages.PREFIX_LEN] not in have
        ]
        room = max(0, want - len(out))
        out.extend(self._rng.sample(pool, min(room, len(pool))))
        peer.session.send(messages.PEX_RESPONSE, {0: [r.value for r in out]}, PRIO_TX)

    def _take_record(self, value: Any, peer: ConnectedPeer) -> bool:
        """Verify a record a peer sent; False if the peer was punished (stop reading)."""
        session = peer.session
        try:
            rec = wrecord.decode_record(value)
            if rec.id == self.own.identity.id:
                return True
            rec = wrecord.verify_record(rec, held=self.records.get(rec.id))
        except RecordError as exc:
            if exc.reason == wrecord.BAD_SIGNATURE:
                kind = Misbehaviour.BAD_SIGNATURE
            elif exc.reason == wrecord.MALFORMED:
                kind = Misbehaviour.MALFORMED_FRAME
            else:
                return True  # stale or duplicate: nobody's provable fault
            self.misbehaving(kind, session.node_id, session.host, f"peer record: {exc.reason}")
            return False
        self.records.hold(rec)
        self.add_record_endpoints(rec, session.host)
        return True

    def add_record_endpoints(self, rec: Record, source: str | bytes, announce: bool = True) -> int:
        """A verified record's endpoints into the book (source: who told us); how many
        were new. `announce`: publish DISCOVERED for each."""
        added = 0
        kind = KIND_NAMES[rec.kind]
        for raw, port in record_endpoints(rec):
            try:
                addr = (endpoint_host(raw), int(port))
                if addr == self.own.listen_addr:
                    continue
                if self.book.add(addr, source, kind=kind, services=rec.services, node_id=rec.id):
                    added += 1
                    if announce:
                        self.telemetry.emit(
                            EventKind.DISCOVERED,
                            address=join_addr(addr),
                            node_id=id_hex(rec.id),
                            kind=kind,
                            source=source.hex() if isinstance(source, bytes) else source,
                        )
            except ValueError:
                continue
        if added:
            self.on_new_addresses()
        return added

    # ---- discovery and the mesh wing ----------------------------------------------

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
                    self.telemetry.emit(
                        EventKind.DISCOVERED,
                        address=join_addr((host, int(port))),
                        kind=kind,
                        source=src,
                    )
            except ValueError:
                continue
        if added:
            self.on_new_addresses()
        return added

    def add_mesh_announcement(
        self,
        record: Record | bytes | dict[int, Any],
        bridge_id: bytes,
        rssi: float | None,
        snr: float | None,
        hops: int,
    ) -> Record | None:
        """A peer record heard on the mesh through bridge `bridge_id`; the Record if it
        verified (stale, duplicate or bad records return None)."""
        try:
            rec = record if isinstance(record, Record) else wrecord.decode_record(record)
            if rec.id == self.own.identity.id:
                return None
            held = self.records.get(rec.id)
            if held is not None and held.encoded == rec.encoded:
                rec = held  # a re-heard copy: refresh the link data only
            else:
                rec = wrecord.verify_record(rec, held=held)
        except RecordError:
            self.stats["mesh_records_refused"] += 1
            return None
        now = time.time()
        self.records.hold(rec)
        self.mesh_peers.heard(MeshPeer(rec, bytes(bridge_id), rssi, snr, hops, now))
        if rssi is not None and snr is not None:
            self.scores.for_update(node_key(rec.id)).link(rssi, snr, now)
        if not self.add_record_endpoints(rec, bytes(bridge_id)) and held is None:
            self.telemetry.emit(
                EventKind.DISCOVERED,
                node_id=id_hex(rec.id),
                kind=KIND_NAMES[rec.kind],
                source="mesh",
                bridge=bytes(bridge_id).hex(),
                hops=hops,
            )
        return rec

    # ---- relay reports ---------------------------------------------------------------

    def _on_object(self, kind: str, payload: bytes, source: RelayPeer | None) -> None:
        self.telemetry.metric("relayed", kind)

    def _on_invalid_object(self, peer: RelayPeer, kind: str, reason: str) -> None:
        if self.table.get(peer.serial) is None:
            return  # not one of our TCP peers: the mesh wing judges its own
        self.misbehaving(Misbehaviour.INVALID_SYNC_DATA, peer.node_id, peer.host, reason)

    def _on_relay_flooding(self, peer: RelayPeer, what: str) -> None:
        self.misbehaving(Misbehaviour.FLOODING, peer.node_id, peer.host, what)

    def _on_response(self, peer: RelayPeer, ms: float) -> None:
        cp = self.table.get(peer.serial)
        if cp is not None:
            self.scores.for_update(cp.score_key).response_time(ms)

    def _on_useful(self, peer: RelayPeer, kind: str) -> None:
        cp = self.table.get(peer.serial)
        if cp is None:
            return
        if kind == "block":
            cp.slot.last_block_at = time.time()
        else:
            cp.slot.last_tx_at = time.time()

    # ---- misbehaviour and bans -----------------------------------------------------

    def misbehaving(
        self,
        kind: Misbehaviour,
        node_id: bytes | None,
        host: str | None,
        reason: str,
        msg_type: int | None = None,
        data: bytes | None = None,
    ) -> list[Ban]:
        """Points for a misbehaviour (see the module docstring); the bans it caused."""
        self.stats[f"misbehaviour_{kind.value}"] += 1
        self.telemetry.metric("misbehaviour", kind.value, self.banman.policy.points.get(kind, 0))
        if node_id is not None:
            self.scores.for_update(node_key(node_id)).message(False)
        try:
            new = self.banman.misbehaving(
                kind, node_id=node_id, host=host, msg_type=msg_type, reason=reason, frame=data
            )
        except ValueError:
            return []
        for ban in new:
            self.apply_ban(ban)
        return new

    def mesh_heard(self, node_id: bytes) -> None:
        self.mesh_peers.touch(node_id, time.time())

    def apply_ban(self, ban: Ban) -> None:
        """Drop every connected peer the ban covers (a mesh node leaves the mesh peers),
        announce it."""
        for peer in self.table:
            if _covered(ban.target, peer):
                self.table.drop(peer, "banned")
        if ban.target.kind == "node":
            self.mesh_peers.forget(bytes.fromhex(ban.target.value))
        self.telemetry.emit(
            EventKind.BANNED,
            target=str(ban.target),
            reason=ban.reason,
            until=ban.until,
            count=ban.count,
            manual=ban.manual,
        )
        self.telemetry.metric("set_bans", len(self.banman))

    def lift_ban(self, target: BanTarget, reason: str) -> bool:
        """Remove a ban now; False if there was none."""
        removed = self.banman.unban(target)
        if removed:
            self.telemetry.emit(EventKind.UNBANNED, target=str(target), reason=reason)
            self.telemetry.metric("set_bans", len(self.banman))
        return removed


def _covered(target: BanTarget, peer: ConnectedPeer) -> bool:
    if target.kind == "node":
        return peer.session.node_id is not None and peer.session.node_id.hex() == target.value
    try:
        return ipaddress.ip_address(peer.session.host) in target.network
    except ValueError:
        return False


# What the peer manager does with each message type from a TCP peer, after the session
# (session.SESSION_TYPES) and before the relay (relay.RELAY_TYPES); the types a TCP peer
# has no business sending are in NOT_ON_TCP. tests/test_dispatch.py checks that every
# type lorawire.messages knows is in exactly one of them.
HANDLERS: dict[int, Callable[[MessageHandler, ConnectedPeer, Any], None]] = {
    messages.PONG: MessageHandler._on_pong,
    messages.PEX_REQUEST: MessageHandler._answer_pex,
    messages.PEX_RESPONSE: MessageHandler._on_pex_response,
    messages.ANNOUNCE: MessageHandler._on_announce,
}
NOT_ON_TCP: dict[int, str] = {
    messages.ACK: "acknowledges a LoRa unicast; TCP is reliable",
    messages.FRAGMENT: "a TCP frame carries a whole message",
    messages.REJECT: "accepted and ignored: the gateway sends none and acts on none",
    messages.UART_LINK: "the bridge board's UART only",
}
