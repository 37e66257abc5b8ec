"""The mesh peer manager: receive path, discovery, peer exchange, bans, scoring, app hooks.

Receive path (cheapest checks first; docs/AUTH.md "Receiving a frame"):
  1. `frame.peek_source` -- a banned source is dropped here (`dropped_banned`): no tag,
     no signature, no body decode.
  2. our own id -> dropped (`own`); a LINK frame addressed to someone else cannot be
     verified by us -> dropped (`not_for_me`).
  3. `auth.open_frame` with the network key, or the pairwise link key (LINK flag; a
     LinkKeyCache over the verified public keys of the peer table), and the replay
     table. DROP_UNATTRIBUTED is only counted (`drop_<reason>`); DROP_ATTRIBUTED adds
     misbehaviour points to the source (BanTable) and an invalid mark to its score.
  4. ANNOUNCE / PEX records: decoded, then duplicate and stale copies dropped by
     comparing with the held record BEFORE any signature check; only a new record
     costs one Ed25519 verification (`sig_checks`), through `auth.judge_record`, whose
     verdict decides attribution (bad signature under a link tag = the sender's fault).
  5. Known source heard -> liveness, RSSI/SNR (direct frames only) and valid count.

Per-source flood limit (FloodTable): after the ban, own-id and not-for-me checks (all
header-only, so a frame we discard for free costs its source nothing) and before any
tag work, every frame takes one token from its source's bucket (`flood_rate_per_min`
tokens per node-clock minute, at most `flood_burst`; 0 disables the limit). The table
holds PEERS buckets, preallocated; an unknown source takes the least recently used
bucket (`flood_evicted`) and starts full. A frame over the limit is dropped
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

Discovery:
  * ANNOUNCE: our signed record, broadcast with `hop_limit`, at the adaptive interval of
    loranode.announce. The record sequence grows once per boot (persisted in
    `state.bin`), so periodic announces repeat the same record: neighbours take them
    as liveness and relays do not re-flood them (SeenRing keyed by (origin, record
    seq): a record is relayed at most once, and only the first time it is verified).
  * PEX (pull, anti-entropy): every `pex_interval_s` we ask ONE verified direct
    neighbour (round robin, never the one asked last) with a PEX_REQUEST naming the
    4-byte prefixes of our 16 most recently learned records. Idle rounds (nothing new
    since the last one) back off, doubling up to PEX_IDLE_MAX intervals. When we learn
    something new, up to PEX_BURST_MAX quick rounds follow (PEX_FAST_MS apart, longer
    in a dense neighbourhood and when the background budget is half spent).
    The neighbour answers with up to PEX_ANSWER_MAX records, one signed record per
    PEX_RESPONSE frame, newest first, skipping what the asker is known to hold: the
    request's `have` list, and the records the asker's own answers carried (a
    "neighbour i holds record j" bit matrix, evidence only). Records it broadcast in
    the last PEX_RESEND_MS come last. A direct asker gets a one-hop BROADCAST answer,
    so every neighbour overhears the records (free push); a multi-hop asker a unicast.
    Each asker is answered at most once per PEX_ANSWER_GAP_MS; unknown askers get
    nothing. If the asker's `have` list names records we lack, we pull from it next
    (targeted round), so news flows both ways.
  * Never auto-greet: hearing an unknown node sends nothing to it; only verified
    direct neighbours are asked (PEX) or pinged.
  * Gateways (record kind gateway) are flagged; `best_gateway()` prefers them by hops
    then score, and marks the chosen one NEXT_HOP (protected from eviction).

Transmit: TxQueue (CONTROL > BLOCKS > GOSSIP); every frame passes
DutyCycle.can_send for the configured region and channel, announces and PEX as
background traffic (at most half the budget). A frame that can never fit (dwell time
or budget) is dropped (`tx_never`). Each transmission waits a random 0..TX_JITTER_MS
first (no carrier sense on the simulated radio; jitter de-synchronises relays).

Frame sequence numbers survive reboots: `state.bin` reserves SEQ_BLOCK sequences at a
time and the node jumps to the next block at boot, so neighbours' replay windows
accept its first frames (docs/AUTH.md, replay windows).

Time: `Clock` gives integer monotonic ms scaled by the medium's speed factor (1 on a
board); tables get `ticks(mono)`, the DutyCycle gets mono itself.
"""

import gc
import struct

from loranode import bans as bn
from loranode.announce import AnnounceScheduler, rand
from loranode.app import APP_TYPES, App, Port
from loranode.clock import TICKS_PERIOD, ticks_diff, ticks_ms
from loranode.constants import PEERS, REASSEMBLY, new_index
from loranode.peers import KIND_GATEWAY, NEXT_HOP, PeerTable
from loranode.persist import read_file, write_atomic
from loranode.score import Scorer
from loranode.seen import SeenRing
from loranode.txqueue import BLOCKS, CONTROL, GOSSIP, TxQueue
from lorawire import auth, regions
from lorawire import fragment as fg
from lorawire import frame as fr
from lorawire import messages as msg
from lorawire import record as rc
from lorawire.airtime import NEVER, DutyCycle, time_on_air_ms
from lorawire.errors import DecodeError
from lorawire.replay import ReplayTable

