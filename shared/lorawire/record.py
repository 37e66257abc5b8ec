"""Signed peer records: who a node is and how to reach it (ANNOUNCE and PEX bodies).

Wire form: one canonical msgpack map with small int keys (docs/AUTH.md, "Peer record"):

    0  public key      bin 32          Ed25519; the node id is SHA-256(key)[:8], not sent
    1  kind            int 0..3        0 full, 1 light, 2 gateway, 3 mesh
    2  services        int 0..0xFFFF   bitmask, SVC_* below
    3  sequence        int 0..2**32-1  grows with every new record of this key (persisted)
    4  endpoints       [[host, port]]  optional, 1..2 entries; host = 4 (IPv4) or 16 (IPv6)
                                       raw bytes, port 1..65535; absent when none
    5  mesh hints      [region, sf]    optional; region = index into lorawire.regions
                                       REGION_NAMES (0..255 accepted), sf 6..12
    6  signature       bin 64          Ed25519 over b"LCR1" || packb(map without key 6)

There is no timestamp: boards have no clock, and the sequence number already orders a
node's records (a record whose sequence is not above the held one never replaces it).
A gateway with a clock may use Unix time as its sequence. Every record has exactly one
encoding (the codec is canonical, optional keys are absent rather than empty), so
"identical bytes" is well defined. The largest record (two IPv6 endpoints, mesh hints,
maximal integers) is 166 bytes; with a broadcast header and tag it fits one LoRa frame.

Errors are `RecordError`, a DecodeError with `reason`:
  "malformed"       fields missing, extra, out of range or of the wrong type
  "id_mismatch"     an expected node id was given and the key hashes to another
  "duplicate"       the same bytes as the record held (a re-heard relay): drop quietly,
                    not misbehaviour, and no signature check is spent on it
  "stale_sequence"  sequence <= the held one (a replay or an older copy)
  "bad_signature"   the signature does not verify
The cheap checks run first, in that order, so a stale or duplicate record never costs
a signature verification. None of these reasons proves who sent the bytes: anyone can
copy or forge a record, so a rejected record is held against the *frame's* sender only
when the frame itself is attributed (lorawire.auth).
"""

from lorawire import ed25519
from lorawire.codec import packb, unpackb
from lorawire.errors import DecodeError
from lorawire.identity import node_id

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

DOMAIN = b"LCR1"
MAX_RECORD_LEN = const(170)

KIND_FULL = const(0)
KIND_LIGHT = const(1)
KIND_GATEWAY = const(2)
KIND_MESH = const(3)
KIND_NAMES = ("full", "light", "gateway", "mesh")

SVC_RELAY = const(0x1)  # forwards mesh frames for others
SVC_PEX = const(0x2)  # answers peer exchange requests
SVC_STORE = const(0x4)  # keeps blocks and answers GETDATA
SVC_BRIDGE = const(0x8)  # bridges the mesh and the internet

K_PUBLIC = const(0)
K_KIND = const(1)
K_SERVICES = const(2)
K_SEQ = const(3)
K_ENDPOINTS = const(4)
K_MESH = const(5)
K_SIGNATURE = const(6)

SERVICES_MAX = const(0xFFFF)
SEQ_MAX = const(0xFFFFFFFF)
MAX_ENDPOINTS = const(2)
SF_MIN = const(6)
SF_MAX = const(12)
REGION_MAX = const(0xFF)

MALFORMED = "malformed"
ID_MISMATCH = "id_mismatch"
DUPLICATE = "duplicate"
STALE_SEQUENCE = "stale_sequence"
BAD_SIGNATURE = "bad_signature"

_REQUIRED = (K_PUBLIC, K_KIND, K_SERVICES, K_SEQ, K_SIGNATURE)
_OPTIONAL = (K_ENDPOINTS, K_MESH)


class RecordError(DecodeError):
    """A record was refused; `reason` is one of the module's reason strings."""

    def __init__(self, reason, detail=""):
        super().__init__("peer record: %s%s" % (reason, (": " + detail) if detail else ""))
        self.reason = reason


