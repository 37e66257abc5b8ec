"""The control socket's view of a running gateway (`view.GatewayView` over a PeerManager).

`RunningGatewayView(manager, airtime=...)` answers `peers`, `bans`, `status`, `ban` and
`unban` from the manager's tables; the stopped gateway's answers come from
`view.StoppedGatewayView`, with the same keys and the same scores.

A connected peer's score is shown as the score it would keep if it left now (its
session's uptime and the valid messages not yet counted added, `peertable.
settled_score`): that is what the database holds for it after the gateway stops, so
`loragate peers` shows the same number before and after. `airtime` gives the bridge's
duty-cycle figures (the mesh wing's link budget) when a bridge is attached.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from loragate.manager import PeerManager
from loragate.peertable import group_text, join_addr, settled_score
from loragate.scoring import node_key
from loragate.view import (
    AirtimeInfo,
    BanInfo,
    PeerInfo,
    StatusInfo,
    UnbanInfo,
    ban_info,
    check_duration,
    parse_ban_target,
    version,
)
from lorawire.identity import id_hex
from lorawire.record import KIND_NAMES

AIRTIME_WINDOW_S = 3600.0  # the duty-cycle window the bridge reports its budget over


def airtime_info(budget: dict[str, Any]) -> AirtimeInfo | None:
    """A bridge link's budget figures as the status shows them (None before its stats)."""
    used, total = budget.get("airtime_used_ms"), budget.get("airtime_budget_ms")
    if used is None or total is None:
        return None
    return AirtimeInfo(used_ms=float(used), budget_ms=float(total), window_s=AIRTIME_WINDOW_S)


class RunningGatewayView:
    def __init__(
        self, manager: PeerManager, *, airtime: Callable[[], AirtimeInfo | None] | None = None
    ) -> None:
        self.manager = manager
        self.airtime = airtime

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
            held = m.scores.get(node_key(mp.record.id))
            out.append(
                PeerInfo(
                    node_id=id_hex(mp.record.id),
                    address=None,
                    kind=KIND_NAMES[mp.record.kind],
                    state="connected",
                    direction="mesh",
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
        mesh = list(m.mesh_peers)
        if mesh:
            dirs["mesh"] = len(mesh)
            for mp in mesh:
                kinds[KIND_NAMES[mp.record.kind]] += 1
        now = time.time()
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
            airtime=None if self.airtime is None else self.airtime(),
            database=str(m.cfg.db_path),
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
