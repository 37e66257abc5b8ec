"""Message types and their body schemas (docs/PROTOCOL.md, "Message bodies").

`decode_body(msg_type, body)` parses the body bytes (canonical msgpack) and checks
every field; it returns the decoded value: a map with small int keys, or the array of
a FRAGMENT. Bad bodies raise DecodeError. A type this version does not know raises
UnknownType, a DecodeError subclass carrying `msg_type`, so a caller can count unknown
types apart from malformed frames (a newer node may send types we lack; that is not
misbehaviour).

`encode_body(msg_type, fields)` runs the same checks before encoding, so a node never
sends what it would refuse. Maps must hold exactly the listed keys: no missing and no
extra keys (a schema change is a new frame version).
"""

from lorawire import fragment
from lorawire.codec import packb, unpackb
from lorawire.errors import DecodeError
from lorawire.frame import MAX_LORA_FRAME, Frame
from lorawire.frame import decode as _decode_frame
from lorawire.frame import encode as _encode_frame

ANNOUNCE = 0x01
PEX_REQUEST = 0x02
PEX_RESPONSE = 0x03
PING = 0x04
PONG = 0x05
ACK = 0x06
INV = 0x10
GETDATA = 0x11
TX = 0x12
BLOCK = 0x13
REJECT = 0x14
FRAGMENT = 0x20
HELLO = 0x30
AUTH = 0x31
UART_LINK = 0x3F

NAMES = {
    ANNOUNCE: "ANNOUNCE",
    PEX_REQUEST: "PEX_REQUEST",
    PEX_RESPONSE: "PEX_RESPONSE",
    PING: "PING",
    PONG: "PONG",
    ACK: "ACK",
    INV: "INV",
    GETDATA: "GETDATA",
    TX: "TX",
    BLOCK: "BLOCK",
    REJECT: "REJECT",
    FRAGMENT: "FRAGMENT",
    HELLO: "HELLO",
    AUTH: "AUTH",
    UART_LINK: "UART_LINK",
}

# Limits.
PEX_WANT_MAX = 16
PEX_HAVE_MAX = 16
PREFIX_LEN = 4
PEX_RECORDS_MAX = 32  # on TCP; on LoRa a record fills the frame, so one per frame
INV_MAX = 32
HASH_LEN = 32
REJECT_TEXT_MAX = 64  # bytes of UTF-8
U32_MAX = 0xFFFFFFFF

# Inventory kinds.
KIND_TX = 0
KIND_BLOCK = 1

# REJECT reason codes (the values of Bitcoin's BIP 61).
REJECT_MALFORMED = 0x01
REJECT_INVALID = 0x10
REJECT_OBSOLETE = 0x11
REJECT_DUPLICATE = 0x12
REJECT_NONSTANDARD = 0x40
REJECT_DUST = 0x41
REJECT_INSUFFICIENT_FEE = 0x42
REJECT_CHECKPOINT = 0x43


class UnknownType(DecodeError):
    """The message type is not one this version knows; `msg_type` says which."""

    def __init__(self, msg_type):
        super().__init__("unknown message type 0x%02x" % msg_type)
        self.msg_type = msg_type


def type_name(msg_type):
    return NAMES.get(msg_type, "0x%02x" % msg_type)


# ---------------------------------------------------------------- field checks


def _fail(msg_type, text):
    raise DecodeError("%s: %s" % (type_name(msg_type), text))


def _map(msg_type, value, keys):
    if not isinstance(value, dict):
        _fail(msg_type, "body must be a map")
    if len(value) != len(keys):
        _fail(msg_type, "body must have exactly the keys %s" % (keys,))
    for key in keys:
        if key not in value:
            _fail(msg_type, "key %d missing" % key)
    return value


