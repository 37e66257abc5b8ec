"""The receive path of the mesh node (mixed into loranode.node.Node).

Cheapest checks first (docs/AUTH.md "Receiving a frame"):
  1. `frame.peek_source` -- a banned source is dropped here (`dropped_banned`): no tag,
     no signature, no body decode.
  2. our own id -> dropped (`own`); a LINK frame addressed to someone else cannot be
     verified by us -> dropped (`not_for_me`).
  3. `auth.open_frame` with the network key, or the pairwise link key (LINK flag; derived
     from the verified public key the peer table holds), and the replay window. An
     unattributed drop is only counted (`drop_<reason>`); an attributed one adds
     misbehaviour points to the source (BanTable) and an invalid mark to its score.
  4. the per-source flood limit (loranode.flood), see below.
  5. ANNOUNCE / PEX records: decoded, then duplicate and stale copies dropped by
     comparing with the held record BEFORE any signature check; only a new record
     costs one Ed25519 verification (`sig_checks`), through `auth.judge_record`, whose
     verdict decides attribution (bad signature under a link tag = the sender's fault).
  6. Known source heard -> liveness, RSSI/SNR (direct frames only) and valid count.

Flood limit: only frames that passed their tag and the replay window spend a token from
their source's bucket, so neither forged frames under a victim's id (they fail the tag)
nor a replayed genuine frame of the victim (the window refuses it) can drain its
allowance. A frame over the limit is dropped (`dropped_flood`); it adds FLOOD points to
its source only when it is link-tagged, i.e. proven to come from there (`flood_points`).
A network-tagged flood proves only that some member sent it: dropped, never charged.
(The tag check before the bucket costs one HMAC per frame; a LoRa channel carries few
enough frames for that, and a check before it could be spent by anyone.)

FRAGMENT frames (lorawire.fragment.Reassembler, `capacities.reassembly` slots): a
complete message is decoded and dispatched as if it had arrived whole (its header fields
are those of the completing fragment; an ANNOUNCE rebuilt from fragments is not relayed
again: the fragments themselves were). It is attributed only if every fragment carried
a valid link tag (the Reassembler tracks it). Refusals (ReassemblyError) cost `.source`
what `auth.blame` says: only when attributed that way and only for the sender's faults
(malformed, inconsistent; oversize is a protocol violation); `busy` and `quota` are our
capacity.

Routing facts kept per peer (PeerTable hops / next_hop):
  hops = the hop_count of the frame that carried its record (0 = direct neighbour);
  HOPS_UNKNOWN (255) = learned by peer exchange only. next_hop = the peer itself for a
  direct neighbour, the answering neighbour for a PEX-learned record, and None (unknown)
  for a relayed announce: the v1 header names the source, not the transmitter, so a
  relay is invisible. Unicasts are therefore forwarded by scoped flooding: a relay
  forwards a network-tagged unicast only if it knows the destination within the
  frame's remaining hop budget (hop_count + 1 + hops(dest) <= hop_limit).

Relaying announces: a record is relayed at most once, and only the first time it is
verified (SeenRing keyed by (origin, record seq)), so periodic announces of the same
record are liveness only.

Application messages (loranode.app APP_TYPES) addressed to us or broadcast go to
`app.on_message`; a unicast to us is acknowledged (ACK). The last ATTR_RING deliveries
remember whether they were attributed, for `report_invalid`.
"""

from loranode import counters as C
from loranode.app import APP_TYPES
from loranode.constants import GC_THRESHOLD
from loranode.pex import HOPS_UNKNOWN, PEX_BURST_MAX
from loranode.txqueue import BLOCKS, CONTROL, GOSSIP
from lorawire import auth
from lorawire import fragment as fg
from lorawire import frame as fr
from lorawire import messages as msg
from lorawire import record as rc
from lorawire.errors import DecodeError
from lorawire.replay import ReplayTable

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int
try:
    from gc import threshold as _gc_threshold
except ImportError:  # CPython (tests, tools/dessim): its collector has no byte threshold
    _gc_threshold = None

