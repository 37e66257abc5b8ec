"""Frame authentication: 8-byte truncated HMAC-SHA256 tags, link keys, and who to blame.

tag = HMAC-SHA256(key, tagged region)[:8], where the tagged region is the frame header
with hop_count zeroed, then the body (lorawire.frame.tagged_region). The key is
* the network key (from config; every member holds it) when the LINK flag is clear,
* a pairwise link key, or a TCP session direction key, when LINK is set.

Link key between nodes A and B (both sides compute the same 32 bytes):

    link_key = HMAC-SHA256(key = X25519(my_x_secret, their_x_public),
                           msg = b"lorachain link v1" || min(id_a, id_b) || max(id_a, id_b))

with X25519 keys converted from the Ed25519 identities as libsodium does
(crypto_sign_ed25519_sk_to_curve25519: SHA-512(seed)[:32] clamped; pk_to_curve25519:
u = (1 + y) / (1 - y)). `LinkKeyCache` computes each neighbour's key once.

Attribution rule: a drop counts against the frame's source only when the frame is
proven to come from it. A network tag proves only "some member sent this", so a
member could forge the victim's source id; a link tag proves the source (or we
ourselves, and our own id is refused). Hence `open_frame` returns a `Verdict`:
* ACCEPT, attributed = (LINK tag) -- later application-level faults may be blamed on
  the source only when attributed is True;
* DROP_ATTRIBUTED(reason): valid link tag, body malformed -> blame the source;
* DROP_UNATTRIBUTED(reason): undecodable header, bad tag (of either kind: anyone can
  put a victim's id on garbage), no key, replay (anyone can re-send a captured frame),
  unknown message type (a newer node, not misbehaviour), or a malformed body under a
  network tag. Count these, blame nobody.

Misbehaviour codes are the one vocabulary of both sides (`blame` maps a proven fault to
one; the names are in lorawire.names, host only). Each side prices them itself: the
gateway's `[bans.points]`, the board's loranode/bans.py (docs/ARCHITECTURE.md compares).
"""

from lorawire import fragment as _fragment
from lorawire import frame as _frame
from lorawire import messages as _messages
from lorawire.errors import DecodeError
from lorawire.hmac256 import compare, hmac_sha256
from lorawire.identity import node_id
from lorawire.lru import LruTable

TAG_LEN = _frame.TAG_LEN
LINK_INFO = b"lorachain link v1"
LINK_KEYS = 16
MIN_KEY_LEN = 16

ACCEPT = "accept"
DROP_ATTRIBUTED = "drop_attributed"
DROP_UNATTRIBUTED = "drop_unattributed"

R_BAD_FRAME = "bad_frame"
R_OWN_FRAME = "own_frame"
R_NO_KEY = "no_key"
R_BAD_TAG = "bad_tag"
R_REPLAY = "replay"
R_UNKNOWN_TYPE = "unknown_type"
R_MALFORMED = "malformed"

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

BAD_TAG = const(0)
BAD_SIGNATURE = const(1)
MALFORMED = const(2)
REPLAY = const(3)
FLOOD = const(4)
INVALID_SYNC = const(5)
MANUAL = const(6)
HANDSHAKE_FAILURE = const(7)
PROTOCOL_VIOLATION = const(8)


def _check_key(key):
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_LEN:
        raise ValueError("key must be at least %d bytes" % MIN_KEY_LEN)


def tag(key, region):
    """The 8-byte tag of a tagged region under key."""
    return hmac_sha256(key, region)[:TAG_LEN]


def check(key, region, frame_tag):
    """True when frame_tag is the tag of region under key (no early exit on mismatch)."""
    if not isinstance(frame_tag, (bytes, bytearray, memoryview)) or len(frame_tag) != TAG_LEN:
        return False
    return compare(tag(key, region), frame_tag)


def link_key(my_x_secret, my_id, their_public):
    """Pairwise key with the owner of Ed25519 key their_public (see module doc).

    ValueError when their key is unacceptable (not a valid point, small order).
    """
    from lorawire.x25519 import ed25519_pk_to_x25519, x25519

    shared = x25519(my_x_secret, ed25519_pk_to_x25519(their_public))
    their_id = node_id(their_public)
    my_id = bytes(my_id)
    if my_id < their_id:
        lo, hi = my_id, their_id
    else:
        lo, hi = their_id, my_id
    return hmac_sha256(shared, LINK_INFO + lo + hi)


class LinkKeyCache:
    """Link keys of up to `capacity` neighbours (least recently used evicted).

    `get(peer_id, public=None)` returns the cached key, or derives it from `public` (or
    from `lookup(peer_id)`, a callable returning a public key or None), or None when the
    key is unknown or unusable. A public key that does not hash to peer_id is refused.
    """

    def __init__(self, identity, capacity=LINK_KEYS, lookup=None):
        self.identity = identity
        self.lookup = lookup
        self._keys = LruTable(capacity)
        self.capacity = capacity
        self.derived = 0  # X25519 computations, for status and tests

    def __len__(self):
        return len(self._keys)

    def get(self, peer_id, public=None):
        peer_id = bytes(peer_id)
        key = self._keys.get(peer_id)
        if key is not None:
            return key
        if public is None and self.lookup is not None:
            public = self.lookup(peer_id)
        if public is None or node_id(public) != peer_id or peer_id == self.identity.id:
            return None
        try:
            key = link_key(self.identity.x_secret(), self.identity.id, public)
        except ValueError:
            return None
        self.derived += 1
        self._keys.put(peer_id, key)
        return key

    def forget(self, peer_id):
        self._keys.pop(bytes(peer_id))


