"""Messages of the UART link between a bridge board and the gateway.

A link packet (carried by lorawire.uart framing) is one type byte followed by one
canonical msgpack map with small integer keys. Field tables below are the schema;
`decode` checks every field and raises DecodeError for anything else.
"""

from lorawire.codec import packb, unpackb
from lorawire.errors import DecodeError

LINK_VERSION = 1

HELLO = 0x01  # both ways: versions and node id, sent on open and on request
FRAME_UP = 0x02  # board -> gateway: a frame heard on the radio, with link quality
FRAME_DOWN = 0x03  # gateway -> board: transmit this frame
TX_DONE = 0x04  # board -> gateway: handle sent, with its airtime
TX_DEFERRED = 0x05  # board -> gateway: handle not sent (yet), why, and when budget returns
RADIO_STATS = 0x06  # board -> gateway: counters and duty-cycle budget
CONFIG_GET = 0x07
CONFIG_VALUE = 0x08
CONFIG_SET = 0x09
BAN = 0x0A  # gateway -> board: drop this id at the radio
UNBAN = 0x0B
ERROR = 0x0F

# BAN seconds that mean "permanent" (u32 max: no finite ban is that long).
BAN_PERMANENT_SECONDS = 0xFFFFFFFF

# ERROR codes a board answers with.
ERR_BAD_PACKET = 1
ERR_UNEXPECTED = 2
ERR_UNKNOWN_KEY = 3
ERR_READ_ONLY = 4
ERR_BAD_VALUE = 5
ERR_TX_FAILED = 6

# FRAME_DOWN priorities: a board's transmit queue (loranode.txqueue CONTROL, BLOCKS,
# GOSSIP have these values; tests/test_vocabulary.py checks) and what the gateway maps
# its own onto (loragate.mesh.link.BOARD_PRIORITY).
PRIO_CONTROL = 0
PRIO_BLOCKS = 1
PRIO_GOSSIP = 2

# Deferral reasons.
DEFER_DUTY_CYCLE = 1
DEFER_QUEUE_FULL = 2
DEFER_DWELL = 3
DEFER_BANNED = 4

_BYTES = "bytes"
_ID = "id"
_INT = "int"
_STR = "str"
_ANY = "any"

# type -> {key: (field name, kind, required)}
SCHEMAS = {
    HELLO: {
        0: ("link_version", _INT, True),
        1: ("wire_version", _INT, True),
        2: ("firmware", _STR, True),
        3: ("node_id", _ID, True),
        4: ("role", _STR, True),
    },
    FRAME_UP: {0: ("frame", _BYTES, True), 1: ("rssi", _INT, True), 2: ("snr_q4", _INT, True)},
    FRAME_DOWN: {
        0: ("frame", _BYTES, True),
        1: ("priority", _INT, True),
        2: ("handle", _INT, True),
    },
    TX_DONE: {0: ("handle", _INT, True), 1: ("airtime_ms", _INT, True)},
    TX_DEFERRED: {0: ("handle", _INT, True), 1: ("reason", _INT, True), 2: ("wait_ms", _INT, True)},
    RADIO_STATS: {
        0: ("rx", _INT, True),
        1: ("tx", _INT, True),
        2: ("airtime_used_ms", _INT, True),
        3: ("airtime_budget_ms", _INT, True),
        4: ("channel_busy", _INT, True),
        5: ("dropped", _INT, True),
        6: ("banned_drops", _INT, True),
    },
    CONFIG_GET: {0: ("key", _STR, True)},
    CONFIG_VALUE: {0: ("key", _STR, True), 1: ("value", _ANY, True)},
    CONFIG_SET: {0: ("key", _STR, True), 1: ("value", _ANY, True)},
    BAN: {0: ("node_id", _ID, True), 1: ("seconds", _INT, True)},
    UNBAN: {0: ("node_id", _ID, True)},
    ERROR: {0: ("code", _INT, True), 1: ("text", _STR, True)},
}

_INT_RANGE = (-(1 << 31), (1 << 32) - 1)


def _valid(kind, value):
    if kind == _ANY:
        return True
    if kind == _INT:
        return (
            not isinstance(value, bool)
            and isinstance(value, int)
            and _INT_RANGE[0] <= value <= _INT_RANGE[1]
        )
    if kind == _STR:
        return isinstance(value, str) and len(value) <= 64
    if kind == _ID:
        return isinstance(value, bytes) and len(value) == 8
    return isinstance(value, bytes)


def encode(msg_type, **fields):
    """`encode(FRAME_UP, frame=b'...', rssi=-90, snr_q4=22)` -> link packet payload."""
    schema = SCHEMAS.get(msg_type)
    if schema is None:
        raise ValueError("unknown link message type %d" % msg_type)
    body = {}
    for key in schema:
        name, kind, required = schema[key]
        if name in fields:
            value = fields.pop(name)
            if not _valid(kind, value):
                raise ValueError("link field %s has a bad value" % name)
            body[key] = value
        elif required:
            raise ValueError("link field %s is missing" % name)
    if fields:
        raise ValueError("unknown link fields: %s" % ", ".join(sorted(fields)))
    return bytes((msg_type,)) + packb(body)


def decode(payload):
    """Link packet payload -> (type, {field name: value}); DecodeError for anything else."""
    if len(payload) < 2:
        raise DecodeError("link packet too short")
    msg_type = payload[0]
    schema = SCHEMAS.get(msg_type)
    if schema is None:
        raise DecodeError("unknown link message type 0x%02x" % msg_type)
    body = unpackb(payload[1:])
    if not isinstance(body, dict):
        raise DecodeError("link body must be a map")
    fields = {}
    for key in body:
        entry = schema.get(key)
        if entry is None:
            raise DecodeError("unknown key %r in link message 0x%02x" % (key, msg_type))
        if not _valid(entry[1], body[key]):
            raise DecodeError("link field %s has a bad value" % entry[0])
        fields[entry[0]] = body[key]
    for key in schema:
        name, _, required = schema[key]
        if required and name not in fields:
            raise DecodeError("link field %s is missing" % name)
    return msg_type, fields
