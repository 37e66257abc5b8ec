"""What the gateway hears on the mesh: the receive pipeline and who is to blame.

This module is the one place on the gateway where a mesh frame is judged: the order of
the checks (`MeshReceiver.on_frame`), what is dispatched where, and what a proven fault
costs its sender (`MeshBlame`). What both sides must mean the same is lorawire's: the
misbehaviour codes and the rule from a refusal to one (`lorawire.auth.blame`), the
attribution of a reassembled message (`lorawire.fragment.Reassembler`), the header peeks
(`lorawire.frame.peek_*`). The firmware's pipeline (firmware/loranode/receive.py) uses
the same, in the order and with the tables a board can afford.

Receive (`on_frame(frame, rssi, snr)`, a listener of the link's `on_frame`), cheapest
check first:

1. `peek_source`; a source banned by the BanManager is dropped before anything else
   (no tag check, no decode) and its ban is pushed to the bridge if the bridge lacks it.
2. A link-tagged unicast between two other nodes is dropped (we cannot check its tag).
3. `lorawire.auth.open_frame` with the network key, a LinkKeyCache over the public keys
   of mesh records we verified, a ReplayTable and our id. Unattributed drops are
   counted (`dropped_<reason>`); attributed ones cost the source points (`auth.blame`).
4. Accepted: ANNOUNCE / PEX_RESPONSE records are judged (`auth.judge_record`) and handed
   to `MeshHost.add_mesh_announcement(record, bridge_id, rssi, snr, hops)`; INV, GETDATA,
   TX and BLOCK go into the relay as coming from the mesh (`relay.MeshRelay`). FRAGMENT
   frames are reassembled (fixed slots) and the inner message dispatched; it is
   attributed only if every fragment was. Unicasts to us are ACKed, PINGs PONGed
   (`Replier`: per-asker rate, link tag to a direct neighbour whose key we hold).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from loragate.bans import Misbehaviour
from loragate.mesh.bans import MeshBans
from loragate.mesh.counters import MeshCounters
from loragate.mesh.frames import MAX_OBJECT_MESSAGE, MeshFramer
from loragate.mesh.host import MeshHost
from loragate.mesh.link import PRIO_CONTROL
from loragate.mesh.peers import MeshPeers
from loragate.mesh.relay import MeshRelay
from loragate.mesh.tuning import MeshTuning
from loragate.ratelimit import BucketTable
from loragate.relay import RELAY_TYPES
from loragate.scoring import node_key
from lorawire import auth, fragment, messages
from lorawire import frame as wframe
from lorawire import record as wrecord
from lorawire.errors import DecodeError
from lorawire.replay import ReplayTable

log = logging.getLogger(__name__)

Num = int | float  # RSSI comes as either

# Drop reasons of the receive path (counters and metrics.dropped, prefixed "mesh_").
D_BANNED = "banned"
D_NOT_FOR_US = "not_for_us"
D_REASSEMBLY = "reassembly"
D_REPLY_RATE = "reply_rate"


class MeshBlame:
    """Charges a mesh node for a fault proven against it; what it costs is lorawire's
    rule (`auth.blame`), the same as on a board, priced by the gateway's list."""

    def __init__(self, host: MeshHost, peers: MeshPeers, counters: MeshCounters) -> None:
        self.host = host
        self.peers = peers
        self.counters = counters

    def charge(
        self,
        kind: Misbehaviour,
        reason: str,
        node_id: bytes,
        msg_type: int | None,
        data: bytes,
        detail: str | None = None,
    ) -> None:
        """Points for `node_id`; the evidence says "mesh: <detail or reason>"."""
        self.counters.count("misbehaviour_" + kind.value)
        self.peers.note_heard(node_id, self.peers.hops_of(node_id))
        self.host.misbehaving(kind, node_id, None, "mesh: " + (detail or reason), msg_type, data)


class Replier:
    """Control answers to unicasts (ACK, PONG): link-tagged to a direct neighbour whose
    key we hold, else network-tagged, hop limit = the asker's distance; each asker is
    limited to `reply_rate_per_min`."""

    def __init__(
        self,
        framer: MeshFramer,
        link_keys: auth.LinkKeyCache,
        tuning: MeshTuning,
        counters: MeshCounters,
        submit: Callable[[bytes, int], bool],
    ) -> None:
        self.framer = framer
        self.link_keys = link_keys
        self.counters = counters
        self._submit = submit
        self._buckets: BucketTable[bytes] = BucketTable(
            tuning.reply_rate_per_min / 60.0, tuning.reply_burst, tuning.requesters_max
        )

    def reply(self, f: wframe.Frame, msg_type: int, fields: dict[int, Any]) -> None:
        src = bytes(f.source)
        if not self._buckets.take(src):
            self.counters.drop(D_REPLY_RATE)
            return
        hops = min(f.hop_count, wframe.MAX_HOPS)
        key = self.link_keys.get(src) if hops == 0 else None
        body = messages.encode_body(msg_type, fields)
        frame = self.framer.seal(
            msg_type, body, dest=src, hop_limit=hops, bridged=False, link_key=key
        )
        self._submit(frame, PRIO_CONTROL)