HOPS_UNKNOWN = 255
SEQ_BLOCK = 256
PEX_WANT = 16
PEX_ANSWER_MAX = 6
PEX_ANSWER_GAP_MS = 10000
PEX_FIRST_MS = 8000
PEX_FAST_MS = 5000  # earliest next PEX round after one that brought news
PEX_BURST_MAX = 2  # quick rounds after news
PEX_IDLE_MAX = 4  # idle PEX rounds back off to at most this many intervals
PEX_RESEND_MS = 60000  # a record we broadcast is not offered again this soon
PENDING = 8  # outstanding pings / unicasts awaiting an answer
PENDING_TIMEOUT_MS = 30000
TX_JITTER_MS = 1000
RELAY_JITTER_MS = 3000
AGE_OUT_MS = 3600000
GOSSIP_MAX_AGE_MS = 600000
BLOCKS_MAX_AGE_MS = 1200000
ATTR_RING = 8  # recent (source, attributed) deliveries, for report_invalid
KIND_NAMES = ("full", "light", "gateway", "mesh")
FLOOD_RATE_PER_MIN = 20  # frames a source may send per node-clock minute (LoRa is slow)
FLOOD_BURST = 10  # frames a silent source may send at once
FLOOD_COST = 60000  # one frame in bucket units (1 unit = 1 ms at 1 frame/minute)
REASM_TIMEOUT_MS = fg.DEFAULT_TIMEOUT_MS

_STATE_MAGIC = b"LCS\x01"
_STATE_FMT = ">HI"
_BACKGROUND = (msg.ANNOUNCE, msg.PEX_REQUEST, msg.PEX_RESPONSE)
_COUNTERS = (
    "rx",
    "bad_frame",
    "dropped_banned",
    "own",
    "not_for_me",
    "accepted",
    "attributed",
    "drop_attributed",
    "sig_checks",
    "dup_record",
    "stale_record",
    "bad_record",
    "new_peers",
    "announce_rx",
    "announce_tx",
    "relayed",
    "pex_req_tx",
    "pex_req_rx",
    "pex_resp_tx",
    "pex_resp_rx",
    "pex_limited",
    "pex_unknown",
    "ping_tx",
    "pong_rx",
    "ack_rx",
    "timeouts",
    "app_rx",
    "app_tx",
    "tx",
    "tx_never",
    "tx_errors",
    "points",
    "bans",
    "invalid_reported",
    "dropped_flood",
    "flood_points",
    "flood_evicted",
    "frag_rx",
    "frag_done",
    "frag_rejected",
    "frag_points",
)

OPTION_DEFAULTS = {
    "status_interval_s": 60,
    "state_dir": ".",
    "hop_limit": fr.DEFAULT_HOP_LIMIT,
    "relay": True,
    "kind": "mesh",
    "pex_interval_s": 0,  # 0: the announce minimum
    "ping_interval_s": 0,  # 0: four times the announce minimum
    "stdin": True,
    "flood_rate_per_min": FLOOD_RATE_PER_MIN,  # 0: no per-source limit
    "flood_burst": FLOOD_BURST,
}


class OptionError(ValueError):
    pass


def options(d):
    """Validate the node's runtime section (config key "node"); a complete dict.

    loranode.config does not know these keys yet, so main.py takes the "node" section
    out of the file before validating the rest.
    """
    out = {}
    for k in OPTION_DEFAULTS:
        out[k] = OPTION_DEFAULTS[k]
    if d is None:
        return out
    if not isinstance(d, dict):
        raise OptionError("config: node is not an object")
    for k in d:
        if k not in OPTION_DEFAULTS:
            raise OptionError("config: unknown key node.%s" % k)
        v = d[k]
        want = OPTION_DEFAULTS[k]
        if isinstance(want, bool):
            if not isinstance(v, bool):
                raise OptionError("config: node.%s=%r is not true or false" % (k, v))
        elif isinstance(want, int):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 86400:
                raise OptionError("config: node.%s=%r is not an integer 0..86400" % (k, v))
        elif not isinstance(v, str) or not v:
            raise OptionError("config: node.%s=%r is not a non-empty string" % (k, v))
        out[k] = v
    if out["hop_limit"] > fr.MAX_HOPS:
        raise OptionError("config: node.hop_limit=%d is outside 0..15" % out["hop_limit"])
    if out["flood_rate_per_min"] and out["flood_burst"] < 1:
        raise OptionError("config: node.flood_burst must be at least 1")
    if out["kind"] not in KIND_NAMES:
        raise OptionError("config: node.kind=%r is not one of %s" % (out["kind"], KIND_NAMES))
    return out


