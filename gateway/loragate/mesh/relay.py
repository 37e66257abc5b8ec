"""The relay between the mesh and the internet, as the mesh wing runs it.

INV, GETDATA, TX and BLOCK from the mesh go into the gateway's relay as coming from the
mesh: one relay peer, `MeshRelayPeer`, stands for the whole mesh; the frame's source
and attribution are set on it for the duration of the call (`MeshRelay.to_relay`), so
an invalid object reported by the validator is charged to the mesh node only when the
frame was attributed (`MeshRelay` listens to the relay's `on_invalid` for its own peer
and hands the fault to `receive.MeshBlame`).

What the relay sends back to "the mesh peer" (`MeshRelay.relay_out`): INV is ignored
(objects are offered under the per-origin policy, `MeshRelay.admit`, by `offers`);
GETDATA goes as a unicast to the mesh node whose INV is being handled; TX / BLOCK answer
a mesh node's GETDATA (`MeshRelay.serve`) as a BRIDGED broadcast with hop limit = the
asker's distance, so every node on the way hears it. Each asker is limited
(`request_rate_per_min`) and an object answered recently as far is not sent again
(`serve_dedupe_s`). A fragmented object goes only when the shaper has room for all its
frames (a partial object would waste airtime).

Objects the relay accepts from internet peers are never pushed: `admit` decides whether
one may be offered (it fits the mesh, its internet origin is within its token bucket,
`origin_rate_per_min`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from loragate.bans import Misbehaviour
from loragate.bounded import BoundedDict
from loragate.mesh.counters import MeshCounters
from loragate.mesh.frames import KIND_BLOCK, KIND_TX, OBJ_TYPE, MeshFramer, object_fits
from loragate.mesh.link import PRIO_BLOCK, PRIO_CONTROL, PRIO_TX
from loragate.mesh.shaper import MeshShaper
from loragate.mesh.tuning import MeshTuning
from loragate.ratelimit import BucketTable
from loragate.relay import Relay, RelayPeer, object_hash
from lorawire import auth, messages
from lorawire import frame as wframe

MESH_RELAY_SERIAL = -1  # PeerSession serials count up from 1

CODE = {KIND_TX: messages.KIND_TX, KIND_BLOCK: messages.KIND_BLOCK}
OBJ_PRIO = {messages.TX: PRIO_TX, messages.BLOCK: PRIO_BLOCK}

# Drop reasons (counters and metrics.dropped, prefixed "mesh_").
D_ORIGIN_RATE = "origin_rate"
D_TOO_LARGE = "too_large"
D_REQUEST_RATE = "request_rate"
D_QUEUE_FULL = "queue_full"
D_NO_ROUTE = "no_route"
D_INVALID_UNATTRIBUTED = "invalid_unattributed"
# The fault of an attributed object the validator refused (INVALID_SYNC_DATA).
R_INVALID_OBJECT = "invalid_object"

# charge(kind, reason, node_id, msg_type, frame, detail): receive.MeshBlame.charge
Charge = Callable[[Misbehaviour, str, bytes, "int | None", bytes, "str | None"], None]


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
        relay: Relay,
        framer: MeshFramer,
        shaper: MeshShaper,
        link_keys: auth.LinkKeyCache,
        tuning: MeshTuning,
        counters: MeshCounters,
        *,
        submit: Callable[[bytes, int], bool],
        charge: Charge,
    ) -> None:
        self.relay = relay
        self.framer = framer
        self.shaper = shaper
        self.link_keys = link_keys
        self.tuning = tuning
        self.counters = counters
        self._submit = submit
        self._charge = charge
        self.peer = MeshRelayPeer(self.relay_out)
        self.ctx: RelayCtx | None = None
        t = tuning
        self._origins: BucketTable[str] = BucketTable(
            t.origin_rate_per_min / 60.0, t.origin_burst, t.origins_max
        )
        self._requests: BucketTable[bytes] = BucketTable(
            t.request_rate_per_min / 60.0, t.request_burst, t.requesters_max
        )
        self._served: BoundedDict[bytes, tuple[float, int]] = BoundedDict(t.served_max)
        self._remove: list[Callable[[], None]] = []

    def attach(self) -> None:
        """Take the mesh's seat in the relay and listen for its invalid objects."""
        self.relay.add_peer(self.peer)
        self._remove.append(self.relay.on_invalid.add(self._on_invalid))

    def detach(self) -> None:
        for remove in self._remove:
            remove()
        self._remove.clear()
        self.relay.remove_peer(self.peer)

    # ---- mesh -> relay -------------------------------------------------------------------------

    def to_relay(
        self, src: bytes, attributed: bool, hops: int, msg_type: int, value: Any, data: bytes
    ) -> None:
        self.ctx = RelayCtx(src, attributed, hops, data)
        self.peer.node_id = src if attributed else None
        try:
            self.relay.handle(self.peer, msg_type, value)
        finally:
            self.ctx = None
            self.peer.node_id = None

    def _on_invalid(self, peer: RelayPeer, kind: str, reason: str) -> None:
        """The validator refused an object from the mesh: charge its sender if proven."""
        if peer is not self.peer:
            return  # a TCP peer's: the peer manager's business
        ctx = self.ctx
        if ctx is None or not ctx.attributed:
            self.counters.drop(D_INVALID_UNATTRIBUTED)
            return
        kind = Misbehaviour.INVALID_SYNC_DATA
        self._charge(kind, R_INVALID_OBJECT, ctx.source, OBJ_TYPE.get(kind), ctx.frame, reason)

    # ---- relay -> mesh -------------------------------------------------------------------------

    def relay_out(self, msg_type: int, body: bytes) -> bool:
        """What the relay sends to 'the mesh peer'. INV: ignored (objects are offered by
        the mesh wing under the per-origin policy). GETDATA: to the mesh node whose INV
        we are handling. TX/BLOCK: the answer to a mesh node's GETDATA."""
        ctx = self.ctx
        if msg_type == messages.INV:
            return False
        if ctx is None:
            self.counters.drop(D_NO_ROUTE)
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
                self.counters.count("served_dedupe")
                return True
        if not self._requests.take(requester, 1, now):
            self.counters.drop(D_REQUEST_RATE)
            return False
        frames = self.framer.object_frames(msg_type, body, hops)
        if frames is None:
            self.counters.drop(D_TOO_LARGE)
            return False
        prio = OBJ_PRIO[msg_type]
        if len(frames) > 1 and self.shaper.capacity - len(self.shaper) < len(frames):
            self.counters.drop(D_QUEUE_FULL)
            return False
        sent = 0
        for fr in frames:
            if self._submit(fr, prio):
                sent += 1
        if sent == 0:
            return False
        self._served.put(h, (now, hops))
        name = messages.type_name(msg_type).lower()
        self.counters.count("served_" + name)
        self.counters.metric("relayed", "mesh_" + name)
        return True

    # ---- internet -> offers --------------------------------------------------------------------

    def admit(self, kind: str, payload: bytes, source: RelayPeer | None) -> int | None:
        """The INV kind code to offer a new relay object under, None when it is not
        offered (from the mesh, not an object, too large, origin over its rate)."""
        if source is self.peer or kind not in CODE:
            return None
        if not object_fits(kind, payload):
            self.counters.drop(D_TOO_LARGE)
            return None
        origin = origin_of(source)
        if origin is not None and not self._origins.take(origin):
            self.counters.drop(D_ORIGIN_RATE)
            return None
        return CODE[kind]


def origin_of(source: RelayPeer | None) -> str | None:
    """The internet origin of an object for rate limiting (None: our own node's)."""
    if source is None:
        return None
    nid = source.node_id
    if isinstance(nid, bytes | bytearray):
        return "node:" + bytes(nid).hex()
    host = source.host
    return f"host:{host}" if host else f"peer:{id(source)}"
