"""The receive path of the mesh node (mixed into loranode.node.Node).

Cheapest checks first (docs/AUTH.md "Receiving a frame"):
  1. `frame.peek_source` -- a banned source is dropped here (`dropped_banned`): no tag,
     no signature, no body decode.
  2. our own id -> dropped (`own`); a LINK frame addressed to someone else cannot be
     verified by us -> dropped (`not_for_me`).
  3. the per-source flood limit (loranode.flood), see below.
  4. `auth.open_frame` with the network key, or the pairwise link key (LINK flag; a
     LinkKeyCache over the verified public keys of the peer table), and the replay
     table. DROP_UNATTRIBUTED is only counted (`drop_<reason>`); DROP_ATTRIBUTED adds
     misbehaviour points to the source (BanTable) and an invalid mark to its score.
  5. ANNOUNCE / PEX records: decoded, then duplicate and stale copies dropped by
     comparing with the held record BEFORE any signature check; only a new record
     costs one Ed25519 verification (`sig_checks`), through `auth.judge_record`, whose
     verdict decides attribution (bad signature under a link tag = the sender's fault).
  6. Known source heard -> liveness, RSSI/SNR (direct frames only) and valid count.

Flood limit: after the ban, own-id and not-for-me checks (all header-only, so a frame
we discard for free costs its source nothing) and before any tag work, every frame
takes one token from its source's FloodTable bucket. A frame over the limit is dropped
(`dropped_flood`). Attribution: the header's source is only a claim and anyone can
spend a victim's tokens with forged frames, so points are charged only when the
over-limit frame itself proves its origin: it carries the LINK flag, is addressed to
us, its pairwise tag verifies (one HMAC; the key comes from the LinkKeyCache, derived
only for a peer whose signed record we hold) and its sequence is fresh in the source's
link replay window (a recorded frame replayed by a third party is no evidence). Such a
frame adds FLOOD points (`flood_points`). Network-tagged or relayed floods are dropped
and counted, never charged. Forged frames under a victim's id can drain its bucket
here (a per-source limit before authentication cannot avoid that), but never get it
banned.

FRAGMENT frames (lorawire.fragment.Reassembler, `capacities.reassembly` slots, each
message at most fragment.max_message() bytes and REASM_TIMEOUT_MS old): a complete
message is decoded and dispatched as if it had arrived whole (its header fields are
those of the completing fragment; an ANNOUNCE rebuilt from fragments is not relayed
again: the fragments themselves were). It is attributed only if every fragment carried
a valid link tag (tracked per reassembly slot). Refusals (ReassemblyError) add
MALFORMED points to `.source` only when attributed that way and only for the sender's
faults (malformed, oversize, inconsistent); `busy` and `quota` are our capacity.

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

from loranode import bans as bn
from loranode.app import APP_TYPES
from loranode.pex import HOPS_UNKNOWN, PEX_ANSWER_GAP_MS, PEX_BURST_MAX
from loranode.txqueue import BLOCKS, CONTROL, GOSSIP
from lorawire import auth
from lorawire import fragment as fg
from lorawire import frame as fr
from lorawire import messages as msg
from lorawire import record as rc
from lorawire.errors import DecodeError

ATTR_RING = 8  # recent (source, attributed) deliveries, for report_invalid
REASM_TIMEOUT_MS = fg.DEFAULT_TIMEOUT_MS


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

    def handle_frame(self, data, rssi=None, snr=None):
        """Process one received frame (bytes); never raises on bad input."""
        c = self.c
        c["rx"] += 1
        mono = self.clock.now()
        t = mono & self._mask
        try:
            src = fr.peek_source(data)
        except DecodeError:
            c["bad_frame"] += 1
            return
        if self.bans.is_banned(src, t):
            c["dropped_banned"] += 1
            return
        if src == self.id:
            c["own"] += 1
            return
        flags = data[0] & 0x0F
        if (
            flags & fr.FLAG_DEST
            and flags & fr.FLAG_LINK
            and len(data) >= fr.HEADER_UNICAST
            and data[11:19] != self.id
        ):
            c["not_for_me"] += 1
            return
        ok = self.flood.allow(src, mono)
        c["flood_evicted"] = self.flood.evicted
        if not ok:
            c["dropped_flood"] += 1
            if flags & fr.FLAG_LINK and self._proves_origin(data, src):
                c["flood_points"] += 1
                self.misbehaved(src, bn.FLOOD, t)
            return
        v = auth.open_frame(data, self.net_key, self.link_keys, self.replay, self.id)
        if not v.accepted:
            self._dropped(v, t)
            return
        c["accepted"] += 1
        if v.attributed:
            c["attributed"] += 1
        f = v.frame
        direct = f.hop_count == 0
        s = self.peers.find(src)
        if s >= 0:
            self.peers.heard(src, t, rssi, snr, f.hop_count, src if direct else None)
        self._dispatch(v, data, rssi, snr, t, mono)

    def _proves_origin(self, data, src):
        """A LINK frame to us whose pairwise tag verifies and whose sequence is fresh:
        only `src` can have sent it (flood attribution; no body decode)."""
        try:
            f = fr.decode(data)
        except DecodeError:
            return False
        if f.dest != self.id:
            return False
        key = self.link_keys.get(src)
        if key is None or not auth.check(key, fr.tagged_region(data), f.tag):
            return False
        return self.replay.check_and_update(src + b"L", f.seq)

    def _dispatch(self, v, data, rssi, snr, t, mono, whole=True):
        """Act on an accepted message; `whole` False for one rebuilt from fragments
        (`data` is then None: nothing to relay)."""
        f = v.frame
        src = f.source
        mt = f.type
        to_me = f.dest is None or f.dest == self.id
        if mt == msg.ANNOUNCE:
            self._on_announce(v, data, rssi, snr, t, mono)
            return
        if to_me:
            if mt == msg.FRAGMENT:
                if whole:
                    self._on_fragment(v, rssi, snr, t, mono)
            elif mt == msg.PEX_REQUEST and f.dest is not None:
                self._on_pex_request(v, t, mono)
            elif mt == msg.PEX_RESPONSE:
                self._on_pex_response(v, rssi, snr, t, mono)
            elif mt == msg.PING and f.dest is not None:
                self._reply(f, msg.PONG, {0: v.value[0]})
            elif mt == msg.PONG:
                self._answered(src, 0, v.value[0], t, mono)
            elif mt == msg.ACK:
                self._answered(src, 1, v.value[0], t, mono)
            elif mt in APP_TYPES:
                self._deliver(v, mono)
        if whole and f.dest != self.id:
            self._maybe_relay(f, data, mt)

    def _frag_slot(self, src, msg_id):
        i = 0
        for sl in self.reasm.slots:
            if sl.source == src and sl.msg_id == msg_id:
                return i
            i += 1
        return -1

    def _on_fragment(self, v, rssi, snr, t, mono):
        c = self.c
        c["frag_rx"] += 1
        f = v.frame
        src = f.source
        msg_id = v.value[0]  # the body passed fragment.check_fields in open_frame
        i = self._frag_slot(src, msg_id)
        ok = bool(v.attributed) and (i < 0 or self.frag_ok[i] == 1)
        try:
            whole = self.reasm.add(src, v.value, mono)
        except fg.ReassemblyError as e:
            c["frag_rejected"] += 1
            if ok and e.reason not in (fg.BUSY, fg.QUOTA):
                c["frag_points"] += 1
                self.misbehaved(bytes(e.source), bn.MALFORMED, t)
            return
        if whole is None:
            j = self._frag_slot(src, msg_id)
            if j >= 0:
                self.frag_ok[j] = 1 if ok else 0
            return
        c["frag_done"] += 1
        try:
            mt, body = msg.parse_fragment_payload(whole)
            value = msg.decode_body(mt, body)
        except DecodeError:  # UnknownType included
            c["frag_rejected"] += 1
            if ok:
                c["frag_points"] += 1
                self.misbehaved(src, bn.MALFORMED, t)
            return
        inner = fr.Frame(
            mt, src, f.seq, f.dest, f.flags, hop_limit=f.hop_limit, hop_count=f.hop_count
        )
        self._dispatch(_Inner(inner, value, ok), None, rssi, snr, t, mono, False)

    def _dropped(self, v, t):
        reason = v.reason or "unknown"
        key = "drop_" + reason
        self.c[key] = self.c.get(key, 0) + 1
        if v.kind == auth.DROP_ATTRIBUTED:
            self.c["drop_attributed"] += 1
            kind = bn.BAD_SIGNATURE if reason == "record_bad_signature" else bn.MALFORMED
            self.misbehaved(v.frame.source, kind, t)

    def misbehaved(self, node_id, kind, t):
        """Charge node_id (an attributed fault); True if it is now banned."""
        self.c["points"] += 1
        s = self.peers.find(node_id)
        if s >= 0:
            self.peers.record_invalid(s, t)
        banned = self.bans.add_points(node_id, kind, t)
        if banned:
            self.c["bans"] += 1
            if s >= 0:
                self.rec_id[s] = None
                self.rec_enc[s] = None
                self.peers.remove(node_id)
            self.link_keys.forget(node_id)
            self.flood.forget(node_id)
        return banned

    def _check_record(self, v, value, expected, t):
        """A Record that is new and correctly signed, else None (counted, maybe blamed)."""
        c = self.c
        try:
            rec = rc.decode_record(value)
        except DecodeError:
            c["bad_record"] += 1
            if v.attributed:
                self.misbehaved(v.frame.source, bn.MALFORMED, t)
            return None
        if expected is not None and rec.id != expected:
            c["bad_record"] += 1
            return None
        if rec.id == self.id:
            return None
        if self.bans.is_banned(rec.id, t):
            c["dropped_banned"] += 1
            return None
        s = self.peers.find(rec.id)
        if self._held(s, rec.id):
            if self.rec_enc[s] == rec.encoded:
                c["dup_record"] += 1
                return None
            if rec.seq <= self.rec_seq[s]:
                c["stale_record"] += 1
                return None
        c["sig_checks"] += 1
        v2, rec = auth.judge_record(v, None, None, rec)
        if rec is None:
            c["bad_record"] += 1
            if v2.kind == auth.DROP_ATTRIBUTED:
                self.misbehaved(v.frame.source, bn.BAD_SIGNATURE, t)
            return None
        return rec

    def _admit(self, rec, t, mono, rssi, snr, hops, next_hop):
        pt = self.peers
        s = pt.find(rec.id)
        if s < 0:
            s = pt.heard(rec.id, t, rssi, snr, hops, next_hop, rec.kind, True)
            if s < 0:
                return -1
        pt.verify(s, rec.public, rec.kind)
        if self.rec_id[s] != rec.id:
            self.c["new_peers"] += 1
            if hops == 0:
                self.announcer.reset(mono)
            self.last_new_s = self.sim_s(mono)
            self.pex_answered[s] = mono - PEX_ANSWER_GAP_MS
            # news travels on: one quick round per neighbour, so each of them sees
            # the news in our `have` list and pulls it (see _on_pex_request)
            nb = len(self.neighbours(t))
            self._pex_burst = nb if nb < PEX_BURST_MAX else PEX_BURST_MAX
            self._pex_soon(mono)
        self._store_record(s, rec)
        return s

    def _on_announce(self, v, data, rssi, snr, t, mono):
        f = v.frame
        self.c["announce_rx"] += 1
        rec = self._check_record(v, v.value, f.source, t)
        if rec is None:
            return
        direct = f.hop_count == 0
        self._admit(rec, t, mono, rssi, snr, f.hop_count, rec.id if direct else None)
        if (
            self.relay
            and data is not None
            and f.hop_count < f.hop_limit
            and self.seen.check_and_add(rec.id, rec.seq & 0x7FFFFFFF)
        ):
            nxt = fr.next_hop(data)
            if nxt is not None and self.txq.push(nxt, GOSSIP, mono):
                self.c["relayed"] += 1

    def _maybe_relay(self, f, data, mt):
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
        if self.txq.push(nxt, prio, self.clock.now()):
            self.c["relayed"] += 1

    def _deliver(self, v, mono):
        f = v.frame
        self.c["app_rx"] += 1
        i = self._attr_pos
        self.attr_id[i] = f.source
        self.attr_ok[i] = 1 if v.attributed else 0
        self._attr_pos = (i + 1) % ATTR_RING
        if f.dest == self.id:
            self._reply(f, msg.ACK, {0: f.seq})
        try:
            self.app.on_message(f.source, f.type, v.value)
        except Exception as e:  # an application bug must not stop the radio
            self.c["app_errors"] = self.c.get("app_errors", 0) + 1
            print("app error:", repr(e))

    def report_invalid(self, peer_id, reason=""):
        """App hook: the last message from peer_id was invalid. True if points were charged."""
        self.c["invalid_reported"] += 1
        i = self._attr_pos
        for _ in range(ATTR_RING):
            i = (i - 1) % ATTR_RING
            if self.attr_id[i] == peer_id:
                if not self.attr_ok[i]:
                    return False
                self.attr_ok[i] = 0  # one report per delivered message
                t = self.clock.now() & self._mask
                self.misbehaved(bytes(peer_id), bn.INVALID_SYNC, t)
                return True
        return False
