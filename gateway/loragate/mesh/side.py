"""`MeshSide`: the mesh wing's parts, built over one bridge link and hooked in.

`MeshSide(cfg, host, link)` builds the wing (see the package docstring for the parts)
between a `link.MeshLink` (frames up from the bridge radio, frames down through a
`shaper.MeshShaper`) and the gateway's peer manager, seen as a `host.MeshHost`.
`start()` registers listeners: on the link (frames, HELLO, stats), on the relay (new
objects to offer, invalid objects from the mesh; the mesh's seat as one relay peer) and
on the event bus (bans to push); `close()` removes every one of them. Nothing is
replaced, so the manager and other listeners keep working unchanged.

Send: every frame goes through the shaper (bounded queue, priorities, deadlines, the
duty-cycle budget the bridge reports). Priorities: control (ACK, PONG, GETDATA) >
blocks and block INVs > transactions > gossip (tx INVs, announces).

Everything dropped is counted in `counters` and in the metrics
(`metrics.dropped("mesh_...")`); the shaper's own drops are mirrored there as
`mesh_shaper_<reason>` every `sync_interval_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from loragate.config import GatewayConfig
from loragate.events import EventKind
from loragate.mesh.announce import MeshAnnouncer
from loragate.mesh.bans import MeshBans
from loragate.mesh.counters import MeshCounters
from loragate.mesh.downlink import DownlinkBudget
from loragate.mesh.frames import MeshFramer
from loragate.mesh.host import MeshHost
from loragate.mesh.link import MeshLink
from loragate.mesh.offers import MeshOffers
from loragate.mesh.peers import MeshPeers
from loragate.mesh.receive import MeshBlame, MeshReceiver, Replier
from loragate.mesh.relay import MeshRelay
from loragate.mesh.shaper import MeshShaper
from loragate.mesh.tuning import MeshTuning
from lorawire import auth

log = logging.getLogger(__name__)

SMALL_FRAME = 64  # bytes: a budget without room for one of these is exhausted


class MeshSide:
    def __init__(
        self,
        cfg: GatewayConfig,
        host: MeshHost,
        link: MeshLink,
        *,
        shaper: MeshShaper | None = None,
        tuning: MeshTuning | None = None,
        rng: random.Random | None = None,
        own_link: bool = False,
    ) -> None:
        self.host = host
        self.identity = host.identity
        self.link = link
        self._own_link = own_link  # close() closes the link too
        self.tuning = t = tuning or MeshTuning()
        self._own_shaper = shaper is None
        self.shaper = shaper if shaper is not None else MeshShaper(link, capacity=t.shaper_capacity)
        rng = rng or random.Random()
        network_key = cfg.network_key_bytes()
        self.stats = MeshCounters(host.telemetry)
        self.counters = self.stats.counters
        self.peers = MeshPeers(t.records_max, t.heard_max, on_evict=self._forget_key)
        self.link_keys = auth.LinkKeyCache(self.identity, t.link_keys, lookup=self.peers.public_of)
        self.framer = MeshFramer(
            self.identity, network_key, host.store, t.seq_block, rng.randrange(0x10000), self._spawn
        )
        self.blame = MeshBlame(host, self.peers, self.stats)
        self.relay = MeshRelay(
            host.relay,
            self.framer,
            self.shaper,
            self.link_keys,
            t,
            self.stats,
            submit=self.submit,
            charge=self.blame.charge,
        )
        self.downlink = DownlinkBudget(
            link,
            self.stats,
            host.telemetry,
            reserve_share=t.downlink_reserve_share,
            commit_s=t.downlink_commit_s,
            acks_per_object=t.downlink_acks_per_object,
            report_s=t.downlink_report_s,
            port=str(link.serial.port),
        )
        self.offers = MeshOffers(
            self.relay, self.framer, t, self.stats, submit=self.submit, budget=self.downlink
        )
        self.bans = MeshBans(
            link,
            host.banman,
            self.stats,
            knows=self.peers.knows,
            on_banned=self._forget_banned,
        )
        self.announcer = MeshAnnouncer(
            self.framer,
            t,
            rng,
            self.stats,
            record=lambda: host.record,
            ready=lambda: self.link.ready,
            submit=self.submit,
        )
        self.receiver = MeshReceiver(
            host,
            network_key,
            t,
            self.stats,
            peers=self.peers,
            link_keys=self.link_keys,
            bans=self.bans,
            relay=self.relay,
            blame=self.blame,
            replier=Replier(self.framer, self.link_keys, t, self.stats, self.submit),
            newcomer=lambda: self.announcer.schedule(t.announce_first_s),
        )
        self._shaper_seen: Counter[str] = Counter()
        self.budget_exhausted = False
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._removers: list[Callable[[], None]] = []
        self._started = False

    @property
    def bridge_id(self) -> bytes:
        return self.receiver.bridge_id

    # ---- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Load the frame sequence, register the listeners, start the loops. Call after
        the manager started (our record comes from there)."""
        if self._started:
            raise RuntimeError("MeshSide already started")
        self._started = True
        await self.framer.load_seq()
        link, relay = self.link, self.host.relay
        self._removers = [
            link.on_frame.add(self.receiver.on_frame),
            link.on_hello.add(self._on_hello),
            link.on_stats.add(self._on_stats),
            link.on_link.add(self._on_link),
            relay.on_object.add(self.offers.on_object),
            self.host.telemetry.bus.add_callback(self.bans.on_event),
        ]
        self.relay.attach()
        if link.board is not None:
            self.receiver.bridge_id = bytes(link.board.get("node_id", self.bridge_id))
        self.bans.push_mesh_bans()
        self.stats.metric("set_bridge", self.port, link.ready)
        if self._own_shaper:
            await self.shaper.start()
        if link.ready:
            self.announcer.schedule(self.tuning.announce_first_s)
        self._tasks = [
            asyncio.create_task(self.announcer.loop(), name="mesh-announce"),
            asyncio.create_task(self.offers.loop(), name="mesh-inv"),
            asyncio.create_task(self._sync_loop(), name="mesh-sync"),
        ]

    async def close(self) -> None:
        for task in self._tasks + list(self._spawned):
            task.cancel()
        for task in self._tasks + list(self._spawned):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._own_shaper:
            await self.shaper.close()
        for remove in self._removers:
            remove()
        self._removers.clear()
        if self._started:
            self.relay.detach()
            self.sync_metrics()
        if self._own_link:
            await self.link.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    # ---- counters and metrics ------------------------------------------------------------

    def sync_metrics(self) -> None:
        """Mirror the shaper's drop counters into the counters and metrics (as deltas)."""
        for reason, n in self.shaper.stats.dropped.items():
            delta = n - self._shaper_seen[reason]
            if delta > 0:
                self._shaper_seen[reason] = n
                self.stats.count("dropped_shaper_" + reason, delta)
                self.stats.metric("dropped", "mesh_shaper_" + reason, delta)

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tuning.sync_interval_s)
            self.sync_metrics()
            self.check_budget()
            self.downlink.report()
            self.receiver.expire()

    # ---- the bridge's link and budget, as an operator sees them ------------------------------

    @property
    def port(self) -> str:
        return str(self.link.serial.port)

    def _on_link(self, up: bool, why: str) -> None:
        self.stats.metric("set_bridge", self.port, up)
        info = self.link.link_info()
        if up:
            self.host.telemetry.emit(
                EventKind.BRIDGE_UP,
                port=self.port,
                board=info["board_id"],
                firmware=info["firmware"],
            )
        else:
            self.host.telemetry.emit(EventKind.BRIDGE_DOWN, port=self.port, why=why)

    def check_budget(self) -> None:
        """Say once when the bridge's duty-cycle budget has no room for a small frame any
        more (the board deferred a frame, or its stats say so), and once when it returns."""
        link = self.link
        used, budget = link.airtime_used_ms, link.airtime_budget_ms
        if used is None or budget is None or not link.ready:
            return
        small = link.airtime_estimate_ms(SMALL_FRAME)
        at = link.budget_returns_at
        returns = None if at is None else at - link.clock()
        deferred = returns is not None and returns > 0
        left = budget - used
        if self.budget_exhausted == (left < small or deferred):
            return
        if not self.budget_exhausted or (not deferred and left >= 2 * small):
            self.budget_exhausted = not self.budget_exhausted
            kind = (
                EventKind.BUDGET_EXHAUSTED if self.budget_exhausted else EventKind.BUDGET_RETURNED
            )
            self.host.telemetry.emit(
                kind,
                port=self.port,
                used_s=used / 1000,
                budget_s=budget / 1000,
                returns_in_s=returns if self.budget_exhausted else None,
            )

    def bridge_info(self) -> dict[str, Any]:
        """The bridge for `loragate status`: its link (mesh.link.MeshLink.link_info), the
        budget state and what the downlink queued, offered and refused."""
        info = self.link.link_info()
        info["budget_exhausted"] = self.budget_exhausted
        info["downlink"] = self.downlink_counts()
        return info

    def downlink_counts(self) -> dict[str, Any]:
        """What went down and what did not: frames the shaper sent and holds, objects
        offered by INV, objects refused before any INV (by reason: `budget`, `backlog`,
        `origin_rate`, `too_large`) and frames the shaper dropped (by reason)."""
        c = self.counters
        refused = dict(self.downlink.shed)
        for reason in ("origin_rate", "too_large"):
            if c["dropped_" + reason]:
                refused[reason] = c["dropped_" + reason]
        return {
            "queued": len(self.shaper),
            "offers_waiting": len(self.offers),
            "sent": self.shaper.stats.sent,
            "objects_offered": self.downlink.offered,
            "inv_items_offered": c["inv_items_queued"],
            "refused": sum(refused.values()),
            "refused_by_reason": refused,
            "shaper_dropped": dict(self.shaper.stats.dropped),
        }

    def status(self) -> dict[str, Any]:
        """Figures for the live view and tests."""
        sizes = self.peers.sizes()
        return {
            "bridge": self.bridge_id.hex(),
            "heard": sizes["heard"],
            "records": sizes["records"],
            "inv_pending": len(self.offers),
            "shaper": self.shaper.counters(),
            "budget": self.link.budget(),
            "counters": dict(self.counters),
        }

    # ---- mesh nodes --------------------------------------------------------------------------

    def _forget_key(self, node_id: bytes) -> None:
        self.link_keys.forget(node_id)

    def _forget_banned(self, node_id: bytes) -> None:
        self.peers.forget_record(node_id)
        self.link_keys.forget(node_id)

    def is_mesh_node(self, node_id: bytes) -> bool:
        return self.peers.knows(node_id)

    # ---- link listeners ----------------------------------------------------------------------

    def _on_hello(self, hello: dict[str, Any]) -> None:
        nid = hello.get("node_id")
        if isinstance(nid, bytes | bytearray) and len(nid) == 8:
            self.receiver.bridge_id = bytes(nid)
        self.announcer.schedule(self.tuning.announce_first_s)

    def _on_stats(self, stats: dict[str, Any]) -> None:
        used, budget = stats.get("airtime_used_ms"), stats.get("airtime_budget_ms")
        if isinstance(used, int) and isinstance(budget, int):
            self.stats.metric("set_airtime", self.port, used, budget)
        self.check_budget()

    # ---- send --------------------------------------------------------------------------------

    def submit(self, frame: bytes, priority: int) -> bool:
        """Queue one frame for the mesh through the shaper; False if it was dropped."""
        ok = self.shaper.submit(frame, priority)
        if ok:
            self.stats.count("frames_queued")
            self.stats.metric("frame_out", len(frame))
        return ok

    def announce_now(self) -> bool:
        """Queue our signed record as ANNOUNCE (network tag, gossip priority)."""
        return self.announcer.announce_now()