class Record:
    """A decoded record. `encoded` is its wire bytes, `value` the msgpack map (for
    embedding in an ANNOUNCE or PEX body). `id` is derived from `public`."""

    __slots__ = (
        "id",
        "public",
        "kind",
        "services",
        "seq",
        "endpoints",
        "mesh",
        "signature",
        "value",
        "encoded",
    )

    def __init__(self):
        self.id = b""
        self.public = b""
        self.kind = 0
        self.services = 0
        self.seq = 0
        self.endpoints = ()
        self.mesh = None
        self.signature = b""
        self.value = {}
        self.encoded = b""

    def signed_bytes(self):
        """The bytes the signature covers: DOMAIN || packb(map without the signature)."""
        return _signed_bytes(self.value)

    def __eq__(self, other):
        return isinstance(other, Record) and self.encoded == other.encoded

    def __repr__(self):
        return "Record(%s kind=%s seq=%d endpoints=%d mesh=%r)" % (
            "".join("%02x" % b for b in self.id),
            KIND_NAMES[self.kind],
            self.seq,
            len(self.endpoints),
            self.mesh,
        )


def _bad(detail):
    raise RecordError(MALFORMED, detail)


def _is_int(v):
    return not isinstance(v, bool) and isinstance(v, int)


def _uint(v, lo, hi, what):
    if not _is_int(v) or v < lo or v > hi:
        _bad("%s must be an int in %d..%d" % (what, lo, hi))
    return v


def _check_endpoints(value):
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ENDPOINTS:
        _bad("endpoints must be a list of 1..%d entries (absent when none)" % MAX_ENDPOINTS)
    out = []
    for entry in value:
        if not isinstance(entry, list) or len(entry) != 2:
            _bad("endpoint must be [host, port]")
        host, port = entry
        if not isinstance(host, bytes) or len(host) not in (4, 16):
            _bad("endpoint host must be 4 (IPv4) or 16 (IPv6) bytes")
        if host == bytes(len(host)):
            _bad("endpoint host is the unspecified address")
        _uint(port, 1, 0xFFFF, "endpoint port")
        pair = (host, port)
        if pair in out:
            _bad("endpoint listed twice")
        out.append(pair)
    return tuple(out)


def _check_mesh(value):
    if not isinstance(value, list) or len(value) != 2:
        _bad("mesh hints must be [region, sf]")
    region = _uint(value[0], 0, REGION_MAX, "mesh region")
    sf = _uint(value[1], SF_MIN, SF_MAX, "mesh spreading factor")
    return (region, sf)


def _record_from_value(value):
    if not isinstance(value, dict):
        _bad("record must be a map")
    for key in value:
        if not _is_int(key) or (key not in _REQUIRED and key not in _OPTIONAL):
            _bad("unknown key %r" % (key,))
    for key in _REQUIRED:
        if key not in value:
            _bad("key %d missing" % key)
    public = value[K_PUBLIC]
    if not isinstance(public, bytes) or len(public) != 32:
        _bad("public key must be 32 bytes")
    signature = value[K_SIGNATURE]
    if not isinstance(signature, bytes) or len(signature) != 64:
        _bad("signature must be 64 bytes")
    rec = Record()
    rec.public = public
    rec.id = node_id(public)
    rec.kind = _uint(value[K_KIND], KIND_FULL, KIND_MESH, "kind")
    rec.services = _uint(value[K_SERVICES], 0, SERVICES_MAX, "services")
    rec.seq = _uint(value[K_SEQ], 0, SEQ_MAX, "sequence")
    rec.endpoints = _check_endpoints(value[K_ENDPOINTS]) if K_ENDPOINTS in value else ()
    rec.mesh = _check_mesh(value[K_MESH]) if K_MESH in value else None
    rec.signature = signature
    rec.value = value
    return rec


def _signed_bytes(value):
    unsigned = {}
    for key in value:
        if key != K_SIGNATURE:
            unsigned[key] = value[key]
    return DOMAIN + packb(unsigned)