class MeshReceiver:
    """The receive pipeline (see the module docstring)."""

    def __init__(
        self,
        host: MeshHost,
        network_key: bytes,
        tuning: MeshTuning,
        counters: MeshCounters,
        *,
        peers: MeshPeers,
        link_keys: auth.LinkKeyCache,
        bans: MeshBans,
        relay: MeshRelay,
        blame: MeshBlame,
        replier: Replier,
        newcomer: Callable[[], None],
    ) -> None:
        self.host = host
        self.identity = host.identity
        self.network_key = network_key
        self.tuning = tuning
        self.counters = counters
        self.peers = peers
        self.link_keys = link_keys
        self.bans = bans
        self.relay = relay
        self.blame = blame
        self.replier = replier
        self._newcomer = newcomer  # a node we never heard of: announce ourselves soon
        self.bridge_id: bytes = bytes(8)  # the bridge board the frames come through
        self.replay = ReplayTable(tuning.replay_sources)
        # follows each message's attribution too (every fragment attributed, or not)
        self.reassembler = fragment.Reassembler(
            tuning.reassembly_slots, tuning.reassembly_timeout_ms, MAX_OBJECT_MESSAGE
        )

    def expire(self) -> None:
        """Give up on messages whose fragments stopped coming."""
        self.reassembler.expire(_ms())

    # ---- the pipeline ------------------------------------------------------------------

    def on_frame(self, data: bytes, rssi: int | float, snr: float) -> None:
        """One frame from the bridge radio (a listener of MeshLink.on_frame). Never raises."""
        try:
            self._receive(bytes(data), rssi, snr)
        except Exception:
            self.counters.count("errors")
            log.exception("mesh frame handling failed")

    def _receive(self, data: bytes, rssi: int | float, snr: float) -> None:
        self.counters.count("frames_in")
        self.counters.metric("frame_in", len(data))
        try:
            src = bytes(wframe.peek_source(data))
        except DecodeError:
            self.counters.drop(auth.R_BAD_FRAME)
            return
        if self.host.banman.is_banned(node_id=src):
            self.counters.drop(D_BANNED)
            self.bans.push_if_missing(src)
            return
        dest = wframe.peek_dest(data)
        if dest is not None and data[0] & wframe.FLAG_LINK and dest != self.identity.id:
            # A link-tagged unicast between two other nodes: we cannot check its tag.
            self.counters.drop(D_NOT_FOR_US)
            return
        v = auth.open_frame(data, self.network_key, self.link_keys, self.replay, self.identity.id)
        if not v.accepted:
            self._rejected(v, data)
            return
        f = v.frame
        self.counters.count("accepted")
        self.peers.note_heard(src, f.hop_count)
        self.host.mesh_heard(src)
        if v.attributed:
            self.host.score_for(node_key(src)).message(True)
        if f.hop_count == 0 and self.peers.has_record(src):
            self.host.score_for(node_key(src)).link(float(rssi), float(snr))
        if f.dest is not None and f.dest != self.identity.id:
            self.counters.count("overheard")
            return
        self._dispatch(v, f.type, v.value, data, rssi, snr, v.attributed)

    def _rejected(self, v: auth.Verdict, data: bytes) -> None:
        reason = v.reason or "unknown"
        if reason == auth.R_OWN_FRAME:
            self.counters.count("own_echo")  # our broadcast, relayed back by a neighbour
            return
        code = auth.blame(v)
        if code is not None and v.frame is not None:
            kind = Misbehaviour.from_code(code)
            self.blame.charge(kind, reason, bytes(v.frame.source), v.frame.type, data)
            self.counters.drop("attributed_" + reason)
            return
        self.counters.drop(reason)

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
        self.counters.count("rx_" + messages.type_name(msg_type).lower())
        handle = HANDLERS.get(msg_type)
        if handle is not None:
            handle(self, v, msg_type, value, data, rssi, snr, attributed)
        else:
            self.counters.count("ignored")

    def _on_announce(
        self,
        v: auth.Verdict,
        msg_type: int,
        value: Any,
        data: bytes,
        rssi: Num,
        snr: float,
        _: bool,
    ) -> None:
        f = v.frame
        self._on_record(v, value, bytes(f.source), data, rssi, snr, f.hop_count, direct=True)

    def _on_pex_response(
        self,
        v: auth.Verdict,
        msg_type: int,
        value: Any,
        data: bytes,
        rssi: Num,
        snr: float,
        _: bool,
    ) -> None:
        hops = v.frame.hop_count + 1
        for rv in value[0]:
            if not self._on_record(v, rv, None, data, rssi, snr, hops, direct=False):
                break

    def _on_relay_message(
        self,
        v: auth.Verdict,
        msg_type: int,
        value: Any,
        data: bytes,
        rssi: Num,
        snr: float,
        attributed: bool,
    ) -> None:
        f = v.frame
        if f.dest is not None:
            self.replier.reply(f, messages.ACK, {0: f.seq})
        self.relay.to_relay(bytes(f.source), attributed, f.hop_count, msg_type, value, data)

    def _on_ping(
        self,
        v: auth.Verdict,
        msg_type: int,
        value: Any,
        data: bytes,
        rssi: Num,
        snr: float,
        _: bool,
    ) -> None:
        if v.frame.dest is not None:
            self.replier.reply(v.frame, messages.PONG, {0: value[0]})
        else:
            self.counters.count("ignored")  # a broadcast PING asks no one in particular

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
        held = None if rec is None else self.peers.record(rec.id)
        if held is not None and rec is not None and held.encoded == rec.encoded:
            rec = held  # re-heard: no signature check, refresh the link data
        else:
            verdict, rec = auth.judge_record(v, held, expected, value)
            if rec is None:
                if verdict.kind == auth.DROP_ATTRIBUTED:
                    self._rejected(verdict, data)
                    return False
                self.counters.drop(verdict.reason or "record")
                return True
            if held is None:
                # A node we never heard of may lack our record too (a single announce can
                # be lost to a collision): announce again soon, min gap permitting.
                self._newcomer()
            self.peers.hold(rec)
        if not direct and self.peers.is_direct(rec.id):
            return True  # announced itself: a PEX copy must not overwrite its link data
        if self.host.banman.is_banned(node_id=rec.id):
            return True
        if rec.id == self.bridge_id:
            self.counters.count("bridge_record")  # our own radio, not a peer beyond it
            return True
        neighbour = direct and hops == 0  # only then is the radio's link its link
        self.host.add_mesh_announcement(
            rec,
            self.bridge_id,
            float(rssi) if neighbour else None,
            float(snr) if neighbour else None,
            hops,
        )
        if direct:
            self.peers.note_heard(rec.id, hops)
            self.peers.note_direct(rec.id)
        self.counters.count("records")
        return True

    def _on_fragment(
        self,
        v: auth.Verdict,
        msg_type: int,
        value: Any,
        data: bytes,
        rssi: Num,
        snr: float,
        attributed: bool,
    ) -> None:
        f = v.frame
        src = bytes(f.source)
        try:
            message = self.reassembler.add(src, value, _ms(), attributed)
        except fragment.ReassemblyError as exc:
            self.counters.drop(D_REASSEMBLY)
            code = auth.blame(exc)
            if code is not None:
                reason = "fragment_" + exc.reason
                kind = Misbehaviour.from_code(code)
                self.blame.charge(kind, reason, src, f.type, data, "fragment " + exc.reason)
            return
        if message is None:
            return
        whole_attr = self.reassembler.attributed
        try:
            inner_type, body = messages.parse_fragment_payload(message)
            inner = messages.decode_body(inner_type, body)
        except messages.UnknownType:
            self.counters.drop(auth.R_UNKNOWN_TYPE)
            return
        except DecodeError as exc:
            reason = "fragment_" + auth.R_MALFORMED
            if whole_attr:
                kind = Misbehaviour.MALFORMED_FRAME
                self.blame.charge(kind, reason, src, f.type, data, str(exc))
            self.counters.drop(reason)
            return
        self.counters.count("reassembled")
        if inner_type in RELAY_TYPES:
            self.relay.to_relay(src, whole_attr, f.hop_count, inner_type, inner, message)
        elif inner_type in (messages.ANNOUNCE, messages.PEX_RESPONSE):
            inner_v = auth.Verdict(auth.ACCEPT, whole_attr, None, f, inner)
            self._dispatch(inner_v, inner_type, inner, data, rssi, snr, whole_attr)
        else:
            self.counters.count("ignored")


