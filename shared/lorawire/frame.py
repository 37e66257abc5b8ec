"""Frame header v1: the bytes around every message, on LoRa, TCP and UART alike.

Layout (big-endian; docs/PROTOCOL.md has the table):

    0   version << 4 | flags          flags: DEST 0x1, LINK 0x2, BRIDGED 0x4, reserved 0x8
    1   message type
    2   hop_limit << 4 | hop_count    hop_count <= hop_limit <= 15
    3   source node id (8)
    11  destination node id (8)       only when DEST is set
    +0  sequence (u16)
    +2  body: one canonical msgpack value (>= 1 byte)
    end tag (8)

The tag covers `tagged_region(frame)`: the header with hop_count zeroed, then the body,
so a relay can count hops without re-tagging. Computing the tag is lorawire.auth's
job; this module only carries the 8 bytes.

`decode` checks the header and the lengths, not the body: the caller verifies the tag
first and only then parses the body (lorawire.messages.decode_body), so bytes from
outside the network never reach the msgpack parser.
"""

from lorawire.errors import DecodeError

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

VERSION = const(1)

FLAG_DEST = const(0x1)
FLAG_LINK = const(0x2)
FLAG_BRIDGED = const(0x4)
FLAG_RESERVED = const(0x8)

ID_LEN = const(8)
TAG_LEN = const(8)
SEQ_MAX = const(0xFFFF)
MAX_HOPS = const(15)
DEFAULT_HOP_LIMIT = const(3)

HEADER_BROADCAST = const(13)
HEADER_UNICAST = const(21)
OVERHEAD_BROADCAST = HEADER_BROADCAST + TAG_LEN
OVERHEAD_UNICAST = HEADER_UNICAST + TAG_LEN
MIN_BODY = const(1)
MIN_FRAME = HEADER_BROADCAST + MIN_BODY + TAG_LEN

# One LoRa packet. The same frame over TCP may be longer: the TCP and UART links pass
# their own max_len (MAX_TCP_FRAME, a u16 length prefix) to decode().
MAX_LORA_FRAME = const(255)
MAX_TCP_FRAME = const(0xFFFF)

_HOP_BYTE = 2


class Frame:
    """A decoded (or to-be-encoded) frame. `body` is the encoded msgpack bytes."""

    __slots__ = (
        "version",
        "flags",
        "type",
        "hop_limit",
        "hop_count",
        "source",
        "dest",
        "seq",
        "body",
        "tag",
    )

    def __init__(
        self,
        msg_type,
        source,
        seq,
        dest=None,
        flags=0,
        hop_limit=DEFAULT_HOP_LIMIT,
        hop_count=0,
        body=b"",
        tag=b"",
        version=VERSION,
    ):
        self.version = version
        self.flags = (flags | FLAG_DEST) if dest is not None else flags
        self.type = msg_type
        self.hop_limit = hop_limit
        self.hop_count = hop_count
        self.source = source
        self.dest = dest
        self.seq = seq
        self.body = body
        self.tag = tag

    def __eq__(self, other):
        if not isinstance(other, Frame):
            return NotImplemented  # type: ignore[name-defined]  # the stubs' builtins lack it
        for name in Frame.__slots__:
            if getattr(self, name) != getattr(other, name):
                return False
        return True

    def __repr__(self):
        dest = "*" if self.dest is None else _hex(self.dest)
        return "Frame(type=0x%02x flags=0x%x hops=%d/%d %s->%s seq=%d body=%d)" % (
            self.type,
            self.flags,
            self.hop_count,
            self.hop_limit,
            _hex(self.source),
            dest,
            self.seq,
            len(self.body),
        )

    def header_len(self):
        return HEADER_UNICAST if self.flags & FLAG_DEST else HEADER_BROADCAST


def _hex(raw):
    return "".join("%02x" % b for b in raw)


def _is_bytes(value):
    return isinstance(value, (bytes, bytearray))


