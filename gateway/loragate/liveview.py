"""The control socket's view of a running gateway (`view.GatewayView` over a PeerManager).

`RunningGatewayView(manager, bridge=..., metrics_url=...)` answers `peers`, `bans`,
`status`, `ban`, `unban`, `clear_bans`, `disconnect` and `connect` from the manager's
tables; the stopped gateway's answers come from `view.StoppedGatewayView`, with the same
keys and the same scores.

A connected peer's score is shown as the score it would keep if it left now (its
session's uptime and the valid messages not yet counted added, `peertable.
settled_score`): that is what the database holds for it after the gateway stops, so
`loragate peers` shows the same number before and after. `bridge` gives the bridge's
link state and duty-cycle figures (`mesh.side.MeshSide.bridge_info`) when a serial port
is configured. Each peer carries its misbehaviour points now (the larger of its node
id's and its address's) against the ban threshold.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from loragate.bans import net_target, node_target
from loragate.config import ConfigError, parse_endpoint
from loragate.manager import PeerManager
from loragate.peertable import group_text, join_addr, settled_score
from loragate.scoring import node_key
from loragate.view import (
    AirtimeInfo,
    BanInfo,
    ConnectInfo,
    CountInfo,
    PeerInfo,
    StatusInfo,
    UnbanInfo,
    ViewError,
    ban_info,
    check_duration,
    parse_ban_target,
    version,
)
from lorawire.identity import id_hex
from lorawire.record import KIND_NAMES

AIRTIME_WINDOW_S = 3600.0  # the duty-cycle window the bridge reports its budget over


def airtime_info(budget: dict[str, Any]) -> AirtimeInfo | None:
    """A bridge's budget figures as the status shows them (None before its stats)."""
    used, total = budget.get("airtime_used_ms"), budget.get("airtime_budget_ms")
    if used is None or total is None:
        return None
    return AirtimeInfo(used_ms=float(used), budget_ms=float(total), window_s=AIRTIME_WINDOW_S)


