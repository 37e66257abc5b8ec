"""The gateway's presence on the LoRa mesh, through a bridge board (docs/BRIDGE.md).

`MeshSide(cfg, identity, manager, link)` sits between a `meshlink.MeshLink` (frames up
from the bridge radio, frames down through a `meshlink.MeshShaper`) and the
`manager.PeerManager` (peer table, scores, bans, relay). It orchestrates small helpers:
`meshpeers.MeshPeers` (the mesh nodes heard and their verified records),
`meshframes.MeshFramer` (sealing, sequence numbers, fragmentation),
`meshannounce.MeshAnnouncer` (our record as ANNOUNCE), `meshrelay.MeshRelay` (the relay
between mesh and internet) and `meshbans.MeshBans` (bans pushed to the bridge).

Receive (`on_frame(frame, rssi, snr)`, installed as the link's `on_frame`):

1. A source banned by the manager's BanManager is dropped before anything else (no tag
   check, no decode) and its ban is pushed to the bridge if the bridge lacks it.
2. `lorawire.auth.open_frame` with the network key, a LinkKeyCache over the public keys
   of mesh records we verified, a ReplayTable and our id. Unattributed drops are
   counted (`mesh_<reason>`), attributed ones cost the source misbehaviour points
   (malformed body -> MALFORMED_FRAME, bad record signature -> BAD_SIGNATURE).
3. Accepted: ANNOUNCE / PEX_RESPONSE records are judged (auth.judge_record) and handed
   to `manager.add_mesh_announcement(record, bridge_id, rssi, snr, hops)`; INV, GETDATA,
   TX and BLOCK go into the manager's relay as coming from the mesh (see meshrelay).
   FRAGMENT frames are reassembled (fixed slots) and the inner message dispatched; it
   is attributed only if every fragment was. Unicasts to us are ACKed, PINGs PONGed.

Send (every frame through the MeshShaper: bounded queue, priorities, deadlines, the
duty-cycle budget the bridge reports):

* Our own signed record (kind gateway) as ANNOUNCE every `announce_interval_s`
  (jittered), shortly after the bridge's HELLO and whenever a mesh node we never heard
  of appears, never more often than `announce_min_gap_s` (meshannounce).
* Objects the relay accepts from internet peers are never pushed: they are *offered*
  by INV (flag BRIDGED), batched for `inv_delay_s`, each internet origin limited by a
  token bucket (`origin_rate_per_min`, meshrelay), the backlog bounded
  (`inv_pending_max`; a block evicts the oldest transaction, a transaction is refused
  when full).
* A mesh node that wants an object asks with GETDATA; the answer is served by
  meshrelay (BRIDGED broadcast, per-asker limit, dedupe), fragmented by meshframes.
* Priorities: control (ACK, PONG, GETDATA) > blocks and block INVs > transactions >
  gossip (tx INVs, announces).

Everything dropped is counted in `counters` and in the manager's metrics
(`metrics.dropped("mesh_...")`); the shaper's own drops are mirrored there as
`mesh_shaper_<reason>`.

Bans: see meshbans (BANNED/UNBANNED events become `link.ban` / `link.unban`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from loragate.bans import Misbehaviour
from loragate.config import GatewayConfig
from loragate.events import Event
from loragate.manager import PeerManager
from loragate.meshannounce import MeshAnnouncer
from loragate.meshbans import MeshBans
from loragate.meshframes import MAX_OBJECT_MESSAGE, MTU, MTU_BODY, SEQ_KEY, MeshFramer, fits
from loragate.meshlink import (
    PRIO_BLOCK,
    PRIO_CONTROL,
    PRIO_GOSSIP,
    MeshLink,
    MeshShaper,
)
from loragate.meshpeers import MeshPeers, mesh_key
from loragate.meshrelay import (
    D_NO_ROUTE,
    D_ORIGIN_RATE,
    D_QUEUE_FULL,
    D_REQUEST_RATE,
    D_TOO_LARGE,
    KIND_BLOCK,
    KIND_TX,
    MESH_RELAY_SERIAL,
    OBJ_TYPE,
    RELAY_TYPES,
    MeshRelay,
    MeshRelayPeer,
    take_bucket,
)
from loragate.ratelimit import TokenBucket
from loragate.relay import object_hash
from lorawire import auth, fragment, messages
from lorawire import frame as wframe
from lorawire import record as wrecord
from lorawire.errors import DecodeError
from lorawire.identity import Identity
from lorawire.record import Record
from lorawire.replay import ReplayTable

__all__ = [
    "D_BANNED",
    "D_INV_BACKLOG",
    "D_NO_ROUTE",
    "D_NOT_FOR_US",
    "D_ORIGIN_RATE",
    "D_QUEUE_FULL",
    "D_REASSEMBLY",
    "D_REPLY_RATE",
    "D_REQUEST_RATE",
    "D_TOO_LARGE",
    "KIND_BLOCK",
    "KIND_TX",
    "MAX_OBJECT_MESSAGE",
    "MESH_RELAY_SERIAL",
    "MTU",
    "MTU_BODY",
    "MeshRelayPeer",
    "MeshSide",
    "MeshTuning",
    "SEQ_KEY",
    "start_mesh",
]

log = logging.getLogger(__name__)

# Drop reasons of the receive path and the offer backlog (counters and metrics.dropped,
# prefixed "mesh_"; the relay's own are in meshrelay).
D_BANNED = "banned"
D_INV_BACKLOG = "inv_backlog"
D_REPLY_RATE = "reply_rate"
D_REASSEMBLY = "reassembly"
D_NOT_FOR_US = "not_for_us"


@dataclass
class MeshTuning:
    """Timings and bounds of the mesh side (tests shorten the timings)."""

    announce_interval_s: float = 900.0
    announce_jitter: float = 0.1
    announce_first_s: float = 2.0
    announce_min_gap_s: float = 60.0
    hop_limit: int = wframe.DEFAULT_HOP_LIMIT
    inv_delay_s: float = 2.0
    inv_pending_max: int = 64
    origin_rate_per_min: float = 6.0
    origin_burst: float = 6.0
    origins_max: int = 1024
    reply_rate_per_min: float = 12.0
    reply_burst: float = 4.0
    request_rate_per_min: float = 12.0
    request_burst: float = 4.0
    requesters_max: int = 256
    serve_dedupe_s: float = 30.0
    served_max: int = 256
    replay_sources: int = 256
    link_keys: int = 64
    records_max: int = 1024
    heard_max: int = 4096
    reassembly_slots: int = 8
    reassembly_timeout_ms: int = fragment.DEFAULT_TIMEOUT_MS
    seq_block: int = 256
    sync_interval_s: float = 1.0
    shaper_capacity: int = 64


class MeshSide:
    def __init__(
        self,
        cfg: GatewayConfig,
        identity: Identity,
        manager: PeerManager,
        link: MeshLink,
        *,
        shaper: MeshShaper | None = None,
        tuning: MeshTuning | None = None,
        rng: random.Random | None = None,
        own_link: bool = False,
    ) -> None:
        self.cfg = cfg
        self._own_link = own_link
        self.identity = identity
        self.manager = manager
        self.link = link
        self.tuning = t = tuning or MeshTuning()
        self._own_shaper = shaper is None
        self.shaper = shaper if shaper is not None else MeshShaper(link, capacity=t.shaper_capacity)
        self._rng = rng or random.Random()
        self.network_key = cfg.network_key_bytes()
        self.counters: Counter[str] = Counter()
        self.bridge_id: bytes = bytes(8)
        self.replay = ReplayTable(t.replay_sources)
        self.peers = MeshPeers(t.records_max, t.heard_max, on_evict=self._forget_key)
        self.link_keys = auth.LinkKeyCache(identity, t.link_keys, lookup=self.peers.public_of)
        self.reassembler = fragment.Reassembler(
            t.reassembly_slots, t.reassembly_timeout_ms, MAX_OBJECT_MESSAGE
        )
        self._frag_attr: OrderedDict[tuple[bytes, int], bool] = OrderedDict()
        self.framer = MeshFramer(
            identity,
            self.network_key,
            lambda: getattr(self.manager, "store", None),
            t.seq_block,
            self._rng.randrange(0x10000),
            self._spawn,
        )
        self.relay = MeshRelay(
            manager,
            self.framer,
            self.shaper,
            self.link_keys,
            t,
            self.counters,
            submit=self._submit,
            drop=self._drop,
            metric=self._metric,
            misbehaving=self._misbehaving,
        )
        self.relay_peer = self.relay.peer
        self.bans = MeshBans(
            link,
            manager,
            self.counters,
            knows=self.peers.knows,
            on_banned=self._forget_banned,
        )
        self._inv_pending: OrderedDict[bytes, int] = OrderedDict()  # hash -> kind code
        self._reply_buckets: OrderedDict[bytes, TokenBucket] = OrderedDict()
        self.announcer = MeshAnnouncer(
            self.framer,
            t,
            self._rng,
            self.counters,
            record=lambda: getattr(self.manager, "record", None),
            ready=lambda: self.link.ready,
            hops=self._hops,
            submit=self._submit,
        )
        self._shaper_seen: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._wake_inv = asyncio.Event()
        self._remove_bus_cb: Callable[[], None] | None = None
        self._prev: dict[str, Any] = {}
        self._started = False

    # The helpers' tables, under the names the tests and the live view know.
    @property
    def _records(self) -> OrderedDict[bytes, Record]:
        return self.peers.records

    @property
    def _heard(self) -> OrderedDict[bytes, int]:
        return self.peers.heard

    @property
    def _direct(self) -> OrderedDict[bytes, None]:
        return self.peers.direct

    # ---- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Load the frame sequence, hook into link, relay and events, start the loops.
        Call after `manager.start()` (our record comes from there)."""
        if self._started:
            raise RuntimeError("MeshSide already started")
        self._started = True
        await self._load_seq()
        link, m = self.link, self.manager
        self._prev = {
            "on_frame": link.on_frame,
            "on_hello": link.on_hello,
            "on_stats": link.on_stats,
            "on_object": m.on_object,
            "on_invalid": m.relay.on_invalid,
        }
        link.on_frame = self.on_frame
        link.on_hello = self._on_hello
        link.on_stats = self._on_stats
        m.on_object = self._on_object
        m.relay.on_invalid = self._on_invalid
        m.relay.add_peer(self.relay_peer)
        self._remove_bus_cb = m.bus.add_callback(self._on_event)
        if link.board is not None:
            self.bridge_id = bytes(link.board.get("node_id", self.bridge_id))
        self.bans.push_mesh_bans()
        if self._own_shaper:
            await self.shaper.start()
        if link.ready:
            self._schedule_announce(self.tuning.announce_first_s)
        self._tasks = [
            asyncio.create_task(self.announcer.loop(), name="mesh-announce"),
            asyncio.create_task(self._inv_loop(), name="mesh-inv"),
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
        if self._remove_bus_cb is not None:
            self._remove_bus_cb()
            self._remove_bus_cb = None
        if self._started:
            m = self.manager
            m.relay.remove_peer(self.relay_peer)
            if m.on_object == self._on_object:
                m.on_object = self._prev.get("on_object")
            if m.relay.on_invalid == self._on_invalid:
                m.relay.on_invalid = self._prev.get("on_invalid")
            link = self.link
            if link.on_frame == self.on_frame:
                link.on_frame = self._prev.get("on_frame")
            if link.on_hello == self._on_hello:
                link.on_hello = self._prev.get("on_hello")
            if link.on_stats == self._on_stats:
                link.on_stats = self._prev.get("on_stats")
            self._sync_metrics()
        if self._own_link:
            await self.link.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    # ---- counters and metrics ------------------------------------------------------------

    def _metric(self, name: str, *args: Any) -> None:
        metrics = getattr(self.manager, "metrics", None)
        fn = getattr(metrics, name, None) if metrics is not None else None
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.debug("metrics.%s failed", name, exc_info=True)

    def _drop(self, reason: str, n: int = 1) -> None:
        self.counters["dropped_" + reason] += n
        self._metric("dropped", "mesh_" + reason, n)

    def _sync_metrics(self) -> None:
        """Mirror the shaper's drop counters into metrics (as deltas)."""
        for reason, n in self.shaper.stats.dropped.items():
            delta = n - self._shaper_seen[reason]
            if delta > 0:
                self._shaper_seen[reason] = n
                self.counters["dropped_shaper_" + reason] += delta
                self._metric("dropped", "mesh_shaper_" + reason, delta)

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tuning.sync_interval_s)
            self._sync_metrics()
            self.reassembler.expire(_ms())

    def status(self) -> dict[str, Any]:
        """Figures for the live view and tests."""
        return {
            "bridge": self.bridge_id.hex(),
            "heard": len(self.peers.heard),
            "records": len(self.peers.records),
            "inv_pending": len(self._inv_pending),
            "shaper": self.shaper.counters(),
            "budget": self.link.budget(),
            "counters": dict(self.counters),
        }

    # ---- sequence numbers (meshframes) -----------------------------------------------------

    async def _load_seq(self) -> None:
        await self.framer.load_seq()

    def _next_seq(self) -> int:
        return self.framer.next_seq()

    # ---- mesh nodes --------------------------------------------------------------------------

    def _forget_key(self, node_id: bytes) -> None:
        self.link_keys.forget(node_id)

    def _forget_banned(self, node_id: bytes) -> None:
        self.peers.forget_record(node_id)
        self.link_keys.forget(node_id)

    def is_mesh_node(self, node_id: bytes) -> bool:
        return self.peers.knows(node_id)

    # ---- receive -------------------------------------------------------------------------

    def on_frame(self, data: bytes, rssi: int | float, snr: float) -> None:
        """One frame from the bridge radio (MeshLink's on_frame). Never raises."""
        try:
            self._receive(bytes(data), rssi, snr)
        except Exception:
            self.counters["errors"] += 1
            log.exception("mesh frame handling failed")

    def _receive(self, data: bytes, rssi: int | float, snr: float) -> None:
        self.counters["frames_in"] += 1
        self._metric("frame_in", len(data))
        try:
            src = bytes(wframe.peek_source(data))
        except DecodeError:
            self._drop(auth.R_BAD_FRAME)
            return
        if self.manager.banman.is_banned(node_id=src):
            self._drop(D_BANNED)
            self.bans.push_if_missing(src)
            return
        if (
            len(data) >= wframe.HEADER_UNICAST
            and data[0] & wframe.FLAG_DEST
            and data[0] & wframe.FLAG_LINK
            and data[11:19] != self.identity.id
        ):
            # A link-tagged unicast between two other nodes: we cannot check its tag.
            self._drop(D_NOT_FOR_US)
            return
        v = auth.open_frame(data, self.network_key, self.link_keys, self.replay, self.identity.id)
        if not v.accepted:
            self._rejected(v, data)
            return
        f = v.frame
        self.counters["accepted"] += 1
        self.peers.note_heard(src, f.hop_count)
        if v.attributed:
            self.manager.score_for(mesh_key(src)).message(True)
        if f.hop_count == 0 and src in self.peers.records:
            self.manager.score_for(mesh_key(src)).link(float(rssi), float(snr))
        if f.dest is not None and f.dest != self.identity.id:
            self.counters["overheard"] += 1
            return
        self._dispatch(v, f.type, v.value, data, rssi, snr, v.attributed)

    def _rejected(self, v: auth.Verdict, data: bytes) -> None:
        reason = v.reason or "unknown"
        if reason == auth.R_OWN_FRAME:
            self.counters["own_echo"] += 1  # our broadcast, relayed back by a neighbour
            return
        if v.kind == auth.DROP_ATTRIBUTED and v.frame is not None:
            kind = (
                Misbehaviour.BAD_SIGNATURE
                if reason == "record_" + wrecord.BAD_SIGNATURE
                else Misbehaviour.MALFORMED_FRAME
            )
            self._misbehaving(kind, bytes(v.frame.source), reason, v.frame.type, data)
            self._drop("attributed_" + reason)
            return
        self._drop(reason)

    def _misbehaving(
        self, kind: Misbehaviour, node_id: bytes, reason: str, msg_type: int | None, data: bytes
    ) -> None:
        """Points for a mesh node whose fault is proven (attributed)."""
        self.counters["misbehaviour_" + kind.value] += 1
        self.peers.note_heard(node_id, self.peers.hops_of(node_id))
        report = getattr(self.manager, "misbehaving", None) or self.manager._misbehaving
        report(kind, node_id, None, "mesh: " + reason, msg_type, data)

    def _dispatch(
        self,
        v: auth.Verdict,
        msg_type: int,
        value: Any,
        data: bytes,
        rssi: int | float,
        snr: float,
        attributed: bool,
    ) -> None:
        f = v.frame
        src = bytes(f.source)
        self.counters["rx_" + messages.type_name(msg_type).lower()] += 1
        if msg_type == messages.ANNOUNCE:
            self._on_record(v, value, src, data, rssi, snr, f.hop_count, direct=True)
        elif msg_type == messages.PEX_RESPONSE:
            for rv in value[0]:
                hops = f.hop_count + 1
                if not self._on_record(v, rv, None, data, rssi, snr, hops, direct=False):
                    break
        elif msg_type in RELAY_TYPES:
            if f.dest is not None:
                self._reply(f, messages.ACK, {0: f.seq})
            self.relay.to_relay(src, attributed, f.hop_count, msg_type, value, data)
        elif msg_type == messages.FRAGMENT:
            self._on_fragment(v, value, data, rssi, snr, attributed)
        elif msg_type == messages.PING and f.dest is not None:
            self._reply(f, messages.PONG, {0: value[0]})
        else:
            self.counters["ignored"] += 1

    def _on_record(
        self,
        v: auth.Verdict,
        value: Any,
        expected: bytes | None,
        data: bytes,
        rssi: int | float,
        snr: float,
        hops: int,
        *,
        direct: bool,
    ) -> bool:
        """Judge one record; False when its sender was charged (stop reading)."""
        try:
            rec = wrecord.decode_record(value)
        except DecodeError:
            rec = None
        if rec is not None and rec.id == self.identity.id:
            return True
        held = None if rec is None else self.peers.records.get(rec.id)
        if held is not None and rec is not None and held.encoded == rec.encoded:
            rec = held  # re-heard: no signature check, refresh the link data
        else:
            verdict, rec = auth.judge_record(v, held, expected, value)
            if rec is None:
                if verdict.kind == auth.DROP_ATTRIBUTED:
                    self._rejected(verdict, data)
                    return False
                self._drop(verdict.reason or "record")
                return True
            if held is None:
                # A node we never heard of may lack our record too (a single announce can
                # be lost to a collision): announce again soon, min gap permitting.
                self._schedule_announce(self.tuning.announce_first_s)
            self.peers.hold(rec)
        if not direct and rec.id in self.peers.direct:
            return True  # announced itself: a PEX copy must not overwrite its link data
        if self.manager.banman.is_banned(node_id=rec.id):
            return True
        self.manager.add_mesh_announcement(rec, self.bridge_id, float(rssi), float(snr), hops)
        if direct:
            self.peers.note_heard(rec.id, hops)
            self.peers.note_direct(rec.id)
        self.counters["records"] += 1
        return True

    def _on_fragment(
        self,
        v: auth.Verdict,
        value: Any,
        data: bytes,
        rssi: int | float,
        snr: float,
        attributed: bool,
    ) -> None:
        f = v.frame
        src = bytes(f.source)
        key = (src, int(value[0]))
        self._frag_attr[key] = self._frag_attr.get(key, True) and attributed
        self._frag_attr.move_to_end(key)
        while len(self._frag_attr) > 4 * self.tuning.reassembly_slots:
            self._frag_attr.popitem(last=False)
        try:
            message = self.reassembler.add(src, value, _ms())
        except fragment.ReassemblyError as exc:
            self._frag_attr.pop(key, None)
            self._drop(D_REASSEMBLY)
            if attributed and exc.reason in (fragment.MALFORMED, fragment.OVERSIZE):
                kind = (
                    Misbehaviour.MALFORMED_FRAME
                    if exc.reason == fragment.MALFORMED
                    else Misbehaviour.PROTOCOL_VIOLATION
                )
                self._misbehaving(kind, src, "fragment " + exc.reason, f.type, data)
            return
        if message is None:
            return
        whole_attr = self._frag_attr.pop(key, attributed)
        try:
            inner_type, body = messages.parse_fragment_payload(message)
            inner = messages.decode_body(inner_type, body)
        except messages.UnknownType:
            self._drop(auth.R_UNKNOWN_TYPE)
            return
        except DecodeError as exc:
            if whole_attr:
                self._misbehaving(Misbehaviour.MALFORMED_FRAME, src, str(exc), f.type, data)
            self._drop("fragment_" + auth.R_MALFORMED)
            return
        self.counters["reassembled"] += 1
        if inner_type in RELAY_TYPES:
            self.relay.to_relay(src, whole_attr, f.hop_count, inner_type, inner, message)
        elif inner_type in (messages.ANNOUNCE, messages.PEX_RESPONSE):
            inner_v = auth.Verdict(auth.ACCEPT, whole_attr, None, f, inner)
            self._dispatch(inner_v, inner_type, inner, data, rssi, snr, whole_attr)
        else:
            self.counters["ignored"] += 1

    def _on_invalid(self, peer: Any, kind: str, reason: str) -> None:
        """The relay's validator refused an object; ours only when it came from the mesh."""
        if peer is not self.relay_peer:
            prev = self._prev.get("on_invalid")
            if prev is not None:
                prev(peer, kind, reason)
            return
        self.relay.invalid(kind, reason)

    # ---- bans (meshbans) -------------------------------------------------------------------

    def _on_event(self, ev: Event) -> None:
        self.bans.on_event(ev)

    # ---- link callbacks --------------------------------------------------------------------

    def _on_hello(self, hello: dict[str, Any]) -> None:
        nid = hello.get("node_id")
        if isinstance(nid, bytes | bytearray) and len(nid) == 8:
            self.bridge_id = bytes(nid)
        self._schedule_announce(self.tuning.announce_first_s)
        prev = self._prev.get("on_hello")
        if prev is not None:
            prev(hello)

    def _on_stats(self, stats: dict[str, Any]) -> None:
        used, budget = stats.get("airtime_used_ms"), stats.get("airtime_budget_ms")
        if isinstance(used, int) and isinstance(budget, int):
            self._metric("set_airtime", used, budget)
        prev = self._prev.get("on_stats")
        if prev is not None:
            prev(stats)

    # ---- send: frames ------------------------------------------------------------------------

    def _submit(self, frame: bytes, priority: int) -> bool:
        ok = self.shaper.submit(frame, priority)
        if ok:
            self.counters["frames_queued"] += 1
            self._metric("frame_out", len(frame))
        return ok

    def _reply(self, f: wframe.Frame, msg_type: int, fields: dict[int, Any]) -> None:
        """A control answer to a unicast (ACK, PONG): link-tagged to a direct neighbour
        whose key we hold, else network-tagged, hop limit = the asker's distance."""
        src = bytes(f.source)
        now = time.monotonic()
        t = self.tuning
        bucket = take_bucket(
            self._reply_buckets,
            src,
            t.reply_rate_per_min / 60.0,
            t.reply_burst,
            t.requesters_max,
            now,
        )
        if not bucket.take(1, now):
            self._drop(D_REPLY_RATE)
            return
        hops = min(f.hop_count, wframe.MAX_HOPS)
        key = self.link_keys.get(src) if hops == 0 else None
        body = messages.encode_body(msg_type, fields)
        self._submit(
            self.framer.seal(msg_type, body, dest=src, hop_limit=hops, bridged=False, link_key=key),
            PRIO_CONTROL,
        )

    # ---- send: offers --------------------------------------------------------------------------

    @staticmethod
    def fits(kind: str, payload: bytes) -> bool:
        """Whether an object can travel on the mesh at all (fragmented if need be)."""
        return fits(OBJ_TYPE[kind], payload)

    def _on_object(self, kind: str, payload: bytes, source: Any) -> None:
        """A new valid object in the relay: offer it to the mesh unless it came from there."""
        prev = self._prev.get("on_object")
        if prev is not None:
            try:
                prev(kind, payload, source)
            except Exception:
                log.exception("on_object hook failed")
        code = self.relay.admit(kind, payload, source)
        if code is not None:
            self._offer(object_hash(payload), code)

    def _offer(self, h: bytes, code: int) -> None:
        pending = self._inv_pending
        if h in pending:
            return
        if len(pending) >= self.tuning.inv_pending_max:
            victim = None
            if code == messages.KIND_BLOCK:
                victim = next((k for k, c in pending.items() if c == messages.KIND_TX), None)
            if victim is None:
                self._drop(D_INV_BACKLOG)
                return
            del pending[victim]
            self._drop(D_INV_BACKLOG)
        pending[h] = code
        self._wake_inv.set()

    def _hops(self) -> int:
        return max(0, min(self.tuning.hop_limit, wframe.MAX_HOPS))

    def flush_inv(self) -> int:
        """Send the pending offers now (block INVs first); how many items were queued."""
        pending, self._inv_pending = self._inv_pending, OrderedDict()
        queued = 0
        for code, prio in ((messages.KIND_BLOCK, PRIO_BLOCK), (messages.KIND_TX, PRIO_GOSSIP)):
            hashes = [h for h, c in pending.items() if c == code]
            if not hashes:
                continue
            frames = self.framer.inv_frames(code, hashes, self._hops())
            per = -(-len(hashes) // len(frames))
            for k, fr in enumerate(frames):
                n = min(per, len(hashes) - k * per)
                if self._submit(fr, prio):
                    queued += n
        if queued:
            self.counters["inv_items_queued"] += queued
            self._metric("relayed", "mesh_inv", queued)
        return queued

    async def _inv_loop(self) -> None:
        while True:
            await self._wake_inv.wait()
            await asyncio.sleep(self.tuning.inv_delay_s)
            self._wake_inv.clear()
            self.flush_inv()

    # ---- send: announces (meshannounce) ---------------------------------------------------

    def _schedule_announce(self, delay: float) -> None:
        self.announcer.schedule(delay)

    def announce_now(self) -> bool:
        """Queue our signed record as ANNOUNCE (network tag, gossip priority)."""
        return self.announcer.announce_now()


async def start_mesh(
    cfg: GatewayConfig, manager: PeerManager, *, tuning: MeshTuning | None = None
) -> MeshSide | None:
    """The mesh side for `cfg.serial_port` (None when no port is configured): serial
    link, link session and MeshSide, started after `manager.start()`. `close()` on the
    result stops all three. The port may be absent at start: SerialLink keeps trying."""
    from loragate.serialbridge import SerialLink

    if not cfg.serial_port:
        return None
    serial = SerialLink(cfg.serial_port, cfg.serial_baud, on_packet=lambda payload: None)
    link = MeshLink(serial, node_id=manager.identity.id)
    side = MeshSide(cfg, manager.identity, manager, link, tuning=tuning, own_link=True)
    await side.start()  # callbacks in place before the first frame arrives
    await link.start()
    return side


def _ms() -> int:
    return int(time.monotonic() * 1000)