ATTR_RING = const(8)  # recent (source, attributed) deliveries, for report_invalid
REASM_TIMEOUT_MS = fg.DEFAULT_TIMEOUT_MS
# unattributed drops by reason (lorawire.auth R_*), each its own counter
_DROP_COUNTERS = {
    auth.R_BAD_TAG: C.DROP_BAD_TAG,
    auth.R_NO_KEY: C.DROP_NO_KEY,
    auth.R_REPLAY: C.DROP_REPLAY,
    auth.R_UNKNOWN_TYPE: C.DROP_UNKNOWN_TYPE,
    auth.R_MALFORMED: C.DROP_MALFORMED,
    auth.R_OWN_FRAME: C.DROP_OWN_FRAME,
    auth.R_BAD_FRAME: C.DROP_BAD_FRAME,
}


def _crypto_begin():
    """No threshold collections inside a signature check or a key derivation: each
    allocates hundreds of KB of short-lived big ints (about 1 MB per Ed25519 verify on
    the unix port), so GC_THRESHOLD would collect -- and mark every table -- over a
    hundred times per call (verify 10 -> 43 ms on the host with 100 KB live). Nothing
    long-lived is allocated in there; the first allocation after `_crypto_end` collects."""
    if _gc_threshold is not None:
        _gc_threshold(-1)


def _crypto_end():
    if _gc_threshold is not None:
        _gc_threshold(GC_THRESHOLD)


class _Inner:
    """An accepted message rebuilt from fragments, shaped like an auth.Verdict."""

    __slots__ = ("frame", "value", "attributed")
    kind = auth.ACCEPT
    accepted = True
    reason = None

    def __init__(self, frame, value, attributed):
        self.frame = frame
        self.value = value
        self.attributed = attributed


