"""Regenerate tests/vectors/codec.json: `python tests/vectors/make_codec_vectors.py`.

Valid vectors are encoded by the `msgpack` package (an independent oracle), with map
items given to it in canonical key order; error vectors are hand-made byte strings,
each a distinct way to be malformed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack

OUT = Path(__file__).with_name("codec.json")


def typed(value: Any) -> Any:
    """JSON form of a value: bytes as {"$bin": hex}, maps as {"$map": [[k, v], ...]}."""
    if isinstance(value, bytes):
        return {"$bin": value.hex()}
    if isinstance(value, dict):
        return {"$map": [[typed(k), typed(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return value


def canonical_order(value: Any) -> Any:
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: msgpack.packb(kv[0], use_bin_type=True))
        return {k: canonical_order(v) for k, v in items}
    if isinstance(value, list):
        return [canonical_order(v) for v in value]
    return value


VALID: list[tuple[str, Any]] = [
    ("nil", None),
    ("true", True),
    ("false", False),
    ("zero", 0),
    ("fixint max", 127),
    ("uint8 min", 128),
    ("uint8 max", 255),
    ("uint16 min", 256),
    ("uint16 max", 65535),
    ("uint32 min", 65536),
    ("uint32 max", 2**32 - 1),
    ("uint64 min", 2**32),
    ("uint64 max", 2**64 - 1),
    ("negative fixint -1", -1),
    ("negative fixint -32", -32),
    ("int8 -33", -33),
    ("int8 min", -128),
    ("int16 -129", -129),
    ("int16 min", -32768),
    ("int32 -32769", -32769),
    ("int32 min", -(2**31)),
    ("int64 below int32", -(2**31) - 1),
    ("int64 min", -(2**63)),
    ("empty str", ""),
    ("ascii str", "lorachain"),
    ("fixstr max 31", "x" * 31),
    ("str8 32", "y" * 32),
    ("str8 255", "z" * 255),
    ("str16 256", "w" * 256),
    ("utf-8 two-byte", "é"),
    ("utf-8 three-byte", "€uro"),
    ("utf-8 four-byte", "\U0001f4e1 relay"),
    ("empty bin", b""),
    ("bin 1", b"\x00"),
    ("bin 32", bytes(range(32))),
    ("bin8 255", bytes(255)),
    ("bin16 256", b"\xab" * 256),
    ("node id", bytes.fromhex("0123456789abcdef")),
    ("empty array", []),
    ("fixarray 15", list(range(15))),
    ("array16 16", list(range(16))),
    ("nested arrays", [[[]], [1, [2, [3]]]]),
    ("mixed array", [None, True, -1, "a", b"b", [], {}]),
    ("empty map", {}),
    ("map int keys", {0: 1, 1: 2, 2: 3}),
    ("map int keys given unordered", {2: "c", 0: "a", 1: "b"}),
    ("map str keys", {"b": 1, "a": 2}),
    ("map shorter str key first", {"aa": 1, "b": 2}),
    ("map mixed key types", {"a": 1, 1: 2, b"k": 3}),
    ("map negative key", {-1: "neg", 5: "pos"}),
    ("map big int key", {300: 1, 4: 2}),
    ("map fixmap 15", {i: i for i in range(15)}),
    ("map16 16", {i: -i for i in range(16)}),
    ("nested map", {"peers": [{"id": b"\x01" * 8, "port": 8333}], "v": 1}),
    ("record-like", {0: b"\x11" * 32, 1: 2, 2: 7, 3: [["127.0.0.1", 8333]], 4: 42}),
    ("inv-like", {0: [[0, b"\xaa" * 32], [1, b"\xbb" * 32]]}),
    ("ping-like", {0: 4294967295}),
    ("deep 12", [[[[[[[[[[[[0]]]]]]]]]]]]),
    ("bools in map", {0: True, 1: False}),
    ("str with nul", "a\x00b"),
    ("array of 40 ints", list(range(-20, 20))),
    ("array of uint16s", [1000, 2000, 65535]),
    ("map of bins", {b"\x00": b"", b"\x01": b"\xff"}),
    ("map with nil values", {0: None, 1: None}),
    ("long str key", {"k" * 40: 1, "a": 2}),
    ("sequence wrap value", 65535),
    ("timestamp ms", 1_790_000_000_000),
]

# (name, hex): each must raise DecodeError on both runtimes.
ERRORS: list[tuple[str, str]] = [
    ("empty input", ""),
    ("never-used byte c1", "c1"),
    ("float32", "ca3f800000"),
    ("float64", "cb3ff0000000000000"),
    ("fixext1", "d40101"),
    ("fixext2", "d5010102"),
    ("fixext4", "d60101020304"),
    ("fixext8", "d7010102030405060708"),
    ("fixext16", "d801" + "00" * 16),
    ("ext8", "c70101ff"),
    ("ext16", "c8000101ff"),
    ("ext32", "c90000000101ff"),
    ("trailing byte", "c0c0"),
    ("trailing after map", "8000"),
    ("truncated uint16", "cd01"),
    ("truncated uint64", "cf0000000000"),
    ("truncated str", "a36162"),
    ("truncated bin length", "c5"),
    ("bin length beyond input", "c4ff00"),
    ("str16 length beyond input", "daffff61"),
    ("array length beyond input", "dc0100"),
    ("array32 huge length", "ddffffffff"),
    ("map32 huge length", "dfffffffff"),
    ("fixarray missing items", "930102"),
    ("map missing value", "8101"),
    ("map keys out of order", "8202000100"),
    ("map repeated key", "8201000100"),
    ("map str keys out of order", "82a16201a16102"),
    ("map longer key before shorter", "82a2616101a16202"),
    ("map key nil", "81c001"),
    ("map key bool", "81c301"),
    ("map key array", "819001"),
    ("map key map", "818001"),
    ("non-canonical uint8 for 5", "cc05"),
    ("non-canonical uint16 for 200", "cd00c8"),
    ("non-canonical uint32 for 60000", "ce0000ea60"),
    ("non-canonical uint64 for 1", "cf0000000000000001"),
    ("non-canonical int8 for -1", "d0ff"),
    ("non-canonical int8 positive", "d005"),
    ("non-canonical int16 for -100", "d1ff9c"),
    ("non-canonical int32 for -1000", "d2fffffc18"),
    ("non-canonical int64 for -5", "d3fffffffffffffffb"),
    ("non-canonical str8 short", "d90161"),
    ("non-canonical str16 short", "da000161"),
    ("non-canonical bin16 short", "c5000161"),
    ("non-canonical array16 short", "dc000101"),
    ("non-canonical map16 short", "de00010101"),
    ("invalid utf-8 lone continuation", "a180"),
    ("invalid utf-8 ff", "a1ff"),
    ("utf-8 surrogate", "a3eda080"),
    ("utf-8 overlong nul", "a2c080"),
    ("utf-8 overlong 3-byte", "a3e08080"),
    ("utf-8 above U+10FFFF", "a4f4908080"),
    ("utf-8 truncated sequence", "a2e282"),
    ("nesting 13 deep", "91" * 13 + "00"),
    ("nesting 40 deep maps", "8100" * 40 + "00"),
]


def main() -> None:
    vectors: list[dict[str, Any]] = []
    for name, value in VALID:
        encoded = msgpack.packb(canonical_order(value), use_bin_type=True)
        vectors.append({"name": name, "value": typed(value), "hex": encoded.hex()})
    for name, hex_ in ERRORS:
        vectors.append({"name": name, "hex": hex_, "error": True})
    # ensure_ascii=False: MicroPython's json turns \uD83D\uDCE1 pairs into two lone surrogates.
    OUT.write_text(json.dumps(vectors, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(VALID)} valid + {len(ERRORS)} error vectors -> {OUT}")


if __name__ == "__main__":
    main()
