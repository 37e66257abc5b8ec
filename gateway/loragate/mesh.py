"""The gateway's presence on the LoRa mesh, through a bridge board (docs/BRIDGE.md).

`MeshSide(cfg, identity, manager, link)` sits between a `meshlink.MeshLink` (frames up
from the bridge radio, frames down through a `meshlink.MeshShaper`) and the
`manager.PeerManager` (peer table, scores, bans, relay).

Receive (`on_frame(frame, rssi, snr)`, installed as the link's `on_frame`):

1. A source banned by the manager's BanManager is dropped before anything else (no tag
   check, no decode) and its ban is pushed to the bridge if the bridge lacks it.
2. `lorawire.auth.open_frame` with the network key, a LinkKeyCache over the public keys
   of mesh records we verified, a ReplayTable and our id. Unattributed drops are
   counted (`mesh_<reason>`), attributed ones cost the source misbehaviour points
   (malformed body -> MALFORMED_FRAME, bad record signature -> BAD_SIGNATURE).
3. Accepted: ANNOUNCE / PEX_RESPONSE records are judged (auth.judge_record) and handed
   to `manager.add_mesh_announcement(record, bridge_id, rssi, snr, hops)`; INV, GETDATA,
   TX and BLOCK go into the manager's relay as coming from the mesh (one relay peer,
   `MeshRelayPeer`, stands for the whole mesh; the frame's source and attribution are
   set on it for the duration of the call, so an invalid object reported by the
   validator is charged to the mesh node only when the frame was attributed).
   FRAGMENT frames are reassembled (fixed slots) and the inner message dispatched; it
   is attributed only if every fragment was. Unicasts to us are ACKed, PINGs PONGed.

Send (every frame through the MeshShaper: bounded queue, priorities, deadlines, the
duty-cycle budget the bridge reports):

* Our own signed record (kind gateway) as ANNOUNCE every `announce_interval_s`
  (jittered), shortly after the bridge's HELLO and whenever a mesh node we never heard
  of appears (it may lack our record), never more often than `announce_min_gap_s`.
* Objects the relay accepts from internet peers are never pushed: they are *offered*
  by INV (flag BRIDGED), batched for `inv_delay_s`, each internet origin limited by a
  token bucket (`origin_rate_per_min`), the backlog bounded (`inv_pending_max`; a block
  evicts the oldest transaction, a transaction is refused when full).
* A mesh node that wants an object asks with GETDATA; the answer (TX / BLOCK, flag
  BRIDGED) is a broadcast with hop limit = the asker's distance, so every node on the
  way hears it; each asker is limited (`request_rate_per_min`) and an object answered
  recently as far is not sent again (`serve_dedupe_s`). Objects larger than one frame
  are fragmented (lorawire.fragment); one that needs more than MAX_FRAGMENTS frames is
  neither offered nor sent, and a fragmented object goes only when the shaper has
  room for all its frames (a partial object would waste airtime).
* Priorities: control (ACK, PONG, GETDATA) > blocks and block INVs > transactions >
  gossip (tx INVs, announces).

Everything dropped is counted in `counters` and in the manager's metrics
(`metrics.dropped("mesh_...")`); the shaper's own drops are mirrored there as
`mesh_shaper_<reason>`.

Bans: BANNED/UNBANNED events of the manager's EventBus for node ids heard on the mesh
(or banned for mesh misbehaviour) become `link.ban(node_id, seconds)` / `link.unban`;
MeshLink keeps that list and re-pushes it after every bridge HELLO. At start the
active node bans that were earned on the mesh are pushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loragate.bans import Misbehaviour
from loragate.config import GatewayConfig
from loragate.events import Event, EventKind
from loragate.manager import PeerManager
from loragate.meshlink import (
    PRIO_BLOCK,
    PRIO_CONTROL,
    PRIO_GOSSIP,
    PRIO_TX,
    MeshLink,
    MeshShaper,
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

log = logging.getLogger(__name__)

SEQ_KEY = "mesh_seq"
MESH_RELAY_SERIAL = -1  # PeerSession serials count up from 1
MTU = wframe.MAX_LORA_FRAME
MTU_BODY = MTU - wframe.OVERHEAD_BROADCAST
MAX_OBJECT_MESSAGE = fragment.max_message(MTU)

KIND_TX = "tx"
KIND_BLOCK = "block"
_CODE = {KIND_TX: messages.KIND_TX, KIND_BLOCK: messages.KIND_BLOCK}
_KIND = {messages.KIND_TX: KIND_TX, messages.KIND_BLOCK: KIND_BLOCK}
_OBJ_TYPE = {KIND_TX: messages.TX, KIND_BLOCK: messages.BLOCK}
_OBJ_PRIO = {messages.TX: PRIO_TX, messages.BLOCK: PRIO_BLOCK}
_RELAY_TYPES = (messages.INV, messages.GETDATA, messages.TX, messages.BLOCK)

# Drop reasons (counters and metrics.dropped, prefixed "mesh_").
D_BANNED = "banned"
D_ORIGIN_RATE = "origin_rate"
D_INV_BACKLOG = "inv_backlog"
D_TOO_LARGE = "too_large"
D_REQUEST_RATE = "request_rate"
D_REPLY_RATE = "reply_rate"
D_QUEUE_FULL = "queue_full"
D_NO_ROUTE = "no_route"
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


class _Ctx:
    """The mesh frame being handed to the relay (set only during relay.handle)."""

    __slots__ = ("source", "attributed", "hops", "frame")

    def __init__(self, source: bytes, attributed: bool, hops: int, frame: bytes) -> None:
        self.source = source
        self.attributed = attributed
        self.hops = hops
        self.frame = frame


class MeshRelayPeer:
    """The whole mesh as one relay peer (loragate.relay.RelayPeer).

    `node_id` is the source of the mesh frame being processed when that frame was
    attributed, else None, so relay callbacks never blame a forged source. `host` is
    always None (mesh nodes have no address).
    """

    serial = MESH_RELAY_SERIAL
    host: str | None = None

    def __init__(self, side: MeshSide) -> None:
        self._side = side
        self.node_id: bytes | None = None

    def send_body(self, msg_type: int, body: bytes, prio: int = PRIO_CONTROL) -> bool:
        return self._side._relay_out(msg_type, body)


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
        self._records: OrderedDict[bytes, Record] = OrderedDict()
        self.link_keys = auth.LinkKeyCache(identity, t.link_keys, lookup=self._public_of)
        self.reassembler = fragment.Reassembler(
            t.reassembly_slots, t.reassembly_timeout_ms, MAX_OBJECT_MESSAGE
        )
        self._frag_attr: OrderedDict[tuple[bytes, int], bool] = OrderedDict()
        self._heard: OrderedDict[bytes, int] = OrderedDict()  # id -> hops (last heard)
        self._direct: OrderedDict[bytes, None] = OrderedDict()  # ids whose ANNOUNCE we heard
        self.relay_peer = MeshRelayPeer(self)
        self._ctx: _Ctx | None = None
        self._inv_pending: OrderedDict[bytes, int] = OrderedDict()  # hash -> kind code
        self._origin_buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._request_buckets: OrderedDict[bytes, TokenBucket] = OrderedDict()
        self._reply_buckets: OrderedDict[bytes, TokenBucket] = OrderedDict()
        self._served: OrderedDict[bytes, tuple[float, int]] = OrderedDict()
        self._seq = 0
        self._seq_limit = 0
        self._msg_id = self._rng.randrange(0x10000)
        self._last_announce = -math.inf
        self._announce_at = math.inf
        self._shaper_seen: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._wake_inv = asyncio.Event()
        self._wake_announce = asyncio.Event()
        self._remove_bus_cb: Callable[[], None] | None = None
        self._prev: dict[str, Any] = {}
        self._started = False

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
        self._push_mesh_bans()
        if self._own_shaper:
            await self.shaper.start()
        if link.ready:
            self._schedule_announce(self.tuning.announce_first_s)
        self._tasks = [
            asyncio.create_task(self._announce_loop(), name="mesh-announce"),
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

    def _spawn(self, coro: Any) -> None:
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
            "heard": len(self._heard),
            "records": len(self._records),
            "inv_pending": len(self._inv_pending),
            "shaper": self.shaper.counters(),
            "budget": self.link.budget(),
            "counters": dict(self.counters),
        }

    # ---- sequence numbers ------------------------------------------------------------------

    async def _load_seq(self) -> None:
        """Our frame sequence survives restarts: a block of `seq_block` numbers is
        reserved in the store before use, and a restart jumps to the next block, so the
        mesh's replay windows accept our first frames (as the firmware does)."""
        store = getattr(self.manager, "store", None)
        start = 0
        if store is not None:
            raw = await store.get_kv(SEQ_KEY)
            if raw:
                start = int.from_bytes(raw, "big") & 0xFFFF
        self._seq = start
        self._seq_limit = (start + self.tuning.seq_block) & 0xFFFF
        await self._save_seq()

    async def _save_seq(self) -> None:
        store = getattr(self.manager, "store", None)
        if store is not None:
            await store.set_kv(SEQ_KEY, self._seq_limit.to_bytes(2, "big"))

    def _next_seq(self) -> int:
        s = self._seq
        self._seq = (s + 1) & 0xFFFF
        block = self.tuning.seq_block
        if (self._seq_limit - self._seq) & 0xFFFF <= block // 2:
            # Reserve the next block half a block early, so the write is done before a
            # number from it is used (a crash then never reuses a sent number).
            self._seq_limit = (self._seq_limit + block) & 0xFFFF
            self._spawn(self._save_seq())
        return s

    # ---- keys and records ----------------------------------------------------------------

    def _public_of(self, node_id: bytes) -> bytes | None:
        rec = self._records.get(bytes(node_id))
        return None if rec is None else rec.public

    def _hold(self, rec: Record) -> None:
        self._records[rec.id] = rec
        self._records.move_to_end(rec.id)
        while len(self._records) > self.tuning.records_max:
            old, _ = self._records.popitem(last=False)
            self.link_keys.forget(old)

    def _note_heard(self, node_id: bytes, hops: int) -> None:
        self._heard[node_id] = hops
        self._heard.move_to_end(node_id)
        while len(self._heard) > self.tuning.heard_max:
            self._heard.popitem(last=False)

    def is_mesh_node(self, node_id: bytes) -> bool:
        return bytes(node_id) in self._heard

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
        banman = self.manager.banman
        if banman.is_banned(node_id=src):
            self._drop(D_BANNED)
            if not self.link.is_banned(src):
                self._push_ban(src, banman.find_ban(node_id=src))
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
        self._note_heard(src, f.hop_count)
        if v.attributed:
            self.manager.score_for(_key(src)).message(True)
        if f.hop_count == 0 and src in self._records:
            self.manager.score_for(_key(src)).link(float(rssi), float(snr))
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
        self._note_heard(node_id, self._heard.get(node_id, 0))
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
        elif msg_type in _RELAY_TYPES:
            if f.dest is not None:
                self._reply(f, messages.ACK, {0: f.seq})
            self._to_relay(src, attributed, f.hop_count, msg_type, value, data)
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
        held = None if rec is None else self._records.get(rec.id)
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
            self._hold(rec)
        if not direct and rec.id in self._direct:
            return True  # announced itself: a PEX copy must not overwrite its link data
        if self.manager.banman.is_banned(node_id=rec.id):
            return True
        self.manager.add_mesh_announcement(rec, self.bridge_id, float(rssi), float(snr), hops)
        if direct:
            self._note_heard(rec.id, hops)
            self._direct[rec.id] = None
            self._direct.move_to_end(rec.id)
            while len(self._direct) > self.tuning.heard_max:
                self._direct.popitem(last=False)
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
        if inner_type in _RELAY_TYPES:
            self._to_relay(src, whole_attr, f.hop_count, inner_type, inner, message)
        elif inner_type in (messages.ANNOUNCE, messages.PEX_RESPONSE):
            inner_v = auth.Verdict(auth.ACCEPT, whole_attr, None, f, inner)
            self._dispatch(inner_v, inner_type, inner, data, rssi, snr, whole_attr)
        else:
            self.counters["ignored"] += 1

    def _to_relay(
        self, src: bytes, attributed: bool, hops: int, msg_type: int, value: Any, data: bytes
    ) -> None:
        self._ctx = _Ctx(src, attributed, hops, data)
        self.relay_peer.node_id = src if attributed else None
        try:
            self.manager.relay.handle(self.relay_peer, msg_type, value)
        finally:
            self._ctx = None
            self.relay_peer.node_id = None

    def _on_invalid(self, peer: Any, kind: str, reason: str) -> None:
        """The relay's validator refused an object; ours only when it came from the mesh."""
        if peer is not self.relay_peer:
            prev = self._prev.get("on_invalid")
            if prev is not None:
                prev(peer, kind, reason)
            return
        ctx = self._ctx
        if ctx is None or not ctx.attributed:
            self._drop("invalid_unattributed")
            return
        msg_type = _OBJ_TYPE.get(kind)
        self._misbehaving(Misbehaviour.INVALID_SYNC_DATA, ctx.source, reason, msg_type, ctx.frame)

    # ---- bans ----------------------------------------------------------------------------

    def _push_ban(self, node_id: bytes, ban: Any) -> None:
        if ban is None:
            return
        seconds: int | None = None
        if ban.until is not None:
            left = ban.until - time.time()
            if left <= 0:
                return
            seconds = max(1, math.ceil(left))
        self.link.ban(node_id, seconds)
        self.counters["bans_pushed"] += 1

    def _push_mesh_bans(self) -> None:
        now = time.time()
        for ban in self.manager.banman.bans():
            t = ban.target
            if t.kind == "node" and ban.active(now) and "mesh" in (ban.reason or ""):
                self._push_ban(bytes.fromhex(t.value), ban)

    def _on_event(self, ev: Event) -> None:
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
            if node_id in self._heard or "mesh" in str(ev.details.get("reason", "")):
                self._push_ban(node_id, self.manager.banman.find_ban(node_id=node_id))
                self._records.pop(node_id, None)
                self.link_keys.forget(node_id)
        elif self.link.is_banned(node_id):
            self.link.unban(node_id)
            self.counters["unbans_pushed"] += 1

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

    def _seal(
        self,
        msg_type: int,
        body: bytes,
        *,
        dest: bytes | None = None,
        hop_limit: int,
        bridged: bool,
        link_key: bytes | None = None,
    ) -> bytes:
        flags = (wframe.FLAG_BRIDGED if bridged else 0) | (wframe.FLAG_LINK if link_key else 0)
        f = wframe.Frame(msg_type, self.identity.id, self._next_seq(), dest, flags, hop_limit)
        return bytes(auth.seal_frame(f, body, self.network_key, link_key, MTU))

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
        bucket = _bucket(
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
            self._seal(msg_type, body, dest=src, hop_limit=hops, bridged=False, link_key=key),
            PRIO_CONTROL,
        )

    def _relay_out(self, msg_type: int, body: bytes) -> bool:
        """What the relay sends to 'the mesh peer'. INV: ignored (objects are offered by
        `_on_object` under the per-origin policy). GETDATA: to the mesh node whose INV
        we are handling. TX/BLOCK: the answer to a mesh node's GETDATA."""
        ctx = self._ctx
        if msg_type == messages.INV:
            return False
        if ctx is None:
            self._drop(D_NO_ROUTE)
            return False
        hops = min(ctx.hops, wframe.MAX_HOPS)
        if msg_type == messages.GETDATA:
            key = self.link_keys.get(ctx.source) if hops == 0 else None
            frame = self._seal(
                msg_type, body, dest=ctx.source, hop_limit=hops, bridged=False, link_key=key
            )
            return self._submit(frame, PRIO_CONTROL)
        if msg_type in (messages.TX, messages.BLOCK):
            return self._serve(ctx.source, hops, msg_type, body)
        return False

    def _serve(self, requester: bytes, hops: int, msg_type: int, body: bytes) -> bool:
        now = time.monotonic()
        h = object_hash(messages.decode_body(msg_type, body)[0])
        served = self._served.get(h)
        if served is not None and now - served[0] < self.tuning.serve_dedupe_s:
            if served[1] >= hops:
                self.counters["served_dedupe"] += 1
                return True
        bucket = _bucket(
            self._request_buckets,
            requester,
            self.tuning.request_rate_per_min / 60.0,
            self.tuning.request_burst,
            self.tuning.requesters_max,
            now,
        )
        if not bucket.take(1, now):
            self._drop(D_REQUEST_RATE)
            return False
        frames = self._object_frames(msg_type, body, hops)
        if frames is None:
            self._drop(D_TOO_LARGE)
            return False
        prio = _OBJ_PRIO[msg_type]
        if len(frames) > 1 and self.shaper.capacity - len(self.shaper) < len(frames):
            self._drop(D_QUEUE_FULL)
            return False
        sent = 0
        for fr in frames:
            if self._submit(fr, prio):
                sent += 1
        if sent == 0:
            return False
        self._served[h] = (now, hops)
        self._served.move_to_end(h)
        while len(self._served) > self.tuning.served_max:
            self._served.popitem(last=False)
        self.counters["served_" + messages.type_name(msg_type).lower()] += 1
        self._metric("relayed", "mesh_" + messages.type_name(msg_type).lower())
        return True

    def _object_frames(self, msg_type: int, body: bytes, hop_limit: int) -> list[bytes] | None:
        """BRIDGED broadcast frame(s) carrying one object; None if it cannot be sent."""
        if wframe.OVERHEAD_BROADCAST + len(body) <= MTU:
            return [self._seal(msg_type, body, hop_limit=hop_limit, bridged=True)]
        try:
            payload = messages.fragment_payload(msg_type, body)
            self._msg_id = (self._msg_id + 1) & 0xFFFF
            chunks = fragment.split(payload, self._msg_id, MTU_BODY)
        except ValueError:
            return None
        return [self._seal(messages.FRAGMENT, c, hop_limit=hop_limit, bridged=True) for c in chunks]

    # ---- send: offers --------------------------------------------------------------------------

    @staticmethod
    def fits(kind: str, payload: bytes) -> bool:
        """Whether an object can travel on the mesh at all (fragmented if need be)."""
        body_len = len(messages.encode_body(_OBJ_TYPE[kind], {0: bytes(payload)}))
        if wframe.OVERHEAD_BROADCAST + body_len <= MTU:
            return True
        return 1 + body_len <= MAX_OBJECT_MESSAGE

    def _on_object(self, kind: str, payload: bytes, source: Any) -> None:
        """A new valid object in the relay: offer it to the mesh unless it came from there."""
        prev = self._prev.get("on_object")
        if prev is not None:
            try:
                prev(kind, payload, source)
            except Exception:
                log.exception("on_object hook failed")
        if source is self.relay_peer or kind not in _CODE:
            return
        if not self.fits(kind, payload):
            self._drop(D_TOO_LARGE)
            return
        origin = _origin_of(source)
        if origin is not None:
            now = time.monotonic()
            bucket = _bucket(
                self._origin_buckets,
                origin,
                self.tuning.origin_rate_per_min / 60.0,
                self.tuning.origin_burst,
                self.tuning.origins_max,
                now,
            )
            if not bucket.take(1, now):
                self._drop(D_ORIGIN_RATE)
                return
        self._offer(object_hash(payload), _CODE[kind])

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

    def _inv_frames(self, code: int, hashes: list[bytes]) -> list[bytes]:
        frames: list[bytes] = []
        i = 0
        while i < len(hashes):
            n = min(messages.INV_MAX, len(hashes) - i)
            while True:
                body = messages.encode_inv([(code, h) for h in hashes[i : i + n]])
                if wframe.OVERHEAD_BROADCAST + len(body) <= MTU or n == 1:
                    break
                n -= 1
            frames.append(self._seal(messages.INV, body, hop_limit=self._hops(), bridged=True))
            i += n
        return frames

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
            frames = self._inv_frames(code, hashes)
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

    # ---- send: announces -----------------------------------------------------------------------

    def _schedule_announce(self, delay: float) -> None:
        at = time.monotonic() + max(0.0, delay)
        at = max(at, self._last_announce + self.tuning.announce_min_gap_s)
        if at < self._announce_at:
            self._announce_at = at
            self._wake_announce.set()

    def announce_now(self) -> bool:
        """Queue our signed record as ANNOUNCE (network tag, gossip priority)."""
        rec = getattr(self.manager, "record", None)
        if rec is None:
            return False
        body = messages.encode_announce(rec.value)
        frame = self._seal(messages.ANNOUNCE, body, hop_limit=self._hops(), bridged=False)
        self._last_announce = time.monotonic()
        ok = self._submit(frame, PRIO_GOSSIP)
        if ok:
            self.counters["announces"] += 1
        return ok

    async def _announce_loop(self) -> None:
        t = self.tuning
        while True:
            now = time.monotonic()
            if now >= self._announce_at:
                if self.link.ready:
                    self.announce_now()
                jitter = 1.0 + self._rng.uniform(-t.announce_jitter, t.announce_jitter)
                self._announce_at = time.monotonic() + t.announce_interval_s * jitter
                continue
            self._wake_announce.clear()
            wait = None if math.isinf(self._announce_at) else self._announce_at - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_announce.wait(), wait)


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


def _key(node_id: bytes) -> str:
    return f"node:{node_id.hex()}"


def _origin_of(source: Any) -> str | None:
    """The internet origin of an object for rate limiting (None: our own node's)."""
    if source is None:
        return None
    nid = getattr(source, "node_id", None)
    if isinstance(nid, bytes | bytearray):
        return "node:" + bytes(nid).hex()
    host = getattr(source, "host", None)
    return f"host:{host}" if host else f"peer:{id(source)}"


def _bucket(
    table: OrderedDict[Any, TokenBucket],
    key: Any,
    rate: float,
    burst: float,
    cap: int,
    now: float,
) -> TokenBucket:
    b = table.get(key)
    if b is None:
        b = TokenBucket(rate, burst, now)
        table[key] = b
        while len(table) > cap:
            table.popitem(last=False)
    else:
        table.move_to_end(key)
    return b