def _uint(msg_type, value, lo, hi, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or value > hi:
        _fail(msg_type, "%s must be an int in %d..%d" % (what, lo, hi))
    return value


def _bytes(msg_type, value, lo, hi, what):
    if not isinstance(value, bytes) or len(value) < lo or len(value) > hi:
        if lo == hi:
            _fail(msg_type, "%s must be %d bytes" % (what, lo))
        _fail(msg_type, "%s must be %d..%d bytes" % (what, lo, hi))
    return value


def _list(msg_type, value, lo, hi, what):
    if not isinstance(value, list) or len(value) < lo or len(value) > hi:
        _fail(msg_type, "%s must be a list of %d..%d items" % (what, lo, hi))
    return value


def _record(msg_type, value):
    # Hook for lorawire.record: the signed peer record's own format and signature are
    # checked there (after the frame tag). Here a record is any non-empty map.
    if not isinstance(value, dict) or not value:
        _fail(msg_type, "peer record must be a non-empty map")


def _check_opaque_map(msg_type, value):
    # HELLO/AUTH bodies are defined by lorawire.handshake; only the shape is checked here.
    if not isinstance(value, dict):
        _fail(msg_type, "body must be a map")


def _check_any(msg_type, value):
    # UART_LINK is defined by the UART link protocol; any canonical value passes here.
    pass


def _check_announce(msg_type, value):
    _record(msg_type, value)


def _check_pex_request(msg_type, value):
    _map(msg_type, value, (0, 1))
    _uint(msg_type, value[0], 1, PEX_WANT_MAX, "want (key 0)")
    for prefix in _list(msg_type, value[1], 0, PEX_HAVE_MAX, "have (key 1)"):
        _bytes(msg_type, prefix, PREFIX_LEN, PREFIX_LEN, "node id prefix")


def _check_pex_response(msg_type, value):
    _map(msg_type, value, (0,))
    for record in _list(msg_type, value[0], 0, PEX_RECORDS_MAX, "records (key 0)"):
        _record(msg_type, record)


def _check_nonce(msg_type, value):
    _map(msg_type, value, (0,))
    _uint(msg_type, value[0], 0, U32_MAX, "nonce (key 0)")


def _check_ack(msg_type, value):
    _map(msg_type, value, (0,))
    _uint(msg_type, value[0], 0, 0xFFFF, "acked sequence (key 0)")


def _check_inventory(msg_type, value):
    _map(msg_type, value, (0,))
    for item in _list(msg_type, value[0], 1, INV_MAX, "inventory (key 0)"):
        _list(msg_type, item, 2, 2, "inventory entry [kind, hash]")
        _uint(msg_type, item[0], KIND_TX, KIND_BLOCK, "inventory kind")
        _bytes(msg_type, item[1], HASH_LEN, HASH_LEN, "hash")


def _check_raw(msg_type, value):
    _map(msg_type, value, (0,))
    _bytes(msg_type, value[0], 1, 0xFFFFFFFF, "raw bytes (key 0)")


def _check_reject(msg_type, value):
    _map(msg_type, value, (0, 1, 2, 3))
    _uint(msg_type, value[0], KIND_TX, KIND_BLOCK, "kind (key 0)")
    _bytes(msg_type, value[1], HASH_LEN, HASH_LEN, "hash (key 1)")
    _uint(msg_type, value[2], 0, 0xFF, "reason code (key 2)")
    text = value[3]
    if not isinstance(text, str) or len(text.encode()) > REJECT_TEXT_MAX:
        _fail(msg_type, "text (key 3) must be a str of at most %d bytes" % REJECT_TEXT_MAX)


def _check_fragment(msg_type, value):
    fragment.check_fields(value)


_CHECKS = {
    ANNOUNCE: _check_announce,
    PEX_REQUEST: _check_pex_request,
    PEX_RESPONSE: _check_pex_response,
    PING: _check_nonce,
    PONG: _check_nonce,
    ACK: _check_ack,
    INV: _check_inventory,
    GETDATA: _check_inventory,
    TX: _check_raw,
    BLOCK: _check_raw,
    REJECT: _check_reject,
    FRAGMENT: _check_fragment,
    HELLO: _check_opaque_map,
    AUTH: _check_opaque_map,
    UART_LINK: _check_any,
}


def is_known(msg_type):
    return msg_type in _CHECKS


def check_fields(msg_type, value):
    """Validate an already-decoded body value; DecodeError / UnknownType."""
    check = _CHECKS.get(msg_type)
    if check is None:
        raise UnknownType(msg_type)
    check(msg_type, value)
    return value


def decode_body(msg_type, body):
    """Parse and validate a body; returns the decoded value. Type is checked first."""
    if msg_type not in _CHECKS:
        raise UnknownType(msg_type)
    return check_fields(msg_type, unpackb(body))


def encode_body(msg_type, fields):
    """Encoded body after the same checks decode_body makes (ValueError if they fail)."""
    check_fields(msg_type, fields)
    return packb(fields)


# ---------------------------------------------------------------- per-type builders


def encode_announce(record):
    return encode_body(ANNOUNCE, record)


def encode_pex_request(want, have):
    return encode_body(PEX_REQUEST, {0: want, 1: list(have)})


def encode_pex_response(records):
    return encode_body(PEX_RESPONSE, {0: list(records)})


def encode_ping(nonce):
    return encode_body(PING, {0: nonce})


def encode_pong(nonce):
    return encode_body(PONG, {0: nonce})


def encode_ack(seq):
    return encode_body(ACK, {0: seq})


def encode_inv(items):
    """`items`: (kind, hash32) pairs."""
    return encode_body(INV, {0: [[kind, h] for kind, h in items]})


def encode_getdata(items):
    return encode_body(GETDATA, {0: [[kind, h] for kind, h in items]})


def encode_tx(raw):
    return encode_body(TX, {0: bytes(raw)})


def encode_block(raw):
    return encode_body(BLOCK, {0: bytes(raw)})


def encode_reject(kind, obj_hash, code, text=""):
    return encode_body(REJECT, {0: kind, 1: obj_hash, 2: code, 3: text})


# ---------------------------------------------------------------- fragmented messages


def fragment_payload(msg_type, body):
    """The bytes a fragmented message carries: its type byte, then its encoded body."""
    if msg_type == FRAGMENT or not is_known(msg_type):
        raise ValueError("cannot fragment message type 0x%02x" % msg_type)
    if not body:
        raise ValueError("empty body")
    return bytes([msg_type]) + bytes(body)


def parse_fragment_payload(data):
    """(msg_type, body bytes) of a reassembled message; the body is not parsed yet.

    DecodeError if it is empty or nests a FRAGMENT. An unknown type is returned as is:
    decode_body reports it as UnknownType.
    """
    if len(data) < 2:
        raise DecodeError("reassembled message shorter than 2 bytes")
    if data[0] == FRAGMENT:
        raise DecodeError("a fragmented message may not be a FRAGMENT")
    return data[0], bytes(data[1:])


# ---------------------------------------------------------------- whole frames


def build(
    msg_type,
    fields,
    source,
    seq,
    tag,
    dest=None,
    flags=0,
    hop_limit=None,
    max_len=MAX_LORA_FRAME,
):
    """Frame bytes for a message: body from `fields` (checked), `tag` bytes or tag_fn."""
    frame = Frame(msg_type, source, seq, dest, flags)
    if hop_limit is not None:
        frame.hop_limit = hop_limit
    return _encode_frame(frame, encode_body(msg_type, fields), tag, max_len)


def parse(data, max_len=MAX_LORA_FRAME):
    """(Frame, fields) without checking the tag: for tools and tests. A node verifies the
    tag between frame.decode and decode_body instead."""
    frame = _decode_frame(data, max_len)
    return frame, decode_body(frame.type, frame.body)
