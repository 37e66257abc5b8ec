"""Seed inputs per fuzz target: the test vectors and valid messages built here, so the
mutator starts from bytes that get deep into each decoder."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from lorawire import auth, fragment, frame, handshake, link, messages, record, uart
from lorawire.identity import Identity

from . import host_targets
from . import wire_targets as wt

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"


def _json(name: str) -> object:
    return json.loads((VECTORS / name).read_text())


def codec_values() -> list[bytes]:
    vectors = _json("codec.json")
    assert isinstance(vectors, list)
    return [bytes.fromhex(v["hex"]) for v in vectors]


def frames() -> list[bytes]:
    doc = _json("frames.json")
    assert isinstance(doc, dict)
    good = [bytes.fromhex(f["hex"]) for f in doc["frames"]]
    bad = [bytes.fromhex(e["hex"]) for e in doc["errors"] if e.get("hex")]
    return good + bad + [_network_frame(i) for i in range(3)]


def _network_frame(i: int) -> bytes:
    """Frames sealed with the network key the targets use (their tags check out)."""
    ident = Identity(bytes([i + 1]) * 32)
    body = messages.encode_ping(0x1234 + i)
    f = frame.Frame(messages.PING, ident.id, 100 + i, None if i != 1 else bytes(8))
    return auth.seal_frame(f, body, wt.NETWORK_KEY)


def bodies() -> list[bytes]:
    out = []
    for data in frames():
        try:
            f = frame.decode(data)
        except ValueError:
            continue
        out.append(bytes([f.type]) + f.body)
    return out


def fragment_bodies() -> list[bytes]:
    doc = _json("frames.json")
    assert isinstance(doc, dict)
    return [bytes.fromhex(h) for v in doc["fragments"] for h in v["fragments"]]


def fragment_streams() -> list[bytes]:
    """[length, source and time step, body] records, as _reassemble reads them."""
    out = []
    msg = bytes(range(200)) * 3
    for src in range(3):
        stream = b""
        for body in reversed(fragment.split(msg, src, 120)):
            stream += bytes([len(body), src | 4]) + body
        out.append(stream)
    return out


def records() -> list[bytes]:
    out = []
    for i, kind in enumerate((record.KIND_FULL, record.KIND_GATEWAY, record.KIND_MESH)):
        fields = {"kind": kind, "seq": i + 1, "endpoints": [(bytes([10, 0, 0, i]), 8333)]}
        out.append(record.encode_record(fields, bytes([i + 7]) * 32))
    return out


def handshake_for_responder() -> list[bytes]:
    ident, rec = wt._handshake_record(wt.PEER_SEED)
    side = handshake.Initiator(ident, rec, challenge=wt.CHALLENGE_I)
    return side.start_frames()


def handshake_for_initiator() -> list[bytes]:
    """[2-byte length][HELLO_R][AUTH_R], as the Initiator target reads them."""
    ident, rec = wt._handshake_record(wt.MY_SEED)
    responder = handshake.Responder(ident, rec, challenge=wt.CHALLENGE_R)
    hello, auth_r = responder.receive_frame(handshake_for_responder()[0])
    whole = len(hello).to_bytes(2, "big") + hello + auth_r
    return [whole, whole[: 2 + len(hello)]]


def link_payloads() -> list[bytes]:
    return [
        link.encode(
            link.HELLO,
            link_version=1,
            wire_version=1,
            firmware="x",
            node_id=bytes(8),
            role="bridge",
        ),
        link.encode(link.FRAME_DOWN, frame=frames()[0], priority=1, handle=7),
        link.encode(link.FRAME_UP, frame=frames()[1], rssi=-90, snr_q4=22),
        link.encode(link.BAN, node_id=bytes(range(8)), seconds=60),
        link.encode(link.CONFIG_GET, key="sf"),
        link.encode(link.CONFIG_SET, key="sf", value=9),
        link.encode(link.TX_DONE, handle=7, airtime_ms=41),
    ]


def uart_streams() -> list[bytes]:
    packets = [uart.encode_packet(p) for p in link_payloads()]
    return packets + [b"".join(packets), b"\x00\x00" + packets[1][3:] + packets[2]]


def cobs_blocks() -> list[bytes]:
    return [p[:-1] for p in uart_streams()[: len(link_payloads())]]


def ed25519_triples() -> list[bytes]:
    doc = _json("ed25519_rfc8032.json")
    assert isinstance(doc, dict)
    out = []
    for v in doc["vectors"]:
        pub, sig, msg = (bytes.fromhex(v[k]) for k in ("public_key", "signature", "message"))
        out.append(pub + sig + msg[:200])
    return out


def host_configs() -> list[bytes]:
    """What a user writes: the deploy tool's input."""
    return [json.dumps(host_targets.raw_config(r)).encode() for r in ("node", "bridge")]


def board_configs() -> list[bytes]:
    """What the deploy tool writes to a board: the firmware's input."""
    return [json.dumps(c).encode() for c in host_targets.board_configs().values()]


def ban_files() -> list[bytes]:
    """A ban file the firmware itself wrote."""
    from loranode.bans import BanTable
    from lorawire.auth import BAD_SIGNATURE

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bans.bin")
        t = BanTable(4, path)
        for i in range(3):
            t.ban(bytes([i + 1]) * 8, 1000, BAD_SIGNATURE)
        t.save(path, 1000)
        return [Path(path).read_bytes()]


def tcp_streams() -> list[bytes]:
    fs = handshake_for_responder() + frames()[:4]
    return [b"".join(len(f).to_bytes(4, "big") + f for f in fs), b"\x00\x00\x00\x00"]


def gateway_tomls() -> list[bytes]:
    return [(ROOT / "deploy" / "gateway.toml").read_bytes(), b"listen_port = 1\n[bans]\n"]


def key_files() -> list[bytes]:
    return [bytes(range(32)), bytes(31)]


SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "codec.unpackb": codec_values,
    "frame.decode": frames,
    "frame.decode_tcp": lambda: frames() + handshake_for_responder(),
    "frame.peek_source": frames,
    "frame.decode+decode_body": frames,
    "messages.decode_body": bodies,
    "messages.parse_fragment_payload": bodies,
    "fragment.decode": fragment_bodies,
    "fragment.Reassembler": fragment_streams,
    "record.decode_record": records,
    "record.verify_record": records,
    "ed25519.verify": ed25519_triples,
    "auth.open_frame": frames,
    "handshake.Responder": handshake_for_responder,
    "handshake.Initiator": handshake_for_initiator,
    "uart.cobs_decode": cobs_blocks,
    "uart.StreamDecoder": uart_streams,
    "link.decode": link_payloads,
    "firmware.start.load": board_configs,
    "deploy.fwconfig.load": host_configs,
    "firmware.Node.handle_frame": frames,
    "firmware.Bridge.feed": uart_streams,
    "firmware.BanTable.load": ban_files,
    "gateway.FrameStream.read_frame": tcp_streams,
    "gateway.config.load": gateway_tomls,
    "gateway.keys.load_identity": key_files,
}
