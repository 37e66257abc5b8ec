"""The relay between the mesh and the internet, as the mesh side runs it (loragate.mesh).

INV, GETDATA, TX and BLOCK from the mesh go into the manager's relay as coming from the
mesh: one relay peer, `MeshRelayPeer`, stands for the whole mesh; the frame's source
and attribution are set on it for the duration of the call (`MeshRelay.to_relay`), so
an invalid object reported by the validator is charged to the mesh node only when the
frame was attributed.

What the relay sends back to "the mesh peer" (`MeshRelay.relay_out`): INV is ignored
(objects are offered under the per-origin policy, `MeshRelay.admit`); GETDATA goes as a
unicast to the mesh node whose INV is being handled; TX / BLOCK answer a mesh node's
GETDATA (`MeshRelay.serve`) as a BRIDGED broadcast with hop limit = the asker's
distance, so every node on the way hears it. Each asker is limited
(`request_rate_per_min`) and an object answered recently as far is not sent again
(`serve_dedupe_s`). A fragmented object goes only when the shaper has room for all its
frames (a partial object would waste airtime).

Objects the relay accepts from internet peers are never pushed: `admit` decides whether
one may be offered (it fits the mesh, its internet origin is within its token bucket,
`origin_rate_per_min`); the mesh side then batches the offers as INV.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loragate.bans import Misbehaviour
from loragate.meshframes import MeshFramer, fits
from loragate.meshlink import PRIO_BLOCK, PRIO_CONTROL, PRIO_TX, MeshShaper
from loragate.ratelimit import TokenBucket
from loragate.relay import object_hash
from lorawire import auth, messages
from lorawire import frame as wframe

if TYPE_CHECKING:
    from loragate.mesh import MeshTuning

MESH_RELAY_SERIAL = -1  # PeerSession serials count up from 1

KIND_TX = "tx"
KIND_BLOCK = "block"
CODE = {KIND_TX: messages.KIND_TX, KIND_BLOCK: messages.KIND_BLOCK}
KIND = {messages.KIND_TX: KIND_TX, messages.KIND_BLOCK: KIND_BLOCK}
OBJ_TYPE = {KIND_TX: messages.TX, KIND_BLOCK: messages.BLOCK}
OBJ_PRIO = {messages.TX: PRIO_TX, messages.BLOCK: PRIO_BLOCK}
RELAY_TYPES = (messages.INV, messages.GETDATA, messages.TX, messages.BLOCK)

# Drop reasons (counters and metrics.dropped, prefixed "mesh_").
D_ORIGIN_RATE = "origin_rate"
D_TOO_LARGE = "too_large"
D_REQUEST_RATE = "request_rate"
D_QUEUE_FULL = "queue_full"
D_NO_ROUTE = "no_route"


class RelayCtx:
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

    def __init__(self, send: Callable[[int, bytes], bool]) -> None:
        self._send = send
        self.node_id: bytes | None = None

    def send_body(self, msg_type: int, body: bytes, prio: int = PRIO_CONTROL) -> bool:
        return self._send(msg_type, body)


class MeshRelay:
    def __init__(
        self,
        manager: Any,
        framer: MeshFramer,
        shaper: MeshShaper,
        link_keys: auth.LinkKeyCache,
        tuning: MeshTuning,
        counters: Counter[str],
        *,
        submit: Callable[[bytes, int], bool],
        drop: Callable[[str], None],
        metric: Callable[..., None],
        misbehaving: Callable[[Misbehaviour, bytes, str, int | None, bytes], None],
    ) -> None:
        self.manager = manager
        self.framer = framer
        self.shaper = shaper
        self.link_keys = link_keys
        self.tuning = tuning
        self.counters = counters
        self._submit = submit
        self._drop = drop
        self._metric = metric
        self._misbehaving = misbehaving
        self.peer = MeshRelayPeer(self.relay_out)
        self.ctx: RelayCtx | None = None
        self._origin_buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._request_buckets: OrderedDict[bytes, TokenBucket] = OrderedDict()
        self._served: OrderedDict[bytes, tuple[float, int]] = OrderedDict()

    # ---- mesh -> relay -------------------------------------------------------------------------

    def to_relay(
        self, src: bytes, attributed: bool, hops: int, msg_type: int, value: Any, data: bytes
    ) -> None:
        self.ctx = RelayCtx(src, attributed, hops, data)
        self.peer.node_id = src if attributed else None
        try:
            self.manager.relay.handle(self.peer, msg_type, value)
        finally:
            self.ctx = None
            self.peer.node_id = None

    def invalid(self, kind: str, reason: str) -> None:
        """The validator refused an object from the mesh: charge its sender if proven."""
        ctx = self.ctx
        if ctx is None or not ctx.attributed:
            self._drop("invalid_unattributed")
            return
        msg_type = OBJ_TYPE.get(kind)
        self._misbehaving(Misbehaviour.INVALID_SYNC_DATA, ctx.source, reason, msg_type, ctx.frame)

    # ---- relay -> mesh -------------------------------------------------------------------------

    def relay_out(self, msg_type: int, body: bytes) -> bool:
        """What the relay sends to 'the mesh peer'. INV: ignored (objects are offered by
        the mesh side under the per-origin policy). GETDATA: to the mesh node whose INV
        we are handling. TX/BLOCK: the answer to a mesh node's GETDATA."""
        ctx = self.ctx
        if msg_type == messages.INV:
            return False
        if ctx is None:
            self._drop(D_NO_ROUTE)
            return False
        hops = min(ctx.hops, wframe.MAX_HOPS)
        if msg_type == messages.GETDATA:
            key = self.link_keys.get(ctx.source) if hops == 0 else None
            frame = self.framer.seal(
                msg_type, body, dest=ctx.source, hop_limit=hops, bridged=False, link_key=key
            )
            return self._submit(frame, PRIO_CONTROL)
        if msg_type in (messages.TX, messages.BLOCK):
            return self.serve(ctx.source, hops, msg_type, body)
        return False

    def serve(self, requester: bytes, hops: int, msg_type: int, body: bytes) -> bool:
        now = time.monotonic()
        h = object_hash(messages.decode_body(msg_type, body)[0])
        served = self._served.get(h)
        if served is not None and now - served[0] < self.tuning.serve_dedupe_s:
            if served[1] >= hops:
                self.counters["served_dedupe"] += 1
                return True
        bucket = take_bucket(
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
        frames = self.framer.object_frames(msg_type, body, hops)
        if frames is None:
            self._drop(D_TOO_LARGE)
            return False
        prio = OBJ_PRIO[msg_type]
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

    # ---- internet -> offers --------------------------------------------------------------------

    def admit(self, kind: str, payload: bytes, source: Any) -> int | None:
        """The INV kind code to offer a new relay object under, None when it is not
        offered (from the mesh, not an object, too large, origin over its rate)."""
        if source is self.peer or kind not in CODE:
            return None
        if not fits(OBJ_TYPE[kind], payload):
            self._drop(D_TOO_LARGE)
            return None
        origin = origin_of(source)
        if origin is not None:
            now = time.monotonic()
            bucket = take_bucket(
                self._origin_buckets,
                origin,
                self.tuning.origin_rate_per_min / 60.0,
                self.tuning.origin_burst,
                self.tuning.origins_max,
                now,
            )
            if not bucket.take(1, now):
                self._drop(D_ORIGIN_RATE)
                return None
        return CODE[kind]


def origin_of(source: Any) -> str | None:
    """The internet origin of an object for rate limiting (None: our own node's)."""
    if source is None:
        return None
    nid = getattr(source, "node_id", None)
    if isinstance(nid, bytes | bytearray):
        return "node:" + bytes(nid).hex()
    host = getattr(source, "host", None)
    return f"host:{host}" if host else f"peer:{id(source)}"


def take_bucket(
    table: OrderedDict[Any, TokenBucket],
    key: Any,
    rate: float,
    burst: float,
    cap: int,
    now: float,
) -> TokenBucket:
    """The token bucket of `key` in a bounded table (least recently used dropped)."""
    b = table.get(key)
    if b is None:
        b = TokenBucket(rate, burst, now)
        table[key] = b
        while len(table) > cap:
            table.popitem(last=False)
    else:
        table.move_to_end(key)
    return b
