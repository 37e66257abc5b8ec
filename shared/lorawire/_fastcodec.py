"""CPython fast path: the `msgpack` C extension behind the same canonical rules.

Encoding walks the value once to check the subset and put map keys in canonical order
(reusing containers that already are), then lets the C packer write the bytes.
Decoding lets the C unpacker parse, checks types, key types and key order in one walk,
then re-packs and compares: msgpack keeps the wire order of map items, so equal bytes
prove smallest forms and no repeated keys.
"""

import msgpack

from lorawire._purecodec import INT_MIN, MAX_DEPTH, UINT_MAX
from lorawire.errors import DecodeError

_packer = msgpack.Packer(use_bin_type=True)
_SCALARS = (type(None), bool, str, bytes)


def _key_bytes(key):
    if isinstance(key, bool) or not isinstance(key, (int, str, bytes)):
        raise TypeError("map keys must be int, str or bytes")
    return _packer.pack(key)


def _ordered_keys(mapping):
    # Non-negative int keys encode in numeric order (fixint < uint8 < uint16 ...), the
    # common case for our bodies; anything else is ordered by its encoded bytes.
    keys = list(mapping)
    if all(type(k) is int and k >= 0 for k in keys):
        return sorted(keys)
    return [k for _, k in sorted((_key_bytes(k), k) for k in keys)]


def _canonical(value, depth):
    """`value` itself if it is already canonical, else a canonical copy."""
    if depth > MAX_DEPTH:
        raise ValueError("nesting deeper than %d" % MAX_DEPTH)
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is int:
        if value < INT_MIN or value > UINT_MAX:
            raise ValueError("int out of range")
        return value
    if kind is list or kind is tuple:
        items = [_canonical(item, depth + 1) for item in value]
        same = kind is list and all(a is b for a, b in zip(items, value, strict=True))
        return value if same else items
    if kind is dict:
        keys = _ordered_keys(value)
        out = {k: _canonical(value[k], depth + 1) for k in keys}
        same = keys == list(value) and all(out[k] is value[k] for k in keys)
        return value if same else out
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (int, str, bytes, list, tuple, dict)):  # subclasses
        return _canonical(_plain(value), depth)
    raise TypeError("cannot encode %s" % kind.__name__)


def _plain(value):
    for base in (bool, int, str, bytes, list, dict):
        if isinstance(value, base):
            return base(value)
    return list(value)


def packb(value):
    return _packer.pack(_canonical(value, 0))


def _check_decoded(value, depth):
    if depth > MAX_DEPTH:
        raise DecodeError("nesting deeper than %d" % MAX_DEPTH)
    kind = type(value)
    if kind is list:
        for item in value:
            _check_decoded(item, depth + 1)
    elif kind is dict:
        previous = None
        for key, item in value.items():
            current = _key_bytes(key)
            if previous is not None and current <= previous:
                raise DecodeError("map keys out of canonical order or repeated")
            previous = current
            _check_decoded(item, depth + 1)
    elif kind not in _SCALARS and kind is not int:
        raise DecodeError("type %s is outside the supported subset" % kind.__name__)


def unpackb(data):
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("input must be bytes")
    data = bytes(data)
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
        _check_decoded(value, 0)
        canonical = _packer.pack(value)
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises many types (ExtraData, FormatError, ...)
        raise DecodeError("malformed: %s" % exc) from None
    if canonical != data:
        raise DecodeError("not the canonical encoding of its value")
    return value