def _check_uint(value, maximum, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > maximum:
        raise ValueError("%s must be an int in 0..%d" % (what, maximum))


def encode_header(
    msg_type, source, seq, dest=None, flags=0, hop_limit=DEFAULT_HOP_LIMIT, hop_count=0
):
    """Header bytes (13 broadcast, 21 unicast); DEST comes from `dest`. ValueError on bad fields."""
    _check_uint(msg_type, 0xFF, "message type")
    _check_uint(seq, SEQ_MAX, "sequence")
    _check_uint(flags, 0x0F, "flags")
    _check_uint(hop_limit, MAX_HOPS, "hop_limit")
    _check_uint(hop_count, MAX_HOPS, "hop_count")
    if flags & FLAG_RESERVED:
        raise ValueError("reserved flag 0x8 must be 0")
    if hop_count > hop_limit:
        raise ValueError("hop_count %d exceeds hop_limit %d" % (hop_count, hop_limit))
    if not _is_bytes(source) or len(source) != ID_LEN:
        raise ValueError("source must be %d bytes" % ID_LEN)
    if dest is None:
        if flags & FLAG_DEST:
            raise ValueError("DEST flag without a destination")
    else:
        if not _is_bytes(dest) or len(dest) != ID_LEN:
            raise ValueError("dest must be %d bytes" % ID_LEN)
        flags |= FLAG_DEST
    out = bytearray(HEADER_UNICAST if dest is not None else HEADER_BROADCAST)
    out[0] = (VERSION << 4) | flags
    out[1] = msg_type
    out[2] = (hop_limit << 4) | hop_count
    out[3:11] = source
    pos = 11
    if dest is not None:
        out[11:19] = dest
        pos = 19
    out[pos] = seq >> 8
    out[pos + 1] = seq & 0xFF
    return bytes(out)


def encode(frame, body, tag, max_len=MAX_LORA_FRAME):
    """Frame bytes from the header fields of `frame` (a Frame; its body/tag are ignored).

    `body` is the encoded msgpack body (>= 1 byte). `tag` is the 8 tag bytes or a
    callable `tag_fn(region) -> 8 bytes` given the tagged region. ValueError when a
    field is out of range or the frame would exceed `max_len`.
    """
    flags = frame.flags & ~FLAG_DEST
    header = encode_header(
        frame.type, frame.source, frame.seq, frame.dest, flags, frame.hop_limit, frame.hop_count
    )
    if not _is_bytes(body) or len(body) < MIN_BODY:
        raise ValueError("body must be non-empty bytes")
    total = len(header) + len(body) + TAG_LEN
    if total > max_len:
        raise ValueError("frame of %d bytes exceeds %d" % (total, max_len))
    if callable(tag):
        region = bytearray(header)
        region[_HOP_BYTE] &= 0xF0
        region.extend(body)
        tag = tag(bytes(region))
    if not _is_bytes(tag) or len(tag) != TAG_LEN:
        raise ValueError("tag must be %d bytes" % TAG_LEN)
    return header + bytes(body) + bytes(tag)


def _as_bytes(data):
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise DecodeError("frame must be bytes")


def decode(data, max_len=MAX_LORA_FRAME):
    """Parse and validate the header and lengths of one frame; DecodeError on anything wrong.

    The body is returned as bytes, unparsed (see the module docstring for why).
    """
    data = _as_bytes(data)
    n = len(data)
    if n > max_len:
        raise DecodeError("frame of %d bytes exceeds %d" % (n, max_len))
    if n < MIN_FRAME:
        raise DecodeError("frame of %d bytes is shorter than the minimum %d" % (n, MIN_FRAME))
    version = data[0] >> 4
    flags = data[0] & 0x0F
    if version != VERSION:
        raise DecodeError("unsupported frame version %d" % version)
    if flags & FLAG_RESERVED:
        raise DecodeError("reserved flag 0x8 is set")
    hop_limit = data[2] >> 4
    hop_count = data[2] & 0x0F
    if hop_count > hop_limit:
        raise DecodeError("hop_count %d exceeds hop_limit %d" % (hop_count, hop_limit))
    if flags & FLAG_DEST:
        header_len = HEADER_UNICAST
        dest = data[11:19]
    else:
        header_len = HEADER_BROADCAST
        dest = None
    if n < header_len + MIN_BODY + TAG_LEN:
        raise DecodeError("unicast frame of %d bytes has no room for a body" % n)
    frame = Frame(
        data[1],
        data[3:11],
        (data[header_len - 2] << 8) | data[header_len - 1],
        dest,
        flags,
        hop_limit,
        hop_count,
        data[header_len : n - TAG_LEN],
        data[n - TAG_LEN :],
        version,
    )
    return frame


def tagged_region(data):
    """The bytes the tag covers: header with hop_count zeroed, then the body.

    Takes the whole frame (as received or as encoded); DecodeError if it is too short
    to hold a header, a body and a tag.
    """
    data = _as_bytes(data)
    header_len = HEADER_UNICAST if data and data[0] & FLAG_DEST else HEADER_BROADCAST
    if len(data) < header_len + MIN_BODY + TAG_LEN:
        raise DecodeError("frame too short")
    region = bytearray(data[: len(data) - TAG_LEN])
    region[_HOP_BYTE] &= 0xF0
    return bytes(region)


def peek_source(data):
    """Source id from the header alone (version checked), so banned sources are dropped
    before anything else is parsed or verified. DecodeError when the header is cut short."""
    data = _as_bytes(data)
    if len(data) < HEADER_BROADCAST:
        raise DecodeError("frame shorter than a header")
    if data[0] >> 4 != VERSION:
        raise DecodeError("unsupported frame version %d" % (data[0] >> 4))
    return data[3:11]


def peek_dest(data):
    """Destination id from the header alone, or None for a broadcast (or a header cut
    short): the cheap "is this for me" check before any tag work."""
    if len(data) < HEADER_UNICAST or not data[0] & FLAG_DEST:
        return None
    return bytes(data[11:19])


def peek_type(data):
    """Message type byte from the header alone; DecodeError when it is cut short."""
    if len(data) < HEADER_BROADCAST:
        raise DecodeError("frame shorter than a header")
    return data[1]


def with_hop(data, hop_count):
    """A copy of the frame bytes with hop_count replaced; the tag stays valid.

    ValueError if hop_count is above the frame's hop_limit (the frame must not travel
    further) or the frame is too short.
    """
    data = _as_bytes(data)
    if len(data) < HEADER_BROADCAST:
        raise ValueError("frame shorter than a header")
    hop_limit = data[_HOP_BYTE] >> 4
    _check_uint(hop_count, hop_limit, "hop_count")
    out = bytearray(data)
    out[_HOP_BYTE] = (hop_limit << 4) | hop_count
    return bytes(out)


def next_hop(data):
    """Frame bytes for relaying (hop_count + 1), or None when the hop limit is reached."""
    data = _as_bytes(data)
    if len(data) < HEADER_BROADCAST:
        raise ValueError("frame shorter than a header")
    hop = data[_HOP_BYTE]
    if hop & 0x0F >= hop >> 4:
        return None
    return with_hop(data, (hop & 0x0F) + 1)