class Clock:
    """Monotonic integer ms since start, scaled by a speed factor (meshsim) -- never wraps."""

    def __init__(self, speed=1.0):
        self.set_speed(speed)
        self._last = ticks_ms()
        self._acc = 0  # in 1/1000 ms

    def set_speed(self, speed):
        self.milli = int(speed * 1000 + 0.5)
        if self.milli < 1:
            self.milli = 1

    def now(self):
        t = ticks_ms()
        d = ticks_diff(t, self._last)
        if d > 0:
            self._last = t
            self._acc += d * self.milli
        return self._acc // 1000

    def wall_ms(self, sim_ms):
        """Real ms that `sim_ms` of node time takes."""
        return sim_ms * 1000 // self.milli


class FloodTable:
    """Per-source token buckets in preallocated parallel lists (see the module docstring).

    Units: a bucket holds up to burst * FLOOD_COST; it refills `rate` units per ms
    (rate frames per minute) and a frame costs FLOOD_COST. Times are node-clock ms.
    """

    def __init__(self, capacity=PEERS, rate_per_min=FLOOD_RATE_PER_MIN, burst=FLOOD_BURST):
        self.capacity = capacity
        self.rate = rate_per_min
        self.full = burst * FLOOD_COST
        self.ids = [None] * capacity
        self.credit = [0] * capacity
        self.t = [0] * capacity  # last frame seen (LRU key)
        self.index = new_index(capacity)
        self.count = 0
        self.evicted = 0

    def __len__(self):
        return self.count

    def _victim(self):
        best = 0
        for i in range(self.capacity):
            if self.ids[i] is None:
                return i
            if self.t[i] < self.t[best]:
                best = i
        return best

    def allow(self, src, now):
        """Take one token from src's bucket; False when it is empty (over the limit)."""
        if self.rate <= 0:
            return True
        i = self.index.get(src)
        if i is None:
            i = self._victim()
            old = self.ids[i]
            if old is None:
                self.count += 1
            else:
                del self.index[old]
                self.evicted += 1
            self.ids[i] = src
            self.index[src] = i
            self.credit[i] = self.full
        else:
            d = now - self.t[i]
            if d > 0:
                room = self.full - self.credit[i]
                if d >= room // self.rate + 1:
                    self.credit[i] = self.full
                else:
                    self.credit[i] += d * self.rate
        self.t[i] = now
        if self.credit[i] >= FLOOD_COST:
            self.credit[i] -= FLOOD_COST
            return True
        return False

    def forget(self, src):
        i = self.index.get(src)
        if i is not None:
            del self.index[src]
            self.ids[i] = None
            self.count -= 1


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


