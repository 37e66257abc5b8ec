"""Bans pushed to the bridge board, so it drops a banned node's frames.

BANNED/UNBANNED events of the manager's EventBus for node ids heard on the mesh (or
banned for mesh misbehaviour) become `link.ban(node_id, seconds)` / `link.unban`;
MeshLink keeps that list and re-pushes it after every bridge HELLO. At start the
active node bans that were earned on the mesh are pushed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from loragate.bans import Ban, BanManager
from loragate.events import Event, EventKind
from loragate.mesh.counters import MeshCounters
from loragate.mesh.link import MeshLink


class MeshBans:
    def __init__(
        self,
        link: MeshLink,
        banman: BanManager,
        counters: MeshCounters,
        *,
        knows: Callable[[bytes], bool],
        on_banned: Callable[[bytes], None],
    ) -> None:
        self.link = link
        self.banman = banman
        self.counters = counters
        self._knows = knows  # heard on the mesh
        self._on_banned = on_banned  # a mesh node was banned (its ban pushed)

    def push(self, node_id: bytes, ban: Ban | None) -> None:
        if ban is None:
            return
        seconds: int | None = None
        if ban.until is not None:
            left = ban.until - time.time()
            if left <= 0:
                return
            seconds = max(1, math.ceil(left))
        self.link.ban(node_id, seconds)
        self.counters.count("bans_pushed")

    def push_if_missing(self, node_id: bytes) -> None:
        """A banned node's frame arrived: the bridge lacks its ban, push it."""
        if not self.link.is_banned(node_id):
            self.push(node_id, self.banman.find_ban(node_id=node_id))

    def push_mesh_bans(self) -> None:
        now = time.time()
        for ban in self.banman.bans():
            t = ban.target
            if t.kind == "node" and ban.active(now) and "mesh" in (ban.reason or ""):
                self.push(bytes.fromhex(t.value), ban)

    def on_event(self, ev: Event) -> None:
        if ev.kind not in (EventKind.BANNED, EventKind.UNBANNED):
            return
        target = str(ev.details.get("target", ""))
        if not target.startswith("node:"):
            return
        try:
            node_id = bytes.fromhex(target[5:])
        except ValueError:
            return
        if len(node_id) != 8:
            return
        if ev.kind == EventKind.BANNED:
            if self._knows(node_id) or "mesh" in str(ev.details.get("reason", "")):
                self.push(node_id, self.banman.find_ban(node_id=node_id))
                self._on_banned(node_id)
        elif self.link.is_banned(node_id):
            self.link.unban(node_id)
            self.counters.count("unbans_pushed")