class Receive:
    """Frame handling for Node: every method works on the node's own tables."""

    def _init_receive(self, reassembly_slots):
        self.replay = ReplayTable(self.peers.capacity)
        self.reasm = fg.Reassembler(reassembly_slots, REASM_TIMEOUT_MS, fg.max_message())
        self.attr_id = [None] * ATTR_RING
        self.attr_ok = bytearray(ATTR_RING)
        self._attr_pos = 0
        self._key_of = self.link_key  # one bound method for open_frame, made once

    def link_key(self, peer_id):
        """The pairwise key with peer_id: cached, or derived from the public key of its
        verified record (None without one, or for an unusable key)."""
        key = self.link_keys.get(peer_id)
        if key is not None:
            return key
        pt = self.peers
        s = pt.find(peer_id)
        if s < 0 or pt.rec[s] is None:
            return None
        _crypto_begin()
        try:
            key = auth.link_key(self.identity.x_secret(), self.id, rc.public_of(pt.rec[s]))
        except ValueError:
            return None
        finally:
            _crypto_end()
        self.link_keys.put(pt.ids[s], key)
        return key

    def handle_frame(self, data, rssi=None, snr=None):
        """Process one received frame (bytes); never raises on bad input."""
        c = self.c
        c[C.RX] += 1
        now = self.clock.now()
        try:
            src = fr.peek_source(data)
        except DecodeError:
            c[C.BAD_FRAME] += 1
            return
        if self.bans.is_banned(src, now):
            c[C.DROPPED_BANNED] += 1
            return
        if src == self.id:
            c[C.OWN] += 1
            return
        pt = self.peers
        s = pt.find(src)
        if s >= 0:
            src = pt.ids[s]  # the table's own object: flood and replay entries share it
        link = data[0] & fr.FLAG_LINK
        if link and data[0] & fr.FLAG_DEST and fr.peek_dest(data) != self.id:
            c[C.NOT_FOR_ME] += 1
            return
        v = auth.open_frame(data, self.net_key, self._key_of, self.replay, self.id, source=src)
        if not v.accepted:
            self._dropped(v, now)
            return
        ok = self.flood.allow(src, now)
        c[C.FLOOD_EVICTED] = self.flood.evicted
        if not ok:
            c[C.DROPPED_FLOOD] += 1
            if v.attributed:
                c[C.FLOOD_POINTS] += 1
                self.misbehaved(src, auth.FLOOD, now)
            return
        c[C.ACCEPTED] += 1
        if v.attributed:
            c[C.ATTRIBUTED] += 1
        f = v.frame
        direct = f.hop_count == 0
        if s >= 0:
            pt.heard(src, now, rssi, snr, f.hop_count, src if direct else None)
        self._dispatch(v, data, rssi, snr, now)

    def _dispatch(self, v, data, rssi, snr, now, whole=True):
        """Act on an accepted message; `whole` False for one rebuilt from fragments
        (`data` is then None: nothing to relay)."""
        f = v.frame
        src = f.source
        mt = f.type
        if mt == msg.ANNOUNCE:
            self._on_announce(v, data, rssi, snr, now)
            return
        if f.dest is None or f.dest == self.id:
            if mt == msg.FRAGMENT:
                if whole:
                    self._on_fragment(v, rssi, snr, now)
            elif mt == msg.PEX_REQUEST and f.dest is not None:
                self._on_pex_request(v, now)
            elif mt == msg.PEX_RESPONSE:
                self._on_pex_response(v, now)
            elif mt == msg.PING and f.dest is not None:
                self._reply(f, msg.PONG, {0: v.value[0]})
            elif mt == msg.PONG:
                self._answered(src, 0, v.value[0], now)
            elif mt == msg.ACK:
                self._answered(src, 1, v.value[0], now)
            elif mt in APP_TYPES:
                self._deliver(v)
        if whole and f.dest != self.id:
            self._maybe_relay(f, data, mt, now)

    def _on_fragment(self, v, rssi, snr, now):
        c = self.c
        c[C.FRAG_RX] += 1
        f = v.frame
        src = f.source
        try:
            whole = self.reasm.add(src, v.value, now, bool(v.attributed))
        except fg.ReassemblyError as e:
            c[C.FRAG_REJECTED] += 1
            kind = auth.blame(e)
            if kind is not None:
                c[C.FRAG_POINTS] += 1
                self.misbehaved(bytes(e.source), kind, now)
            return
        if whole is None:
            return
        ok = self.reasm.attributed
        c[C.FRAG_DONE] += 1
        try:
            mt, body = msg.parse_fragment_payload(whole)
            value = msg.decode_body(mt, body)
        except DecodeError:  # UnknownType included
            c[C.FRAG_REJECTED] += 1
            if ok:
                c[C.FRAG_POINTS] += 1
                self.misbehaved(src, auth.MALFORMED, now)
            return
        inner = fr.Frame(
            mt, src, f.seq, f.dest, f.flags, hop_limit=f.hop_limit, hop_count=f.hop_count
        )
        self._dispatch(_Inner(inner, value, ok), None, rssi, snr, now, False)

    def _dropped(self, v, now):
        c = self.c
        if v.kind == auth.DROP_ATTRIBUTED:
            c[C.DROP_ATTRIBUTED] += 1
            self.misbehaved(v.frame.source, auth.blame(v), now)
        else:
            c[_DROP_COUNTERS.get(v.reason, C.DROP_RECORD)] += 1

    def misbehaved(self, node_id, kind, now):
        """Charge node_id (an attributed fault); True if it is now banned."""
        self.c[C.POINTS] += 1
        s = self.peers.find(node_id)
        if s >= 0:
            self.peers.record_invalid(s, now)
        banned = self.bans.add_points(node_id, kind, now)
        if banned:
            self.c[C.BANS] += 1
            self.forget(node_id)
        return banned

    def _check_record(self, v, value, expected, now):
        """A Record that is new and correctly signed, else None (counted, maybe blamed)."""
        c = self.c
        try:
            rec = rc.decode_record(value)
        except DecodeError:
            c[C.BAD_RECORD] += 1
            if v.attributed:
                self.misbehaved(v.frame.source, auth.MALFORMED, now)
            return None
        if expected is not None and rec.id != expected:
            c[C.BAD_RECORD] += 1
            return None
        if rec.id == self.id:
            return None
        if self.bans.is_banned(rec.id, now):
            c[C.DROPPED_BANNED] += 1
            return None
        pt = self.peers
        s = pt.find(rec.id)
        if pt.has_record(s):
            if pt.rec[s] == rec.encoded:
                c[C.DUP_RECORD] += 1
                return None
            if rec.seq <= pt.rec_seq[s]:
                c[C.STALE_RECORD] += 1
                return None
        c[C.SIG_CHECKS] += 1
        _crypto_begin()
        try:
            v2, rec = auth.judge_record(v, None, None, rec)
        finally:
            _crypto_end()
        if rec is None:
            c[C.BAD_RECORD] += 1
            kind = auth.blame(v2)
            if kind is not None:
                self.misbehaved(v.frame.source, kind, now)
            return None
        return rec

    def _admit(self, rec, now, rssi, snr, hops, next_hop):
        pt = self.peers
        s = pt.find(rec.id)
        if s < 0:
            s = pt.heard(rec.id, now, rssi, snr, hops, next_hop, rec.kind, True)
            if s < 0:
                return -1
        pt.verify(s, rec.kind)
        if pt.rec[s] is None:
            self.c[C.NEW_PEERS] += 1
            if hops == 0:
                self.announcer.reset(now)
            self.last_new = now
            self.pex_new_record(s, now)
            # news travels on: one quick round per neighbour, so each of them sees
            # the news in our `have` list and pulls it (see _on_pex_request)
            nb = len(self.neighbours(now))
            self._pex_burst = nb if nb < PEX_BURST_MAX else PEX_BURST_MAX
            self._pex_soon(now)
        self.pex_store(s, rec, now)
        return s

    def _on_announce(self, v, data, rssi, snr, now):
        f = v.frame
        self.c[C.ANNOUNCE_RX] += 1
        rec = self._check_record(v, v.value, f.source, now)
        if rec is None:
            return
        direct = f.hop_count == 0
        self._admit(rec, now, rssi, snr, f.hop_count, rec.id if direct else None)
        if (
            self.relay
            and data is not None
            and f.hop_count < f.hop_limit
            and self.seen.check_and_add(rec.id, rec.seq & 0x3FFFFFFF)
        ):
            nxt = fr.next_hop(data)
            if nxt is not None and self.txq.push(nxt, GOSSIP, now):
                self.c[C.RELAYED] += 1

    def _maybe_relay(self, f, data, mt, now):
        if not self.relay or f.hop_count >= f.hop_limit or f.flags & fr.FLAG_LINK:
            return
        if mt in (msg.PEX_REQUEST, msg.PEX_RESPONSE, msg.ANNOUNCE):
            return
        if f.dest is not None:
            s = self.peers.find(f.dest)
            if s < 0:
                return
            h = self.peers.hops[s]
            if h == HOPS_UNKNOWN or f.hop_count + 1 + h > f.hop_limit:
                return
        nxt = fr.next_hop(data)
        if nxt is None:
            return
        prio = CONTROL if mt in (msg.PING, msg.PONG, msg.ACK) else GOSSIP
        if mt == msg.BLOCK:
            prio = BLOCKS
        if self.txq.push(nxt, prio, now):
            self.c[C.RELAYED] += 1

    def _deliver(self, v):
        f = v.frame
        self.c[C.APP_RX] += 1
        i = self._attr_pos
        self.attr_id[i] = f.source
        self.attr_ok[i] = 1 if v.attributed else 0
        self._attr_pos = (i + 1) % ATTR_RING
        if f.dest == self.id:
            self._reply(f, msg.ACK, {0: f.seq})
        try:
            self.app.on_message(f.source, f.type, v.value)
        except Exception as e:  # an application bug must not stop the radio
            self.c[C.APP_ERRORS] += 1
            print("app error:", repr(e))

    def report_invalid(self, peer_id, reason=""):
        """App hook: the last message from peer_id was invalid. True if points were charged."""
        self.c[C.INVALID_REPORTED] += 1
        i = self._attr_pos
        for _ in range(ATTR_RING):
            i = (i - 1) % ATTR_RING
            if self.attr_id[i] == peer_id:
                if not self.attr_ok[i]:
                    return False
                self.attr_ok[i] = 0  # one report per delivered message
                self.misbehaved(bytes(peer_id), auth.INVALID_SYNC, self.clock.now())
                return True
        return False