class Verdict:
    """Outcome of open_frame. `frame` is the decoded header (None if undecodable),
    `value` the decoded body (ACCEPT only)."""

    __slots__ = ("kind", "attributed", "reason", "frame", "value")

    def __init__(self, kind, attributed, reason=None, frame=None, value=None):
        self.kind = kind
        self.attributed = attributed
        self.reason = reason
        self.frame = frame
        self.value = value

    @property
    def accepted(self):
        return self.kind == ACCEPT

    @property
    def blame(self):
        """The source id to hold this drop against, or None."""
        if self.kind == DROP_ATTRIBUTED:
            return self.frame.source
        return None

    def __repr__(self):
        return "Verdict(%s attributed=%s reason=%s)" % (self.kind, self.attributed, self.reason)


def _resolve(link_keys, source):
    if link_keys is None:
        return None
    if isinstance(link_keys, (bytes, bytearray)):
        return link_keys
    if hasattr(link_keys, "get"):
        return link_keys.get(source)
    return link_keys(source)


def seal_frame(frame, body, network_key=None, link_key=None, max_len=_frame.MAX_LORA_FRAME):
    """Frame bytes for `frame`'s header fields and the encoded `body`, tagged with the
    link key when frame.flags has LINK, else with the network key. ValueError when the
    needed key is missing or a field is out of range."""
    key = link_key if frame.flags & _frame.FLAG_LINK else network_key
    _check_key(key)
    return _frame.encode(frame, body, lambda region: tag(key, region), max_len)


def open_frame(
    data,
    network_key=None,
    link_keys=None,
    replay=None,
    my_id=None,
    max_len=_frame.MAX_LORA_FRAME,
    source=None,
):
    """Decode, authenticate and parse one frame; returns a Verdict, never raises on input.

    `link_keys`: the key for LINK frames -- bytes (a TCP session's receive key), an
    object with get(source_id) (a LinkKeyCache), or a callable source_id -> key/None.
    `replay`: a lorawire.replay.ReplayTable, checked after the tag (link-tagged and
    network-tagged frames of one source use separate windows, so a member holding the
    network key cannot slide the window of a source's link traffic). `my_id`: frames
    claiming our own id as source are dropped (echoes and reflections).
    `source`: the caller's own bytes object for the frame's source id, if it holds one
    (the replay table then keeps that object, not a copy).
    Check a banned source with frame.peek_source before calling this.
    """
    try:
        f = _frame.decode(data, max_len)
    except DecodeError:
        return Verdict(DROP_UNATTRIBUTED, False, R_BAD_FRAME)
    if my_id is not None and f.source == my_id:
        return Verdict(DROP_UNATTRIBUTED, False, R_OWN_FRAME, f)
    link = bool(f.flags & _frame.FLAG_LINK)
    key = _resolve(link_keys, f.source) if link else network_key
    if key is None:
        return Verdict(DROP_UNATTRIBUTED, False, R_NO_KEY, f)
    if not check(key, _frame.tagged_region(data), f.tag):
        return Verdict(DROP_UNATTRIBUTED, False, R_BAD_TAG, f)
    src = source if source is not None and source == f.source else f.source
    if replay is not None and not replay.check_and_update(src, f.seq, 1 if link else 0):
        return Verdict(DROP_UNATTRIBUTED, False, R_REPLAY, f)
    try:
        value = _messages.decode_body(f.type, f.body)
    except _messages.UnknownType:
        return Verdict(DROP_UNATTRIBUTED, False, R_UNKNOWN_TYPE, f)
    except DecodeError:
        if link:
            return Verdict(DROP_ATTRIBUTED, True, R_MALFORMED, f)
        return Verdict(DROP_UNATTRIBUTED, False, R_MALFORMED, f)
    return Verdict(ACCEPT, link, None, f, value)


def judge_record(verdict, held=None, expected_id=None, value=None):
    """Verify a signed record carried by an accepted frame; returns (Verdict, Record).

    `value`: the record's map (default: the frame's body, i.e. an ANNOUNCE; pass each
    entry of a PEX_RESPONSE in turn). A record that fails is dropped; the drop is
    attributed to the frame's source only when the frame itself was (link tag) and the
    fault is the sender's (malformed or bad signature). A stale or duplicate record is
    never anyone's provable misbehaviour. On success the original verdict is returned
    with the Record; a verdict that was not ACCEPT is returned unchanged with None.
    """
    # record's reasons by attribute: this module's const() codes of the same names would
    # replace imported names at compile time on MicroPython
    from lorawire import record

    if not verdict.accepted:
        return verdict, None
    try:
        rec = record.verify_record(
            verdict.value if value is None else value, held=held, expected_id=expected_id
        )
    except record.RecordError as exc:
        faulty = exc.reason in (record.MALFORMED, record.BAD_SIGNATURE) and verdict.attributed
        kind = DROP_ATTRIBUTED if faulty else DROP_UNATTRIBUTED
        return Verdict(kind, faulty, "record_" + exc.reason, verdict.frame), None
    return verdict, rec


def blame(outcome):
    """The misbehaviour code a refusal costs its source, or None when nothing is proven
    against it. `outcome`: a Verdict (open_frame, judge_record) or a
    fragment.ReassemblyError; only an attributed one blames (see the module doc).
    A forged signature is BAD_SIGNATURE, a message too big for any reassembly
    PROTOCOL_VIOLATION, a refusal for want of room (BUSY, QUOTA) nobody's fault, and
    every other attributed fault MALFORMED."""
    reason = outcome.reason
    if not outcome.attributed or reason is None:
        return None
    if reason == "record_bad_signature":
        return BAD_SIGNATURE
    if reason == _fragment.OVERSIZE:
        return PROTOCOL_VIOLATION
    if reason == _fragment.BUSY or reason == _fragment.QUOTA:
        return None
    return MALFORMED