class Node:
    def __init__(self, cfg, identity, radio, opts=None, app=None, name=None, out=None):
        opts = options(opts)
        self.cfg = cfg
        self.opts = opts
        self.identity = identity
        self.id = identity.id
        self.radio = radio
        self.name = name or getattr(radio, "name", None)
        self.role = cfg.get("role", "node")
        self.kind = opts["kind"]
        self.out = out
        self.freq = cfg["frequency_hz"]
        self.sf = cfg["sf"]
        self.bw = cfg["bandwidth_hz"]
        self.cr = cfg["coding_rate"]
        from binascii import unhexlify

        self.net_key = unhexlify(cfg["network_key"])
        self.hop_limit = opts["hop_limit"]
        self.relay = opts["relay"]
        cap = cfg["capacities"]
        self.clock = Clock(getattr(radio, "speed", 1.0) or 1.0)
        self._mask = TICKS_PERIOD - 1
        self.state_dir = opts["state_dir"]
        w = cfg.get("score_weights") or {}
        scorer = Scorer(
            {
                "w_reliability": int(w.get("reliability", 40)),
                "w_link": int(w.get("performance", 30)),
                "w_behaviour": int(w.get("behaviour", 30)),
            }
        )
        n = cap["peers"]
        self.peers = PeerTable(n, scorer)
        self.rec_id = [None] * n  # owner id of the record held in the slot
        self.rec_seq = [0] * n
        self.rec_enc = [None] * n  # signed record bytes (answers PEX)
        self.rec_t = [0] * n  # node-clock ms when the record was learned
        self.rec_tx = [-PEX_RESEND_MS] * n  # node-clock ms we last broadcast it (PEX)
        self._row = (n + 7) // 8
        self.holds = bytearray(n * self._row)
        self.pex_answered = [0] * n  # node-clock ms of the last answer to that slot's peer
        self.bans = bn.BanTable(cap["bans"], path=self._path("bans.bin"))
        self.bans.load(now=self.ticks(0))
        self.seen = SeenRing(cap["seen"])
        self.replay = ReplayTable(n)
        self.link_keys = auth.LinkKeyCache(identity, cap["key_cache"], self._public_of)
        self.flood = FloodTable(n, opts["flood_rate_per_min"], opts["flood_burst"])
        nr = cap.get("reassembly", REASSEMBLY)
        self.reasm = fg.Reassembler(nr, REASM_TIMEOUT_MS, fg.max_message())
        self.frag_ok = bytearray(nr)  # every fragment so far in that slot was link-tagged
        self.gc_heap = None  # (free, alloc) right after the last `gc` command
        self.txq = TxQueue(cap["txqueue"], max_age_ms=(None, BLOCKS_MAX_AGE_MS, GOSSIP_MAX_AGE_MS))
        self.duty = DutyCycle(cfg["region"])
        amin = cfg["announce_interval_min_s"]
        self.announcer = AnnounceScheduler(amin, cfg["announce_interval_max_s"])
        self.pex_ms = (opts["pex_interval_s"] or amin) * 1000
        self.ping_ms = (opts["ping_interval_s"] or 4 * amin) * 1000
        self._pex_idle = self.pex_ms
        self.status_ms = opts["status_interval_s"] * 1000
        self.c = {}
        for k in _COUNTERS:
            self.c[k] = 0
        # pending pings / acks: (peer id, kind 0 ping / 1 ack, nonce or seq, sent ms)
        self.pend_id = [None] * PENDING
        self.pend_kind = bytearray(PENDING)
        self.pend_val = [0] * PENDING
        self.pend_t = [0] * PENDING
        self.attr_id = [None] * ATTR_RING
        self.attr_ok = bytearray(ATTR_RING)
        self._attr_pos = 0
        self.app = app if app is not None else App()
        self.port = Port(self)
        self.min_free = None
        self.last_new_s = None
        self.t0_sim = 0.0
        self._pex_rr = 0
        self._pex_target = None
        self._pex_burst = 0
        self._pex_news = 0
        self._pex_last_id = None
        self._pex_due = 0
        self._pex_last = 0
        self._ping_rr = 0
        self._tx_airtime_ms = 0
        self.running = False
        self._load_state()
        self.record = self._make_record()

    # --- time and persistence --------------------------------------------------------

    def ticks(self, mono):
        return mono & self._mask

    def sim_s(self, mono):
        return round(self.t0_sim + mono / 1000, 3)

    def _path(self, name):
        d = self.opts["state_dir"]
        return name if d in ("", ".") else d + "/" + name

    def _load_state(self):
        data = read_file(self._path("state.bin"))
        fseq = None
        rseq = 0
        if data is not None and len(data) == 10 and data[:4] == _STATE_MAGIC:
            fseq, rseq = struct.unpack(_STATE_FMT, data[4:])
        if fseq is None:
            b = rand(1 << 16)
            fseq = b
        self.seq = fseq & 0xFFFF
        self.rec_seq_own = (rseq + 1) & 0xFFFFFFFF
        self._seq_limit = (self.seq + SEQ_BLOCK) & 0xFFFF
        self._save_state()

    def _save_state(self):
        write_atomic(
            self._path("state.bin"),
            _STATE_MAGIC + struct.pack(_STATE_FMT, self._seq_limit, self.rec_seq_own),
        )

    def next_seq(self):
        s = self.seq
        self.seq = (s + 1) & 0xFFFF
        if self.seq == self._seq_limit:
            self._seq_limit = (self.seq + SEQ_BLOCK) & 0xFFFF
            self._save_state()
        return s

    def _make_record(self):
        services = rc.SVC_PEX | (rc.SVC_RELAY if self.relay else 0)
        if self.role == "bridge":
            services |= rc.SVC_BRIDGE
        fields = {
            "seq": self.rec_seq_own,
            "kind": KIND_NAMES.index(self.kind),
            "services": services,
            "mesh": (regions.REGION_NAMES.index(self.cfg["region"]), self.sf),
        }
        return rc.encode_record(fields, self.identity)

    # --- peer helpers --------------------------------------------------------------------

    def _public_of(self, node_id):
        s = self.peers.find(node_id)
        if s < 0:
            return None
        return self.peers.keys[s]

    def _held(self, s, node_id):
        return s >= 0 and self.rec_id[s] == node_id

    # "neighbour in slot i holds the record in slot j" bits, from evidence only: the
    # `have` list of its PEX requests and the records its PEX answers carry. An answer
    # skips what the asker is known to hold (a have list names at most 16 records).
    def _mark(self, i, j):
        self.holds[i * self._row + (j >> 3)] |= 1 << (j & 7)

    def _marked(self, i, j):
        return self.holds[i * self._row + (j >> 3)] & (1 << (j & 7))

    def _forget_marks(self, s, whole_row):
        h = self.holds
        r = self._row
        bit = ~(1 << (s & 7)) & 0xFF
        for i in range(self.peers.capacity):
            h[i * r + (s >> 3)] &= bit
        if whole_row:
            for b in range(s * r, s * r + r):
                h[b] = 0

    def _slot_of_public(self, public):
        pt = self.peers
        for k in pt.slots():
            if pt.keys[k] == public and self.rec_id[k] == pt.ids[k]:
                return k
        return -1

    def _store_record(self, s, rec):
        self._forget_marks(s, self.rec_id[s] != rec.id)
        self.rec_t[s] = self.clock.now()
        self.rec_tx[s] = -PEX_RESEND_MS
        self.rec_id[s] = rec.id
        self.rec_seq[s] = rec.seq
        self.rec_enc[s] = rec.encoded

    def neighbours(self, t):
        """Verified direct neighbours heard recently (slots)."""
        pt = self.peers
        out = []
        for s in pt.slots():
            if pt.hops[s] == 0 and self.rec_id[s] == pt.ids[s] and pt.age(s, t) < pt.recent_ms:
                out.append(s)
        return out

    def best_gateway(self):
        pt = self.peers
        best = -1
        for s in pt.slots():
            if pt.kind[s] != KIND_GATEWAY or self.rec_id[s] != pt.ids[s]:
                continue
            if best < 0 or (pt.hops[s], -pt.score[s]) < (pt.hops[best], -pt.score[best]):
                best = s
        for s in pt.slots():
            if s == best:
                pt.set_flag(s, NEXT_HOP)
            elif pt.flags[s] & NEXT_HOP:
                pt.clear_flag(s, NEXT_HOP)
        return None if best < 0 else pt.ids[best]

    def peer_list(self):
        pt = self.peers
        return [(pt.ids[s], pt.kind[s], pt.hops[s], pt.score[s]) for s in pt.slots()]

    def airtime(self, mono):
        d = self.duty
        return {
            "tx_ms": self._tx_airtime_ms,
            "used_ms": d.used_ms(self.freq, mono),
            "budget_ms": d.budget_ms(self.freq),
            "bg_used_ms": d.used_ms(self.freq, mono, True),
            "bg_budget_ms": d.budget_ms(self.freq, True),
            "announce_interval_s": self.announcer.last_interval // 1000,
        }

    # --- receive path --------------------------------------------------------------------

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

    def _fast_ms(self, mono):
        """Gap between quick PEX rounds: longer in a dense neighbourhood (each answer is
        overheard by more nodes there) and while the background budget runs low."""
        t = mono & self._mask
        nb = len(self.neighbours(t))
        ms = PEX_FAST_MS * (nb if nb > 2 else 2) // 2
        d = self.duty
        bg = d.used_ms(self.freq, mono, True)
        if 2 * bg > d.budget_ms(self.freq, True):
            ms *= 4
        return ms

    def _pex_soon(self, mono):
        """Bring the next PEX round forward (at most one per _fast_ms)."""
        soon = self._pex_last + self._fast_ms(mono)
        if soon < mono:
            soon = mono
        soon += rand(PEX_FAST_MS // 2 + 1)
        if soon < self._pex_due:
            self._pex_due = soon

    def _lacks_any(self, prefixes):
        pt = self.peers
        for p in prefixes:
            if p == self.id[:4]:
                continue
            found = False
            for k in pt.slots():
                rid = self.rec_id[k]
                if rid is not None and rid[:4] == p:
                    found = True
                    break
            if not found:
                return True
        return False

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

    def _on_pex_request(self, v, t, mono):
        c = self.c
        c["pex_req_rx"] += 1
        f = v.frame
        pt = self.peers
        s = pt.find(f.source)
        if not self._held(s, f.source):
            c["pex_unknown"] += 1
            return
        if mono - self.pex_answered[s] < PEX_ANSWER_GAP_MS:
            c["pex_limited"] += 1
            return
        have = v.value[1]
        want = v.value[0]
        # anti-entropy both ways: the asker's `have` list names records it holds; if
        # some are unknown here, ask the asker back soon (pull, rate-limited like any
        # round), so news also flows against the direction of the request
        if pt.hops[s] == 0 and self._lacks_any(have):
            self._pex_target = f.source
            self._pex_soon(mono)
        if want > PEX_ANSWER_MAX:
            want = PEX_ANSWER_MAX
        # Direct askers get a one-hop BROADCAST answer: every neighbour overhears the
        # signed records and learns them too (push for free, no extra airtime), which
        # is what makes knowledge cross a long line quickly. A multi-hop asker gets a
        # unicast routed back along its hop count.
        hops = pt.hops[s]
        dest = None if hops == 0 else f.source
        if hops == HOPS_UNKNOWN:
            hops = self.hop_limit
        # newest first: news is what the asker most likely lacks
        for p in have:
            for k in pt.slots():
                rid = self.rec_id[k]
                if rid is not None and rid[:4] == p:
                    self._mark(s, k)
                    break
        for k in self._newest(s, want, None, mono if dest is None else None, s):
            if dest is None:
                self.rec_tx[k] = mono
            body = b"\x81\x00\x91" + self.rec_enc[k]  # {0: [record]}, canonical msgpack
            if self._queue(msg.PEX_RESPONSE, body, dest, hops, GOSSIP, mono) is not None:
                c["pex_resp_tx"] += 1
                self.pex_answered[s] = mono  # only an answer that carried records counts

    def _newest(self, skip, limit, exclude=None, mono=None, holder=-1):
        """Up to `limit` slots holding records, most recently learned first; never slot
        `skip`, nor records whose 4-byte id prefix is in `exclude`. With `mono`, records
        we broadcast less than PEX_RESEND_MS ago come last: our neighbours most likely
        overheard them then (allocates a little)."""
        pt = self.peers
        out = []
        for k in pt.slots():
            rid = self.rec_id[k]
            if k == skip or rid is None or rid != pt.ids[k]:
                continue
            if exclude is not None and rid[:4] in exclude:
                continue
            if holder >= 0 and self._marked(holder, k):
                continue
            out.append(k)
        rt = self.rec_t
        if mono is None:
            out.sort(key=lambda k: -rt[k])
        else:
            tx = self.rec_tx
            out.sort(key=lambda k: (mono - tx[k] < PEX_RESEND_MS, -rt[k]))
        return out[:limit]

    def _on_pex_response(self, v, rssi, snr, t, mono):
        self.c["pex_resp_rx"] += 1
        f = v.frame
        via = f.source if f.hop_count == 0 else None
        i = self.peers.find(f.source) if via is not None else -1
        if not self._held(i, f.source):
            i = -1
        for value in v.value[0]:
            rec = self._check_record(v, value, None, t)
            if rec is not None:
                self._admit(rec, t, mono, None, None, HOPS_UNKNOWN, via)
            if i >= 0 and isinstance(value, dict):
                j = self._slot_of_public(value.get(0))
                if j >= 0:
                    self._mark(i, j)  # it sent the record: it holds it

    def _answered(self, src, kind, val, t, mono):
        for i in range(PENDING):
            if self.pend_id[i] == src and self.pend_kind[i] == kind and self.pend_val[i] == val:
                self.pend_id[i] = None
                s = self.peers.find(src)
                if kind == 0:
                    self.c["pong_rx"] += 1
                    if s >= 0:
                        self.peers.record_ping(s, mono - self.pend_t[i], t)
                else:
                    self.c["ack_rx"] += 1
                    if s >= 0:
                        self.peers.record_ack(s, t)
                return

    def _expect(self, peer_id, kind, val, mono):
        best = 0
        for i in range(PENDING):
            if self.pend_id[i] is None:
                best = i
                break
            if self.pend_t[i] < self.pend_t[best]:
                best = i
        self.pend_id[best] = peer_id
        self.pend_kind[best] = kind
        self.pend_val[best] = val
        self.pend_t[best] = mono

    def _expire_pending(self, mono, t):
        for i in range(PENDING):
            pid = self.pend_id[i]
            if pid is not None and mono - self.pend_t[i] > PENDING_TIMEOUT_MS:
                self.pend_id[i] = None
                self.c["timeouts"] += 1
                s = self.peers.find(pid)
                if s >= 0:
                    self.peers.record_failure(s, t)

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

    # --- transmit ------------------------------------------------------------------------

    def _route(self, dest):
        """(hop_limit, link key or None) for a unicast to dest."""
        s = self.peers.find(dest)
        if s < 0 or self.peers.hops[s] == HOPS_UNKNOWN:
            return self.hop_limit, None
        h = self.peers.hops[s]
        if h == 0:
            return 0, self.link_keys.get(dest)
        h += 1
        return (h if h <= fr.MAX_HOPS else fr.MAX_HOPS), None

    def _queue(self, msg_type, body, dest, hop_limit, prio, mono, link_key=None):
        seq = self.next_seq()
        f = fr.Frame(
            msg_type, self.id, seq, dest, fr.FLAG_LINK if link_key else 0, hop_limit=hop_limit
        )
        try:
            data = auth.seal_frame(f, body, self.net_key, link_key)
        except ValueError:
            self.c["tx_errors"] += 1
            return None
        if not self.txq.push(data, prio, mono):
            return None
        return seq

    def _reply(self, f, msg_type, fields):
        hop_limit = f.hop_count
        lk = self.link_keys.get(f.source) if hop_limit == 0 else None
        self._queue(
            msg_type,
            msg.encode_body(msg_type, fields),
            f.source,
            hop_limit,
            CONTROL,
            self.clock.now(),
            lk,
        )

    def app_send(self, dest, msg_type, fields, priority=GOSSIP):
        if msg_type not in APP_TYPES:
            return False
        try:
            body = msg.encode_body(msg_type, fields)
        except (ValueError, DecodeError):
            return False
        mono = self.clock.now()
        if dest is None:
            seq = self._queue(msg_type, body, None, self.hop_limit, priority, mono)
        else:
            dest = bytes(dest)
            hl, lk = self._route(dest)
            seq = self._queue(msg_type, body, dest, hl, priority, mono, lk)
            if seq is not None:
                self._expect(dest, 1, seq, mono)
        if seq is None:
            return False
        self.c["app_tx"] += 1
        return True

    def announce(self, mono):
        body = self.record  # an ANNOUNCE body is the record map: its encoding is the record
        if self._queue(msg.ANNOUNCE, body, None, self.hop_limit, GOSSIP, mono) is not None:
            self.c["announce_tx"] += 1
        t = mono & self._mask
        bg_used = self.duty.used_ms(self.freq, mono, True)
        self.announcer.schedule(
            mono, len(self.neighbours(t)), bg_used, self.duty.budget_ms(self.freq, True)
        )

    def pex_round(self, mono):
        t = mono & self._mask
        nb = self.neighbours(t)
        if not nb:
            return False
        pt = self.peers
        s = -1
        if self._pex_target is not None:
            s = pt.find(self._pex_target)
            self._pex_target = None
        if s not in nb:
            # round robin, never the neighbour asked last time (when there is another):
            # a targeted pull does not make the next round repeat the same neighbour
            for _ in range(len(nb)):
                self._pex_rr = (self._pex_rr + 1) % len(nb)
                s = nb[self._pex_rr]
                if pt.ids[s] != self._pex_last_id:
                    break
        self._pex_last_id = pt.ids[s]
        # the records we learned most recently: those are the ones a neighbour is
        # likely to offer us, so naming them saves the most duplicate answers
        have = [pt.ids[k][:4] for k in self._newest(s, msg.PEX_HAVE_MAX)]
        want = pt.capacity - pt.count
        if want < 1:
            want = 1
        if want > PEX_WANT:
            want = PEX_WANT
        body = msg.encode_pex_request(want, have)
        # network tag: the neighbour may not hold our record yet (its copy of our
        # announce may have been lost), and a request proves nothing worth blaming
        if self._queue(msg.PEX_REQUEST, body, pt.ids[s], 0, GOSSIP, mono) is not None:
            self.c["pex_req_tx"] += 1
        return True

    def ping_round(self, mono):
        nb = self.neighbours(mono & self._mask)
        if not nb:
            return False
        self._ping_rr = (self._ping_rr + 1) % len(nb)
        pid = self.peers.ids[nb[self._ping_rr]]
        nonce = rand(1 << 24)
        if self._queue(msg.PING, msg.encode_ping(nonce), pid, 0, CONTROL, mono) is not None:
            self._expect(pid, 0, nonce, mono)
            self.c["ping_tx"] += 1
        return True

    def _can_send(self, data, prio):
        mono = self.clock.now()
        air = time_on_air_ms(len(data), self.sf, self.bw, self.cr)
        bg = data[1] in _BACKGROUND
        if self.duty.wait_ms(self.freq, air, mono, bg, self.bw) == NEVER:
            self._never = True
            return True
        return self.duty.can_send(self.freq, air, mono, bg, self.bw)

    def next_frame(self):
        """The next frame the duty cycle allows, or None (drops never-sendable ones)."""
        while True:
            self._never = False
            data = self.txq.pop_ready(self._can_send)
            if data is None:
                return None
            if not self._never:
                return data
            self.c["tx_never"] += 1

    def charge(self, data, airtime_ms, mono):
        self.duty.record(self.freq, airtime_ms, mono, data[1] in _BACKGROUND)
        self._tx_airtime_ms += int(airtime_ms + 0.5)
        self.c["tx"] += 1

    # --- main loop ---------------------------------------------------------------------

    def status_line(self):
        from loranode import status

        return status.line(self)

    def emit_status(self):
        from loranode import status

        status.emit(self, self.out)

    def sample_heap(self):
        try:
            free = gc.mem_free()
        except AttributeError:
            return
        if self.min_free is None or free < self.min_free:
            self.min_free = free

    async def rx_task(self, sleep_ms):
        radio = self.radio
        while self.running:
            pkt = await radio.arecv(200)
            if pkt is None:
                continue
            # arecv returns without suspending while frames are waiting: yield once per
            # frame, or a flood would starve announces, pings, transmits and stdin
            await sleep_ms(0)
            try:
                self.handle_frame(pkt[0], pkt[1], pkt[2])
            except Exception as e:  # a bug in one frame's handling must not stop the node
                self.c["rx_errors"] = self.c.get("rx_errors", 0) + 1
                print("rx error:", repr(e))
            self.sample_heap()

    async def tx_task(self, sleep_ms):
        radio = self.radio
        while self.running:
            data = self.next_frame()
            if data is None:
                await sleep_ms(20)
                continue
            # relayed frames (hop_count > 0) wait longer: every neighbour of the
            # previous sender relays the same frame, and they must not all key up at once
            jitter = rand((RELAY_JITTER_MS if data[2] & 0x0F else TX_JITTER_MS) + 1)
            await sleep_ms(self.clock.wall_ms(jitter) + 1)
            try:
                air = await radio.asend(data)
                # charged from the end of the transmission: other tasks have read the
                # clock meanwhile (the accountant needs non-decreasing times), and a
                # later start only keeps the airtime in the window a little longer
                self.charge(data, air, self.clock.now())
            except Exception as e:  # noqa: BLE001 - the transmit task must survive
                self.c["tx_errors"] += 1
                print("tx error:", repr(e))

    def tick(self, mono):
        """Timers: announce, PEX, ping, pending timeouts, queue expiry, ban save, ageing."""
        t = mono & self._mask
        if self.announcer.is_due(mono):
            self.announce(mono)
        if mono >= self._pex_due:
            self.pex_round(mono)
            self._pex_last = mono
            if self._pex_burst > 0:
                self._pex_burst -= 1
                fast = self._fast_ms(mono)
                self._pex_due = mono + fast + rand(fast // 2 + 1)
            else:
                # idle rounds back off (doubling up to PEX_IDLE_MAX x the interval,
                # and never beyond the announce maximum): a stable mesh must not
                # spend its budget asking for what it has, yet a lost nudge from a
                # neighbour must not stall news for long
                if self.c["new_peers"] == self._pex_news:
                    cap = self.pex_ms * PEX_IDLE_MAX
                    if cap > self.announcer.max_ms:
                        cap = self.announcer.max_ms
                    self._pex_idle = min(2 * self._pex_idle, cap)
                else:
                    self._pex_idle = self.pex_ms
                iv = self._pex_idle
                self._pex_due = mono + iv * 3 // 4 + rand(iv // 2 + 1)
            self._pex_news = self.c["new_peers"]
        if mono >= self._ping_due:
            self.ping_round(mono)
            self._ping_due = mono + self.ping_ms * 3 // 4 + rand(self.ping_ms // 2 + 1)
        self._expire_pending(mono, t)
        self.txq.expire(mono)
        self.reasm.expire(mono)
        self.bans.maybe_save(t)
        if mono >= self._age_due:
            self.peers.age_out(t)
            self._age_due = mono + AGE_OUT_MS
        if self.status_ms and mono >= self._status_due:
            self.emit_status()
            self._status_due = mono + self.status_ms
        try:
            self.app.tick(mono)
        except Exception as e:
            print("app tick error:", repr(e))

    def start(self):
        self.clock.set_speed(getattr(self.radio, "speed", 1.0) or 1.0)
        self.t0_sim = getattr(self.radio, "sim_time", 0.0) or 0.0
        mono = self.clock.now()
        self.announcer.start(mono)
        self._pex_due = mono + PEX_FIRST_MS + rand(PEX_FIRST_MS)
        self._pex_last = mono
        self._ping_due = mono + self.ping_ms
        self._age_due = mono + AGE_OUT_MS
        self._status_due = mono + (self.status_ms or 0)
        self.app.attach(self.port)
        self.running = True

    async def timer_task(self, sleep_ms):
        while self.running:
            self.tick(self.clock.now())
            await sleep_ms(50)

    async def stdin_task(self, sleep_ms):
        """Commands on stdin, one per line: `status` prints a status line, `quit` stops."""
        import sys

        try:
            import select

            p = select.poll()
            p.register(sys.stdin, select.POLLIN)
        except (ImportError, AttributeError, OSError, TypeError, ValueError):
            return
        while self.running:
            if not p.poll(0):
                await sleep_ms(50)
                continue
            cmd = sys.stdin.readline()
            if not cmd:
                return  # EOF: nobody will talk to us any more
            try:
                self.command(cmd.strip())
            except Exception as e:  # a command that fails (MemoryError) must not end stdin
                self.c["rx_errors"] = self.c.get("rx_errors", 0) + 1
                print("command error:", repr(e))

    def command(self, cmd):
        """One stdin command: `status`, `gc` (collect, then sample the heap), `quit`."""
        if cmd == "status":
            self.emit_status()
        elif cmd == "quit":
            self.running = False
        elif cmd == "gc":
            gc.collect()
            self.sample_heap()
            try:
                self.gc_heap = (gc.mem_free(), gc.mem_alloc())
            except AttributeError:
                pass

    async def run(self):
        """Run until `running` turns False (stdin `quit`) or the task is cancelled."""
        import asyncio

        sleep_ms = getattr(asyncio, "sleep_ms", None)
        if sleep_ms is None:

            async def sleep_ms(ms):
                await asyncio.sleep(ms / 1000)

        self.start()
        tasks = [
            asyncio.create_task(self.rx_task(sleep_ms)),
            asyncio.create_task(self.tx_task(sleep_ms)),
            asyncio.create_task(self.timer_task(sleep_ms)),
        ]
        if self.opts["stdin"]:
            tasks.append(asyncio.create_task(self.stdin_task(sleep_ms)))
        try:
            while self.running:
                await sleep_ms(100)
        finally:
            self.running = False
            for tk in tasks:
                tk.cancel()
            self.shutdown()

    def shutdown(self):
        """Save what must survive a reboot (bans); idempotent."""
        try:
            if self.bans.dirty:
                self.bans.save(now=self.clock.now() & self._mask)
        except OSError:
            pass
