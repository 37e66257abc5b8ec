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

A builder per message type and whole-frame helpers are in lorawire.compose (hosts and
tests; a board holds only what a node sends).
"""

from lorawire import fragment
from lorawire.codec import packb, unpackb
from lorawire.errors import DecodeError

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

ANNOUNCE = const(0x01)
PEX_REQUEST = const(0x02)
PEX_RESPONSE = const(0x03)
PING = const(0x04)
PONG = const(0x05)
ACK = const(0x06)
INV = const(0x10)
GETDATA = const(0x11)
TX = const(0x12)
BLOCK = const(0x13)
REJECT = const(0x14)
FRAGMENT = const(0x20)
HELLO = const(0x30)
AUTH = const(0x31)
UART_LINK = const(0x3F)

# Limits.
PEX_WANT_MAX = const(16)
PEX_HAVE_MAX = const(16)
PREFIX_LEN = const(4)
PEX_RECORDS_MAX = const(32)  # on TCP; on LoRa a record fills the frame, so one per frame
INV_MAX = const(32)
HASH_LEN = const(32)
REJECT_TEXT_MAX = const(64)  # bytes of UTF-8
U32_MAX = const(0xFFFFFFFF)

# Inventory kinds.
KIND_TX = const(0)
KIND_BLOCK = const(1)

# REJECT reason codes (the values of Bitcoin's BIP 61).
REJECT_MALFORMED = const(0x01)
REJECT_INVALID = const(0x10)
REJECT_OBSOLETE = const(0x11)
REJECT_DUPLICATE = const(0x12)
REJECT_NONSTANDARD = const(0x40)
REJECT_DUST = const(0x41)
REJECT_INSUFFICIENT_FEE = const(0x42)
REJECT_CHECKPOINT = const(0x43)


class UnknownType(DecodeError):
    """The message type is not one this version knows; `msg_type` says which."""

    def __init__(self, msg_type):
        super().__init__("unknown message type 0x%02x" % msg_type)
        self.msg_type = msg_type


def type_name(msg_type):
    """A type's name on CPython (lorawire.names); its number under MicroPython: a board
    holds no name table, and a unix port runs as a board does."""
    import sys

    if sys.implementation.name == "micropython":
        return "0x%02x" % msg_type
    from lorawire.names import MESSAGE_TYPES

    return MESSAGE_TYPES.get(msg_type, "0x%02x" % msg_type)


# ---------------------------------------------------------------- field checks

# A map body is a tuple of fields (key, kind, lo, hi, what); its keys are exactly those.
# One small interpreter checks every map type (a board holds one function, not one each).
_UINT = const(0)  # an int in lo..hi
_BIN = const(1)  # bytes of lo..hi
_RECORDS = const(2)  # a list of lo..hi peer records (non-empty maps; lorawire.record checks them)
_PREFIXES = const(3)  # a list of lo..hi node id prefixes (PREFIX_LEN bytes)
_INVENTORY = const(4)  # a list of lo..hi [kind, hash] entries
_TEXT = const(5)  # a str of at most hi bytes of UTF-8

_NONCE = ((0, _UINT, 0, U32_MAX, "nonce (key 0)"),)
_INV = ((0, _INVENTORY, 1, INV_MAX, "inventory (key 0)"),)
_RAW = ((0, _BIN, 1, U32_MAX, "raw bytes (key 0)"),)
_MAPS = {
    PEX_REQUEST: (
        (0, _UINT, 1, PEX_WANT_MAX, "want (key 0)"),
        (1, _PREFIXES, 0, PEX_HAVE_MAX, "have (key 1)"),
    ),
    PEX_RESPONSE: ((0, _RECORDS, 0, PEX_RECORDS_MAX, "records (key 0)"),),
    PING: _NONCE,
    PONG: _NONCE,
    ACK: ((0, _UINT, 0, 0xFFFF, "acked sequence (key 0)"),),
    INV: _INV,
    GETDATA: _INV,
    TX: _RAW,
    BLOCK: _RAW,
    REJECT: (
        (0, _UINT, KIND_TX, KIND_BLOCK, "kind (key 0)"),
        (1, _BIN, HASH_LEN, HASH_LEN, "hash (key 1)"),
        (2, _UINT, 0, 0xFF, "reason code (key 2)"),
        (3, _TEXT, 0, REJECT_TEXT_MAX, "text (key 3)"),
    ),
}
# Bodies that are not field maps: ANNOUNCE (a peer record, checked by lorawire.record after
# the frame tag: here any non-empty map), FRAGMENT (lorawire.fragment), HELLO and AUTH
# (lorawire.handshake: here any map) and UART_LINK (the UART link protocol: anything).
_OTHER = (ANNOUNCE, FRAGMENT, HELLO, AUTH, UART_LINK)


def _fail(msg_type, text):
    raise DecodeError("%s: %s" % (type_name(msg_type), text))


def _uint(msg_type, value, lo, hi, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or value > hi:
        _fail(msg_type, "%s must be an int in %d..%d" % (what, lo, hi))


def _bytes(msg_type, value, lo, hi, what):
    if not isinstance(value, bytes) or len(value) < lo or len(value) > hi:
        if lo == hi:
            _fail(msg_type, "%s must be %d bytes" % (what, lo))
        _fail(msg_type, "%s must be %d..%d bytes" % (what, lo, hi))


def _field(msg_type, kind, value, lo, hi, what):
    if kind == _UINT:
        _uint(msg_type, value, lo, hi, what)
    elif kind == _BIN:
        _bytes(msg_type, value, lo, hi, what)
    elif kind == _TEXT:
        if not isinstance(value, str) or len(value.encode()) > hi:
            _fail(msg_type, "%s must be a str of at most %d bytes" % (what, hi))
    else:
        if not isinstance(value, list) or len(value) < lo or len(value) > hi:
            _fail(msg_type, "%s must be a list of %d..%d items" % (what, lo, hi))
        for item in value:
            if kind == _PREFIXES:
                _bytes(msg_type, item, PREFIX_LEN, PREFIX_LEN, "node id prefix")
            elif kind == _RECORDS:
                if not isinstance(item, dict) or not item:
                    _fail(msg_type, "peer record must be a non-empty map")
            else:
                if not isinstance(item, list) or len(item) != 2:
                    _fail(msg_type, "inventory entry [kind, hash] must be a list of 2..2 items")
                _uint(msg_type, item[0], KIND_TX, KIND_BLOCK, "inventory kind")
                _bytes(msg_type, item[1], HASH_LEN, HASH_LEN, "hash")


def is_known(msg_type):
    return msg_type in _MAPS or msg_type in _OTHER


def check_fields(msg_type, value):
    """Validate an already-decoded body value; DecodeError / UnknownType."""
    fields = _MAPS.get(msg_type)
    if fields is not None:
        if not isinstance(value, dict):
            _fail(msg_type, "body must be a map")
        if len(value) != len(fields):
            _fail(msg_type, "body must have exactly the keys %s" % (tuple(f[0] for f in fields),))
        for key, kind, lo, hi, what in fields:
            if key not in value:
                _fail(msg_type, "key %d missing" % key)
            _field(msg_type, kind, value[key], lo, hi, what)
    elif msg_type == ANNOUNCE:
        if not isinstance(value, dict) or not value:
            _fail(msg_type, "peer record must be a non-empty map")
    elif msg_type == FRAGMENT:
        fragment.check_fields(value)
    elif msg_type == HELLO or msg_type == AUTH:
        if not isinstance(value, dict):
            _fail(msg_type, "body must be a map")
    elif msg_type != UART_LINK:
        raise UnknownType(msg_type)
    return value


def decode_body(msg_type, body):
    """Parse and validate a body; returns the decoded value. Type is checked first."""
    if not is_known(msg_type):
        raise UnknownType(msg_type)
    return check_fields(msg_type, unpackb(body))


def encode_body(msg_type, fields):
    """Encoded body after the same checks decode_body makes (ValueError if they fail)."""
    check_fields(msg_type, fields)
    return packb(fields)


# ---------------------------------------------------------------- the builders a node uses
# (one per message type, and whole frames, for hosts and tests: lorawire.compose)


def encode_ping(nonce):
    return encode_body(PING, {0: nonce})


def encode_pex_request(want, have):
    return encode_body(PEX_REQUEST, {0: want, 1: list(have)})


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
