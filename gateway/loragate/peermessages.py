"""Session messages of the peer manager: PEX, records, discovery, relay callbacks, bans.

`MessagesMixin` is the part of `manager.PeerManager` that handles what established
sessions, discovery and the mesh side hand to the manager:

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
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterable
from typing import Any

from loragate.bans import Ban, Misbehaviour
from loragate.events import EventKind
from loragate.peercore import (
    ConnectedPeer,
    ManagerCore,
    MeshPeer,
    endpoint_host,
    join_addr,
    record_endpoints,
)
from loragate.session import PRIO_TX, PeerSession
from lorawire import messages
from lorawire import record as wrecord
from lorawire.identity import id_hex
from lorawire.record import KIND_NAMES, Record, RecordError

# One logger for the whole peer manager: log lines keep naming "loragate.manager".
log = logging.getLogger("loragate.manager")


class MessagesMixin(ManagerCore):
    """Messages, records and misbehaviour: the manager's side of its sessions."""

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

    def _answer_pex(self, peer: ConnectedPeer, value: dict[int, Any]) -> None:
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

    def _take_record(self, value: Any, peer: ConnectedPeer) -> bool:
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
        for raw, port in record_endpoints(rec):
            try:
                host = endpoint_host(raw)
                addr = (host, int(port))
                if addr == self.listen_addr:
                    continue
                if self.book.add(addr, source, kind=kind, services=rec.services, node_id=rec.id):
                    added += 1
                    if announce:
                        self._emit(
                            EventKind.DISCOVERED,
                            address=join_addr(addr),
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
                        address=join_addr((host, int(port))),
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

    def _covered(self, ban: Ban, peer: ConnectedPeer) -> bool:
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