_Handler = Callable[[MeshReceiver, auth.Verdict, int, Any, bytes, Num, float, bool], None]
# What the wing does with each message type heard on the mesh (after the checks in
# `on_frame`); the types it hears and leaves alone are in NOT_ON_MESH, with why.
# tests/test_dispatch.py checks that every type lorawire.messages knows is in one of them.
HANDLERS: dict[int, _Handler] = {
    messages.ANNOUNCE: MeshReceiver._on_announce,
    messages.PEX_RESPONSE: MeshReceiver._on_pex_response,
    messages.FRAGMENT: MeshReceiver._on_fragment,
    messages.PING: MeshReceiver._on_ping,
    **{t: MeshReceiver._on_relay_message for t in RELAY_TYPES},
}
NOT_ON_MESH: dict[int, str] = {
    messages.PEX_REQUEST: "boards answer each other; our record reaches them by ANNOUNCE",
    messages.PONG: "the wing sends no PING",
    messages.ACK: "the bridge's TX_DONE says what went out; nothing is resent on an ACK",
    messages.REJECT: "counted and ignored, as on TCP",
    messages.HELLO: "the TCP handshake",
    messages.AUTH: "the TCP handshake",
    messages.UART_LINK: "the bridge board's UART, never the air",
}


def _ms() -> int:
    return int(time.monotonic() * 1000)
