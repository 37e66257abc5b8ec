"""Generate tests/vectors/frames.json and the hex examples in docs/PROTOCOL.md.

    .venv/bin/python tests/shared/frames_vectors_gen.py            # rewrite frames.json
    .venv/bin/python tests/shared/frames_vectors_gen.py --markdown # print the doc examples

test_frame.py checks that the committed file equals what this produces, and that every
example frame appears in docs/PROTOCOL.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Any

from lorawire import fragment, frame, messages, record  # the .venv's editable install
from lorawire.codec import packb, unpackb

ROOT = Path(__file__).resolve().parents[2]

VECTORS_PATH = ROOT / "tests" / "vectors" / "frames.json"

# Example key only: which key tags a frame (network, pairwise, session) is lorawire.auth's.
TAG_KEY = bytes(range(32))
ALICE = bytes.fromhex("a1a2a3a4a5a6a7a8")
BOB = bytes.fromhex("b1b2b3b4b5b6b7b8")
TX_HASH = hashlib.sha256(b"example tx").digest()
BLOCK_HASH = hashlib.sha256(b"example block").digest()
# A real signed peer record (Ed25519 signatures are deterministic): a gateway with one
# internet endpoint and mesh hints, signed with the example seed below.
RECORD_SEED = bytes(range(100, 132))
RECORD = unpackb(
    record.encode_record(
        {
            "seq": 42,
            "kind": record.KIND_GATEWAY,
            "services": 3,
            "endpoints": [(bytes([192, 0, 2, 7]), 8333)],
            "mesh": (0, 9),
        },
        RECORD_SEED,
    )
)
RECORD_ID = hashlib.sha256(RECORD[0]).digest()[:8]  # the node id: announces carry it


def tag_fn(region: bytes) -> bytes:
    return hmac.new(TAG_KEY, region, hashlib.sha256).digest()[:8]


def typed(v: Any) -> Any:
    """JSON form shared with tests/vectors/codec.json: $bin for bytes, $map for maps."""
    if isinstance(v, bytes):
        return {"$bin": v.hex()}
    if isinstance(v, dict):
        items = sorted(v.items(), key=lambda kv: packb(kv[0]))
        return {"$map": [[typed(k), typed(x)] for k, x in items]}
    if isinstance(v, list | tuple):
        return [typed(x) for x in v]
    return v


# name, type, fields, header overrides
VALID: list[tuple[str, int, Any, dict[str, Any]]] = [
    ("announce", messages.ANNOUNCE, RECORD, {"hop_limit": 2, "source": RECORD_ID}),
    (
        "pex_request",
        messages.PEX_REQUEST,
        {0: 4, 1: [bytes.fromhex("c1c2c3c4"), bytes.fromhex("d1d2d3d4")]},
        {"dest": BOB, "flags": frame.FLAG_LINK, "hop_limit": 0},
    ),
    (
        "pex_response",
        messages.PEX_RESPONSE,
        {0: [RECORD]},
        {"dest": BOB, "flags": frame.FLAG_LINK, "hop_limit": 0},
    ),
    ("ping", messages.PING, {0: 0xDEADBEEF}, {"seq": 1}),
    ("pong", messages.PONG, {0: 0xDEADBEEF}, {"source": BOB, "dest": ALICE, "seq": 9}),
    ("ack", messages.ACK, {0: 513}, {"source": BOB, "dest": ALICE, "flags": frame.FLAG_LINK}),
    ("inv", messages.INV, {0: [[0, TX_HASH], [1, BLOCK_HASH]]}, {"hop_count": 1}),
    ("getdata", messages.GETDATA, {0: [[1, BLOCK_HASH]]}, {"dest": BOB}),
    ("tx", messages.TX, {0: bytes.fromhex("0100000001") + bytes(20)}, {}),
    ("block", messages.BLOCK, {0: bytes.fromhex("00000020") + bytes(40)}, {"flags": 4}),
    (
        "reject",
        messages.REJECT,
        {0: 0, 1: TX_HASH, 2: messages.REJECT_DUPLICATE, 3: "already have it"},
        {"dest": BOB},
    ),
    ("fragment", messages.FRAGMENT, [7, 0, 2, bytes(range(16))], {}),
    ("hello", messages.HELLO, {0: 1, 1: bytes(32)}, {"hop_limit": 0}),
    ("auth", messages.AUTH, {0: bytes(64)}, {"hop_limit": 0}),
]


def make_frame(msg_type: int, fields: Any, over: dict[str, Any]) -> dict[str, Any]:
    f = frame.Frame(
        msg_type,
        over.get("source", ALICE),
        over.get("seq", 0x0102),
        over.get("dest"),
        over.get("flags", 0),
        over.get("hop_limit", 3),
        over.get("hop_count", 0),
    )
    body = messages.encode_body(msg_type, fields)
    data = frame.encode(f, body, tag_fn, over.get("max_len", frame.MAX_LORA_FRAME))
    return {
        "type": msg_type,
        "flags": f.flags,
        "hop_limit": f.hop_limit,
        "hop_count": f.hop_count,
        "source": f.source.hex(),
        "dest": None if f.dest is None else f.dest.hex(),
        "seq": f.seq,
        "fields": typed(fields),
        "body": body.hex(),
        "tag": tag_fn(frame.tagged_region(data)).hex(),
        "hex": data.hex(),
    }


def retag(data: bytes) -> bytes:
    """Give broken bytes a correct tag, so the error is the one the vector names."""
    return data[:-8] + tag_fn(data[:2] + bytes([data[2] & 0xF0]) + data[3:-8])


def broken() -> list[dict[str, Any]]:
    ping = bytes.fromhex(make_frame(messages.PING, {0: 5}, {})["hex"])
    head = ping[:13]  # broadcast header
    uni = bytes.fromhex(make_frame(messages.ACK, {0: 5}, {"dest": BOB})["hex"])

    def body(msg_type: int, raw: bytes) -> bytes:
        return retag(bytes([0x10, msg_type]) + head[2:] + raw + bytes(8))

    def big(msg_type: int, fields: Any) -> bytes:
        return retag(bytes([0x10, msg_type]) + head[2:] + packb(fields) + bytes(8))

    items: list[tuple[str, bytes, str, int]] = [
        ("empty", b"", "frame", 255),
        ("truncated header", ping[:7], "frame", 255),
        ("header and tag without body", head + ping[-8:], "frame", 255),
        ("version 0", bytes([0x00]) + ping[1:], "frame", 255),
        ("version 2", bytes([0x20]) + ping[1:], "frame", 255),
        ("reserved flag set", bytes([0x18]) + ping[1:], "frame", 255),
        ("hop_count above hop_limit", ping[:2] + bytes([0x34]) + ping[3:], "frame", 255),
        ("DEST flag but too short for destination", bytes([0x11]) + ping[1:], "frame", 255),
        ("unicast cut inside destination", uni[:16], "frame", 255),
        ("oversize on LoRa (256 bytes)", big(messages.TX, {0: bytes(231)}), "frame", 255),
        ("oversize for the given max_len", ping, "frame", len(ping) - 1),
        ("body trailing byte", body(messages.PING, bytes.fromhex("8100050000")), "body", 255),
        ("body non-canonical uint8", body(messages.PING, bytes.fromhex("8100cc05")), "body", 255),
        (
            "body keys out of order",
            body(messages.PEX_REQUEST, bytes.fromhex("8201900001")),
            "body",
            255,
        ),
        ("body map truncated", body(messages.PING, bytes.fromhex("81")), "body", 255),
        ("body not msgpack (0xc1)", body(messages.PING, bytes.fromhex("c1")), "body", 255),
        ("ping nonce above u32", big(messages.PING, {0: 1 << 32}), "body", 255),
        ("ping nonce negative", big(messages.PING, {0: -1}), "body", 255),
        ("ping nonce is bool", big(messages.PING, {0: True}), "body", 255),
        ("ping missing key", big(messages.PING, {}), "body", 255),
        ("ping extra key", big(messages.PING, {0: 1, 1: 2}), "body", 255),
        ("ping body is an array", big(messages.PING, [1]), "body", 255),
        ("ack sequence above u16", big(messages.ACK, {0: 0x10000}), "body", 255),
        ("pex_request want 0", big(messages.PEX_REQUEST, {0: 0, 1: []}), "body", 255),
        ("pex_request want 17", big(messages.PEX_REQUEST, {0: 17, 1: []}), "body", 255),
        (
            "pex_request prefix 5 bytes",
            big(messages.PEX_REQUEST, {0: 1, 1: [bytes(5)]}),
            "body",
            255,
        ),
        ("pex_response record not a map", big(messages.PEX_RESPONSE, {0: [b"x"]}), "body", 255),
        ("announce not a map", big(messages.ANNOUNCE, [1, 2]), "body", 255),
        ("inv empty", big(messages.INV, {0: []}), "body", 255),
        ("inv kind 2", big(messages.INV, {0: [[2, TX_HASH]]}), "body", 255),
        ("inv hash 31 bytes", big(messages.INV, {0: [[0, TX_HASH[:31]]]}), "body", 255),
        ("inv 33 entries (TCP)", big(messages.INV, {0: [[0, TX_HASH]] * 33}), "body", 0xFFFF),
        ("tx empty", big(messages.TX, {0: b""}), "body", 255),
        (
            "reject text 65 bytes",
            big(messages.REJECT, {0: 0, 1: TX_HASH, 2: 1, 3: "x" * 65}),
            "body",
            255,
        ),
        ("fragment index = count", big(messages.FRAGMENT, [1, 2, 2, b"ab"]), "body", 255),
        ("fragment count 17", big(messages.FRAGMENT, [1, 0, 17, b"ab"]), "body", 255),
        ("fragment empty chunk", big(messages.FRAGMENT, [1, 0, 2, b""]), "body", 255),
        (
            "hello nested deeper than MAX_DEPTH",
            body(messages.HELLO, bytes.fromhex("8100" + "91" * 12 + "c0")),
            "body",
            255,
        ),
        ("unknown type 0x7e", big(0x7E, {0: 1}), "unknown", 255),
        ("unknown type 0x00", big(0x00, {0: 1}), "unknown", 255),
    ]
    out = []
    for name, data, stage, max_len in items:
        out.append({"name": name, "hex": data.hex(), "max_len": max_len, "error": stage})
    return out


FRAGMENT_CASES = [
    ("400 bytes, LoRa broadcast", bytes(i * 7 & 0xFF for i in range(400)), 0x0102, 255, False),
    ("500 bytes, LoRa unicast", bytes(i * 13 & 0xFF for i in range(500)), 0xBEEF, 255, True),
    ("exactly two chunks", bytes(range(226)) * 2, 3, 255, False),
]


def fragments() -> list[dict[str, Any]]:
    out = []
    for name, msg, msg_id, mtu, unicast in FRAGMENT_CASES:
        overhead = frame.OVERHEAD_UNICAST if unicast else frame.OVERHEAD_BROADCAST
        bodies = fragment.split(msg, msg_id, mtu - overhead)
        out.append(
            {
                "name": name,
                "message": msg.hex(),
                "msg_id": msg_id,
                "mtu": mtu,
                "unicast": unicast,
                "max_chunk": fragment.max_chunk(mtu, unicast),
                "fragments": [b.hex() for b in bodies],
            }
        )
    return out


def build_vectors() -> dict[str, Any]:
    frames = []
    for name, msg_type, fields, over in VALID:
        entry = {"name": name}
        entry.update(make_frame(msg_type, fields, over))
        frames.append(entry)
    return {
        "comment": "Generated by tests/shared/frames_vectors_gen.py; tags are "
        "HMAC-SHA256(tag_key, tagged region)[:8] with an example key.",
        "tag_key": TAG_KEY.hex(),
        "frames": frames,
        "errors": broken(),
        "fragments": fragments(),
    }


def render() -> str:
    return json.dumps(build_vectors(), indent=1) + "\n"


def _wrap(hexstr: str, width: int = 64) -> str:
    return "\n".join(hexstr[i : i + width] for i in range(0, len(hexstr), width))


def markdown() -> str:
    vec = build_vectors()
    lines = []
    for f in vec["frames"]:
        name = messages.type_name(f["type"])
        dest = f["dest"] or "(broadcast)"
        lines.append(f"#### {name} (0x{f['type']:02x})\n")
        lines.append(
            f"flags 0x{f['flags']:x}, hops {f['hop_count']}/{f['hop_limit']}, "
            f"source {f['source']}, dest {dest}, seq {f['seq']}; "
            f"body {len(f['body']) // 2} bytes, frame {len(f['hex']) // 2} bytes.\n"
        )
        lines.append("```\n" + _wrap(f["hex"]) + "\n```\n")
    frag = vec["fragments"][0]
    lines.append(f"#### FRAGMENT bodies: {frag['name']}\n")
    lines.append(
        f"A {len(frag['message']) // 2}-byte payload, msg_id {frag['msg_id']}, "
        f"max chunk {frag['max_chunk']}: {len(frag['fragments'])} fragment bodies.\n"
    )
    for i, body in enumerate(frag["fragments"]):
        lines.append(f"fragment {i} ({len(body) // 2} bytes):\n")
        lines.append("```\n" + _wrap(body) + "\n```\n")
    lines.append("#### Refused frames\n")
    lines.append("| vector | bytes | refused by |")
    lines.append("|--------|-------|------------|")
    stage = {"frame": "`frame.decode`", "body": "`decode_body`", "unknown": "`UnknownType`"}
    for e in vec["errors"]:
        lines.append(f"| {e['name']} | {len(e['hex']) // 2} | {stage[e['error']]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if "--markdown" in sys.argv:
        sys.stdout.write(markdown())
    else:
        VECTORS_PATH.write_text(render())
        print("wrote", VECTORS_PATH)
