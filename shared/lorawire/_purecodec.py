"""Pure-Python msgpack subset with one canonical encoding per value.

Runs unchanged on MicroPython and CPython. Types: nil, bool, int (-2**63 .. 2**64-1),
bytes (bin), str, list/tuple (array) and dict (map). Map keys are int, str or bytes and
are written in bytewise lexicographic order of their encoded form (RFC 8949 §4.2.1),
because MicroPython dicts keep no insertion order and a signed record must have exactly
one encoding. For any value, the output is byte-identical to
`msgpack.packb(value, use_bin_type=True)` with the map items in that order.

The decoder accepts only canonical input: smallest int and length forms, map keys in
strictly increasing order (so no repeats), no trailing bytes, nesting at most
MAX_DEPTH. Anything else raises DecodeError.
"""

import struct

from lorawire.errors import DecodeError

MAX_DEPTH = 12
INT_MIN = -(1 << 63)
UINT_MAX = (1 << 64) - 1


def _lax_utf8():
    # MicroPython's str() rejects some invalid UTF-8 but accepts surrogates and
    # overlong forms; CPython rejects both. Detect it instead of naming a runtime.
    try:
        b"\xed\xa0\x80".decode()
        return True
    except UnicodeError:
        return False


_NEEDS_UTF8_CHECK = _lax_utf8()


# ---------------------------------------------------------------- encoding


def _pack_uint(out, n):
    if n < 0x80:
        out.append(n)
    elif n < 0x100:
        out.append(0xCC)
        out.append(n)
    elif n < 0x10000:
        out.extend(struct.pack(">BH", 0xCD, n))
    elif n < 0x100000000:
        out.extend(struct.pack(">BI", 0xCE, n))
    elif n <= UINT_MAX:
        out.extend(struct.pack(">BQ", 0xCF, n))
    else:
        raise ValueError("int out of range")


def _pack_int(out, n):
    if n >= 0:
        _pack_uint(out, n)
    elif n >= -32:
        out.append(n & 0xFF)
    elif n >= -0x80:
        out.extend(struct.pack(">Bb", 0xD0, n))
    elif n >= -0x8000:
        out.extend(struct.pack(">Bh", 0xD1, n))
    elif n >= -0x80000000:
        out.extend(struct.pack(">Bi", 0xD2, n))
    elif n >= INT_MIN:
        out.extend(struct.pack(">Bq", 0xD3, n))
    else:
        raise ValueError("int out of range")


def _pack_len(out, n, fix_base, fix_max, code8, code16, code32):
    if n <= fix_max:
        out.append(fix_base | n)
    elif code8 and n < 0x100:
        out.append(code8)
        out.append(n)
    elif n < 0x10000:
        out.extend(struct.pack(">BH", code16, n))
    elif n < 0x100000000:
        out.extend(struct.pack(">BI", code32, n))
    else:
        raise ValueError("value too long")


def _pack_key(key):
    if isinstance(key, bool) or not isinstance(key, (int, str, bytes)):
        raise TypeError("map keys must be int, str or bytes")
    out = bytearray()
    _pack_into(out, key, 0)
    return bytes(out)


def _first(item):
    return item[0]


def _pack_into(out, value, depth):
    if depth > MAX_DEPTH:
        raise ValueError("nesting deeper than %d" % MAX_DEPTH)
    if value is None:
        out.append(0xC0)
    elif value is True:
        out.append(0xC3)
    elif value is False:
        out.append(0xC2)
    elif isinstance(value, int):
        _pack_int(out, value)
    elif isinstance(value, str):
        raw = value.encode()
        _pack_len(out, len(raw), 0xA0, 31, 0xD9, 0xDA, 0xDB)
        out.extend(raw)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _pack_len(out, len(value), 0, -1, 0xC4, 0xC5, 0xC6)
        out.extend(value)
    elif isinstance(value, (list, tuple)):
        _pack_len(out, len(value), 0x90, 15, 0, 0xDC, 0xDD)
        for item in value:
            _pack_into(out, item, depth + 1)
    elif isinstance(value, dict):
        items = [(_pack_key(k), v) for k, v in value.items()]
        items.sort(key=_first)
        _pack_len(out, len(items), 0x80, 15, 0, 0xDE, 0xDF)
        for key_bytes, item in items:
            out.extend(key_bytes)
            _pack_into(out, item, depth + 1)
    else:
        raise TypeError("cannot encode %s" % type(value).__name__)


def packb(value):
    """Encode `value`; TypeError for a type outside the subset, ValueError for a range."""
    out = bytearray()
    _pack_into(out, value, 0)
    return bytes(out)


# ---------------------------------------------------------------- decoding

# Fixed-width forms: the lead byte gives the width (1 << (b - first)); a value or length
# that fits a shorter form is not canonical. _least(w, fix) is the smallest value a w-byte
# uint or str length may carry when those up to `fix` have a one-byte form (containers
# have no 8-bit form: 16 and 0x10000).


def _least(width, fix):
    return fix + 1 if width == 1 else 1 << (4 * width)


