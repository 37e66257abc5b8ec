"""The peer manager: connections in and out, peer exchange, scoring, bans, relay.

`PeerManager(cfg, identity, store)` ties the parts together. It is composed of one
mixin per module over the shared state in `peercore.ManagerCore`; each module's
docstring describes its part:

* `connections`: the listener (rate limit, pending cap, inbound eviction), the
  outbound loop, manual peers, feelers, backoff, the step to an established peer.
* `peermessages`: PEX, records, discovery and mesh entry points, relay callbacks,
  misbehaviour and bans.
* `maintenance`: the periodic pass and the batched persistence.
* `peercore`: tuning, the peer table, scoring, metrics and events.

This module keeps the life cycle and:

* **Own record**: kind gateway, endpoint = the bound listen address, sequence number
  kept in the store's kv table (`record_seq`), one higher at every start.

It implements `view.GatewayView` for the control socket. `run_gateway(cfg)` (in
`runner`, re-exported here) is the whole process: key, store, manager, control socket,
metrics, until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import time
from collections import Counter
from typing import Any

from loragate.addrman import load_addrman
from loragate.bans import parse_target
from loragate.config import GatewayConfig
from loragate.connections import ConnectionsMixin
from loragate.events import EventBus, EventKind
from loragate.maintenance import MaintenanceMixin
from loragate.peercore import (
    Addr,
    ManagerTuning,
    MeshPeer,
    group_text,
    is_unspecified,
    join_addr,
)
from loragate.pool import PeerSlot
from loragate.relay import Relay, Validator
from loragate.runner import run_gateway
from loragate.scoring import PeerScore
from loragate.session import PeerSession, cancel_all
from loragate.store import AsyncStore
from loragate.validation import DefaultValidator
from loragate.view import (
    AirtimeInfo,
    BanInfo,
    PeerInfo,
    StatusInfo,
    UnbanInfo,
    ViewError,
    ban_info,
    check_target,
    evidence_info,
    version,
)
from lorawire import record as wrecord
from lorawire.identity import Identity, id_hex
from lorawire.record import KIND_NAMES

__all__ = [
    "OWN_SERVICES",
    "RECORD_SEQ_KEY",
    "Addr",
    "ManagerTuning",
    "MeshPeer",
    "PeerManager",
    "evidence_info",  # re-exported for callers that format ban evidence
    "run_gateway",
]

log = logging.getLogger(__name__)

RECORD_SEQ_KEY = "record_seq"
OWN_SERVICES = wrecord.SVC_RELAY | wrecord.SVC_PEX | wrecord.SVC_BRIDGE


class PeerManager(ConnectionsMixin, MaintenanceMixin):
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
        super().__init__(cfg, identity, store, metrics, bus, tuning=tuning, rng=rng)
        self.relay = Relay(
            validator=DefaultValidator(cfg.relay, validator),
            on_invalid=self._on_invalid_object,
            on_response=self._on_response,
            on_useful=self._on_useful,
            on_flooding=self._on_relay_flooding,
            on_object=self._on_object,
            limits=self.tuning.relay,
        )

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
        if not is_unspecified(self.listen_addr[0]):
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
        log.info("gateway %s listening on %s", self.identity.hex_id(), join_addr(self.listen_addr))

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
                    address=join_addr(p.slot.addr),
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
                    group=group_text(p.slot.group),
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
            listen=join_addr(self.listen_addr),
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