class RunningGatewayView:
    def __init__(
        self,
        manager: PeerManager,
        *,
        bridge: Callable[[], dict[str, Any] | None] | None = None,
        metrics_url: str | None = None,
    ) -> None:
        self.manager = manager
        self.bridge = bridge
        self.metrics_url = metrics_url

    def _points(self, node_id: bytes | None, host: str | None, now: float) -> float:
        bm = self.manager.banman
        points = 0.0
        if node_id is not None:
            points = bm.points(node_target(node_id), now)
        if host is not None:
            try:
                points = max(points, bm.points(net_target(host), now))
            except ValueError:
                pass
        return round(points, 1)

    async def peers(self) -> list[PeerInfo]:
        m = self.manager
        now = time.time()
        out: list[PeerInfo] = []
        for p in m.table:
            s = p.session
            score = settled_score(m.scores, p, now)
            out.append(
                PeerInfo(
                    node_id=id_hex(s.node_id) if s.node_id else None,
                    address=join_addr(p.slot.addr),
                    kind=p.slot.kind,
                    state="connected",
                    direction="out" if s.outbound else "in",
                    points=self._points(s.node_id, s.host, now),
                    ban_threshold=m.banman.policy.threshold,
                    manual=p.slot.manual,
                    score=None if score is None else round(score, 1),
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
        for mp in m.mesh_peers:
            if m.banman.is_banned(node_id=mp.record.id, now=now):
                continue  # banned since it was heard: no peer of ours
            held = m.scores.get(node_key(mp.record.id))
            out.append(
                PeerInfo(
                    node_id=id_hex(mp.record.id),
                    address=None,
                    kind=KIND_NAMES[mp.record.kind],
                    state="heard",
                    direction="mesh",
                    points=self._points(mp.record.id, None, now),
                    ban_threshold=m.banman.policy.threshold,
                    manual=False,
                    score=None if held is None else round(held.score(now), 1),
                    latency_ms=None,
                    rssi=mp.rssi,
                    snr=mp.snr,
                    hops=mp.hops,
                    connected_since=None,
                    last_seen=mp.last_seen,
                    bytes_in=0,
                    bytes_out=0,
                    group=f"mesh {mp.bridge_id.hex()}",
                )
            )
        return out

    async def bans(self) -> list[BanInfo]:
        banman = self.manager.banman
        now = time.time()
        active = [b for b in banman.bans() if b.active(now)]
        active.sort(key=lambda b: b.created, reverse=True)
        return [ban_info(b, list(reversed(banman.evidence(b.target)))) for b in active]

    async def status(self) -> StatusInfo:
        m = self.manager
        peers = list(m.table)
        kinds: Counter[str] = Counter(p.slot.kind for p in peers)
        dirs: Counter[str] = Counter("out" if p.slot.outbound else "in" for p in peers)
        now = time.time()
        mesh = [mp for mp in m.mesh_peers if not m.banman.is_banned(node_id=mp.record.id, now=now)]
        if mesh:
            dirs["mesh"] = len(mesh)
            for mp in mesh:
                kinds[KIND_NAMES[mp.record.kind]] += 1
        bridge = None if self.bridge is None else self.bridge()
        regular_out = sum(
            1 for p in peers if p.slot.outbound and not p.slot.feeler and not p.slot.manual
        )
        return StatusInfo(
            state="running",
            node_id=m.identity.hex_id(),
            version=version(),
            uptime_s=None if m.started_at is None else now - m.started_at,
            listen=join_addr(m.listen_addr),
            peers_total=len(peers) + len(mesh),
            peers_by_kind=dict(kinds),
            peers_by_direction=dict(dirs),
            addrman_new=m.book.new_count,
            addrman_tried=m.book.tried_count,
            bans_active=sum(1 for b in m.banman.bans() if b.active(now)),
            relayed=dict(m.relay.relayed),
            airtime=None if bridge is None else airtime_info(bridge),
            database=str(m.cfg.db_path),
            data_dir=str(m.cfg.data_dir),
            outbound=regular_out,
            outbound_target=m.cfg.outbound_target,
            inbound=sum(1 for p in peers if not p.slot.outbound),
            inbound_cap=m.cfg.inbound_cap,
            manual_peers=[join_addr(a) for a in m.manual_peers()],
            ban_threshold=m.banman.policy.threshold,
            bridge=bridge,
            metrics_url=self.metrics_url,
        )

    async def ban(self, target: str, duration_s: float | None, reason: str) -> BanInfo:
        parsed = parse_ban_target(target)
        check_duration(duration_s)
        ban = await self.manager.ban(parsed, duration_s, reason or "manual")
        evidence = list(reversed(self.manager.banman.evidence(parsed)))
        return ban_info(ban, evidence)

    async def unban(self, target: str) -> UnbanInfo:
        parsed = parse_ban_target(target)
        removed = await self.manager.unban(parsed)
        return UnbanInfo(target=str(parsed), removed=removed)

    async def clear_bans(self) -> CountInfo:
        return CountInfo(count=await self.manager.clear_bans())

    async def disconnect(self, target: str) -> CountInfo:
        """Drop the connection to a node id (16 hex digits) or an address (IP:PORT)."""
        node_id, addr = parse_peer(target)
        if node_id is not None and self.manager.mesh_peers.get(node_id) is not None:
            raise ViewError(
                f"{target} is a mesh node, heard through the bridge: there is no connection "
                "to drop (ban it to stop hearing it)"
            )
        dropped = self.manager.disconnect(node_id=node_id, addr=addr)
        return CountInfo(count=1 if dropped else 0)

    async def connect(self, address: str, remove: bool) -> ConnectInfo:
        try:
            addr = parse_endpoint(address, "address")
        except ConfigError as exc:
            raise ViewError(str(exc).removeprefix("config: ")) from None
        if remove:
            return ConnectInfo(address=join_addr(addr), added=self.manager.forget_manual(addr))
        return ConnectInfo(address=join_addr(addr), added=self.manager.connect(addr))


def parse_peer(text: str) -> tuple[bytes | None, tuple[str, int] | None]:
    """(node id, None) for 16 hex digits, (None, (host, port)) for IP:PORT; ViewError."""
    t = text.strip()
    if t.startswith("node:"):
        t = t[5:]
    if len(t) == 16:
        try:
            return bytes.fromhex(t), None
        except ValueError:
            pass
    try:
        return None, parse_endpoint(t, "peer")
    except ConfigError:
        raise ViewError(
            f"not a node id (16 hex digits) or an address (IP:PORT): {text!r}"
        ) from None