def public_of(encoded):
    """The public key inside a record's wire bytes, which decode_record accepted (the
    canonical map starts with key 0, a 32-byte bin: it sits at bytes 4..35). A board keeps
    a peer's record and reads its key from there when it needs one, not a second copy."""
    return encoded[4:36]


def decode_record(data):
    """Record from wire bytes or from an already-decoded map (an ANNOUNCE body).

    Checks every field, derives the id; does NOT verify the signature (verify_record
    does). RecordError (a DecodeError) with reason "malformed" on anything wrong.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
        if len(data) > MAX_RECORD_LEN:
            _bad("%d bytes exceeds %d" % (len(data), MAX_RECORD_LEN))
        try:
            value = unpackb(data)
        except DecodeError as exc:
            raise RecordError(MALFORMED, str(exc)) from None
        rec = _record_from_value(value)
        rec.encoded = data
        return rec
    rec = _record_from_value(data)
    encoded = packb(data)
    if len(encoded) > MAX_RECORD_LEN:
        _bad("%d bytes exceeds %d" % (len(encoded), MAX_RECORD_LEN))
    rec.encoded = encoded
    return rec


def verify_record(record, held_seq=None, expected_id=None, held=None):
    """The record if it is acceptable, else RecordError with the reason (see module doc).

    `record`: a Record, wire bytes or a decoded map. `held`: the Record currently held
    for this key (its sequence is then the held sequence), or `held_seq` alone.
    `expected_id`: the node id the caller believes it is talking about.
    """
    if not isinstance(record, Record):
        record = decode_record(record)
    if expected_id is not None and bytes(expected_id) != record.id:
        raise RecordError(ID_MISMATCH)
    if held is not None:
        if held.encoded == record.encoded:
            raise RecordError(DUPLICATE)
        held_seq = held.seq
    if held_seq is not None and record.seq <= held_seq:
        raise RecordError(STALE_SEQUENCE, "sequence %d, holding %d" % (record.seq, held_seq))
    if not ed25519.verify(record.public, record.signed_bytes(), record.signature):
        raise RecordError(BAD_SIGNATURE)
    return record


def record_value(fields, public):
    """The unsigned map for `fields` (see encode_record); ValueError on a bad field."""
    if not isinstance(fields, dict):
        raise ValueError("fields must be a dict")
    for name in fields:
        if name not in ("kind", "services", "seq", "endpoints", "mesh"):
            raise ValueError("unknown record field %r" % (name,))
    value = {
        K_PUBLIC: bytes(public),
        K_KIND: fields.get("kind", KIND_MESH),
        K_SERVICES: fields.get("services", 0),
        K_SEQ: fields.get("seq"),
    }
    endpoints = fields.get("endpoints")
    if endpoints:
        value[K_ENDPOINTS] = [[bytes(host), port] for host, port in endpoints]
    mesh = fields.get("mesh")
    if mesh is not None:
        value[K_MESH] = [mesh[0], mesh[1]]
    return value


def encode_record(fields, seed):
    """Signed record bytes.

    `fields`: dict with "seq" (required), "kind" (default KIND_MESH), "services"
    (default 0), "endpoints" (up to two (host_bytes, port) pairs) and "mesh"
    ((region, sf) or None). `seed`: the 32-byte Ed25519 seed or an Identity.
    ValueError when a field is out of range: a node never signs what it would refuse.
    """
    if hasattr(seed, "seed") and hasattr(seed, "public"):
        public = seed.public
        seed = seed.seed
    else:
        public = ed25519.public_key(seed)
    value = record_value(fields, public)
    value[K_SIGNATURE] = bytes(64)
    try:
        _record_from_value(value)  # same checks as decode, before spending a signature
    except RecordError as exc:
        raise ValueError(str(exc)) from None
    del value[K_SIGNATURE]
    value[K_SIGNATURE] = ed25519.sign(seed, DOMAIN + packb(value))
    data = packb(value)
    if len(data) > MAX_RECORD_LEN:
        raise ValueError("record of %d bytes exceeds %d" % (len(data), MAX_RECORD_LEN))
    return data