def _check_utf8(raw):
    # Strict UTF-8 as CPython decodes it: no overlong forms, no surrogates, <= U+10FFFF.
    i = 0
    n = len(raw)
    while i < n:
        b = raw[i]
        if b < 0x80:
            i += 1
            continue
        if 0xC2 <= b <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif b == 0xE0:
            need, lo, hi = 2, 0xA0, 0xBF
        elif b == 0xED:
            need, lo, hi = 2, 0x80, 0x9F
        elif 0xE1 <= b <= 0xEF:
            need, lo, hi = 2, 0x80, 0xBF
        elif b == 0xF0:
            need, lo, hi = 3, 0x90, 0xBF
        elif 0xF1 <= b <= 0xF3:
            need, lo, hi = 3, 0x80, 0xBF
        elif b == 0xF4:
            need, lo, hi = 3, 0x80, 0x8F
        else:
            raise DecodeError("invalid UTF-8 in str")
        if i + need >= n:
            raise DecodeError("invalid UTF-8 in str")
        c = raw[i + 1]
        if c < lo or c > hi:
            raise DecodeError("invalid UTF-8 in str")
        for j in range(i + 2, i + 1 + need):
            if raw[j] & 0xC0 != 0x80:
                raise DecodeError("invalid UTF-8 in str")
        i += 1 + need


class _Reader:
    """Cursor over the input; every read checks the declared length against what is left."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        start = self.pos
        end = start + n
        if end > len(self.data):
            raise DecodeError("truncated: need %d bytes at offset %d" % (n, start))
        self.pos = end
        return self.data[start:end]

    def byte(self):
        if self.pos >= len(self.data):
            raise DecodeError("truncated at offset %d" % self.pos)
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uint(self, width):
        return int.from_bytes(self.take(width), "big")

    def left(self):
        return len(self.data) - self.pos


def _length(r, width, minimum, what):
    n = r.uint(width)
    if n < minimum:
        raise DecodeError("non-canonical %s length %d" % (what, n))
    return n


def _read_str(r, n):
    raw = r.take(n)
    try:
        text = str(raw, "utf-8")
    except UnicodeError:
        raise DecodeError("invalid UTF-8 in str") from None
    if _NEEDS_UTF8_CHECK and len(text) != n:
        _check_utf8(raw)
    return text


def _read_int(r, b):
    if b <= 0xCF:  # uint 8/16/32/64
        width = 1 << (b - 0xCC)
        n = r.uint(width)
        if n < _least(width, 0x7F):
            raise DecodeError("non-canonical uint")
        return n
    width = 1 << (b - 0xD0)  # int 8/16/32/64
    n = r.uint(width)
    bits = 8 * width
    if n >= 1 << (bits - 1):
        n -= 1 << bits
    # Canonical: negative only, and not representable in a shorter form.
    if n >= 0 or n >= -32 or (width > 1 and n >= -(1 << (bits // 2 - 1))):
        raise DecodeError("non-canonical int")
    return n


def _read(r, depth):
    if depth > MAX_DEPTH:
        raise DecodeError("nesting deeper than %d" % MAX_DEPTH)
    b = r.byte()
    if b < 0x80:
        return b
    if b >= 0xE0:
        return b - 0x100
    if b < 0x90:
        return _read_map(r, b & 0x0F, depth)
    if b < 0xA0:
        return _read_array(r, b & 0x0F, depth)
    if b < 0xC0:
        return _read_str(r, b & 0x1F)
    if b == 0xC0:
        return None
    if b == 0xC2:
        return False
    if b == 0xC3:
        return True
    if 0xCC <= b <= 0xD3:
        return _read_int(r, b)
    if 0xD9 <= b <= 0xDB:
        width = 1 << (b - 0xD9)
        return _read_str(r, _length(r, width, _least(width, 31), "str"))
    if 0xC4 <= b <= 0xC6:
        width = 1 << (b - 0xC4)
        return bytes(r.take(_length(r, width, 0 if width == 1 else 1 << (4 * width), "bin")))
    if b == 0xDC or b == 0xDD:
        width = 2 << (b - 0xDC)
        return _read_array(r, _length(r, width, 16 if width == 2 else 0x10000, "array"), depth)
    if b == 0xDE or b == 0xDF:
        width = 2 << (b - 0xDE)
        return _read_map(r, _length(r, width, 16 if width == 2 else 0x10000, "map"), depth)
    raise DecodeError("type 0x%02x is outside the supported subset" % b)


def _read_array(r, n, depth):
    # Each element takes at least one byte: refuse before allocating for a lying length.
    if n > r.left():
        raise DecodeError("array length %d exceeds the input" % n)
    out = []
    for _ in range(n):
        out.append(_read(r, depth + 1))
    return out


def _read_map(r, n, depth):
    if 2 * n > r.left():
        raise DecodeError("map length %d exceeds the input" % n)
    out = {}
    previous = None
    for _ in range(n):
        start = r.pos
        key = _read(r, depth + 1)
        if isinstance(key, bool) or not isinstance(key, (int, str, bytes)):
            raise DecodeError("map key must be int, str or bytes")
        key_bytes = r.data[start : r.pos]
        if previous is not None and key_bytes <= previous:
            raise DecodeError("map keys out of canonical order or repeated")
        previous = key_bytes
        out[key] = _read(r, depth + 1)
    return out


def unpackb(data):
    """Decode exactly one canonical value from `data`; DecodeError on any other input."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("input must be bytes")
    r = _Reader(bytes(data))
    value = _read(r, 0)
    if r.pos != len(r.data):
        raise DecodeError("%d trailing bytes" % (len(r.data) - r.pos))
    return value
