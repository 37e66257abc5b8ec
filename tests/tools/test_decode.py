"""tools.decode: the frame decoder CLI.

Runs the click command in-process (CliRunner) and, for a few cases, as a real
`python -m tools.decode` subprocess. Frames come from tests/vectors/frames.json and from
lorawire's own encoders (real signed records, real tags).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import auth, compose, fragment, frame, link, messages, names, record, uart
from lorawire.codec import unpackb
from lorawire.identity import Identity
from tools.decode.__main__ import main
from tools.decode.dump import (
    Decoder,
    InputError,
    Keys,
    UartDecoder,
    parse_capture_line,
    parse_frame_text,
)

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "frames.json").read_text())
KEY_HEX = VECTORS["tag_key"]
KEY = bytes.fromhex(KEY_HEX)
OTHER_KEY_HEX = "ff" * 32
VALID = {v["name"]: v for v in VECTORS["frames"]}
ERRORS = {v["name"]: v for v in VECTORS["errors"]}
KEYS = ["--network-key", KEY_HEX, "--link-key", KEY_HEX]
# what the decoder says of the example record in the vectors (frames_vectors_gen.py)
EXAMPLE_RECORD = {
    "public_key": "0bbc346a57667c380120bd9c7fd7e51d2c5fdfea37cd2f5bf405b2c6bf6f2d78",
    "node_id": "5540ee3de4e09522",
    "kind": "gateway",
    "services": ["RELAY", "PEX"],
    "seq": 42,
    "endpoints": ["192.0.2.7:8333"],
    "mesh": {"region": "EU868", "sf": 9},
    "signature": "valid",
}


def run(*args: str, input: str | None = None):
    result = CliRunner().invoke(main, list(args), input=input)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result


def reports(*args: str, input: str | None = None) -> tuple[int, list[dict]]:
    result = run("--json", *args, input=input)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, [json.loads(line) for line in lines]


def plain(value):
    """A frames.json field value ($map, $bin) as the decoder's JSON shows it."""
    if isinstance(value, dict) and "$bin" in value:
        return value["$bin"]
    if isinstance(value, dict) and "$map" in value:
        return {k: plain(v) for k, v in value["$map"]}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# ---------------------------------------------------------------- valid vectors


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_valid_vector_decodes_with_its_fields_and_tag_ok(name):
    vec = VALID[name]
    code, (rep,) = reports(*KEYS, vec["hex"])
    assert code == 0, rep
    assert rep["ok"] and rep["error"] is None
    header = rep["header"]
    assert header["type"] == vec["type"]
    assert header["type_name"] == names.MESSAGE_TYPES[vec["type"]]
    assert header["source"] == vec["source"]
    assert header["dest"] == vec["dest"]
    assert header["seq"] == vec["seq"]
    assert header["hop_limit"] == vec["hop_limit"]
    assert header["hop_count"] == vec["hop_count"]
    assert header["flags"] & ~frame.FLAG_DEST == vec["flags"] & ~frame.FLAG_DEST
    assert rep["tag"]["value"] == vec["tag"]
    assert rep["tag"]["status"] == "ok"
    key_name = "link key" if vec["flags"] & frame.FLAG_LINK else "network key"
    assert rep["tag"]["text"] == f"tag ok ({key_name})"

    fields = plain(vec["fields"])
    body = rep["body"]
    t = vec["type"]
    if t == messages.ANNOUNCE:
        # a real record signed with the generator's example seed, announced by its owner
        assert body["record"] == dict(EXAMPLE_RECORD, matches_source=True)
        assert body["record"]["public_key"] == fields[0]
    elif t == messages.PEX_REQUEST:
        assert body == {"want": fields[0], "have": fields[1]}
    elif t == messages.PEX_RESPONSE:
        assert body["records"] == [EXAMPLE_RECORD]
        assert body["records"][0]["public_key"] == fields[0][0][0]
    elif t in (messages.PING, messages.PONG):
        assert body == {"nonce": fields[0]}
    elif t == messages.ACK:
        assert body == {"acked_seq": fields[0]}
    elif t in (messages.INV, messages.GETDATA):
        assert body["inventory"] == [
            {"kind": ("tx", "block")[kind], "hash": h} for kind, h in fields[0]
        ]
    elif t in (messages.TX, messages.BLOCK):
        assert body == {"raw": fields[0]}
    elif t == messages.REJECT:
        assert body["kind"] == ("tx", "block")[fields[0]]
        assert body["hash"] == fields[1]
        assert body["code"] == f"0x{fields[2]:02x} duplicate"
        assert body["text"] == fields[3]
    elif t == messages.FRAGMENT:
        msg_id, index, count, chunk = fields
        assert body["msg_id"] == msg_id and body["index"] == index and body["count"] == count
        assert body["chunk_length"] == len(chunk) // 2 and body["chunk"] == chunk
    elif t == messages.HELLO:
        assert body == {"record": fields[0], "challenge": fields[1]}
    elif t == messages.AUTH:
        assert body == {"signature": fields[0]}
    else:  # pragma: no cover - a new vector type needs a case here
        raise AssertionError(f"no check for type 0x{t:02x}")


@pytest.mark.parametrize("name", ["ping", "pex_request", "reject", "fragment"])
def test_text_dump_shows_header_body_and_tag(name):
    vec = VALID[name]
    result = run(*KEYS, vec["hex"])
    assert result.exit_code == 0
    out = result.output
    assert (
        f"frame 1 (arg 1): {len(vec['hex']) // 2} bytes, {names.MESSAGE_TYPES[vec['type']]}" in out
    )
    assert "type:     0x{:02x} {}".format(vec["type"], names.MESSAGE_TYPES[vec["type"]]) in out
    assert "source:   {}".format(vec["source"]) in out
    assert f"seq:      {vec['seq']}" in out
    assert "tag:      {} tag ok".format(vec["tag"]) in out
    if name == "ping":
        assert "nonce: 3735928559" in out and "dest:     broadcast" in out
    if name == "pex_request":
        assert "flags:    0x3 DEST|LINK" in out and "have: [c1c2c3c4, d1d2d3d4]" in out
    if name == "reject":
        assert "code: 0x12 duplicate" in out and "text: already have it" in out
    if name == "fragment":
        assert "msg_id: 7" in out and "index: 0" in out and "count: 2" in out
        assert "chunk_length: 16" in out


def test_base64_input_decodes_like_hex_and_no_key_is_not_checked():
    vec = VALID["inv"]
    raw = bytes.fromhex(vec["hex"])
    _, hex_reports = reports(vec["hex"])
    for text in (
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "b64:" + base64.b64encode(raw).decode(),
        "0x" + vec["hex"].upper(),
    ):
        code, (rep,) = reports(text)
        assert code == 0
        assert rep["body"] == hex_reports[0]["body"]
        assert rep["tag"]["text"] == "not checked (no key)"


def test_link_frame_with_only_the_network_key_is_not_checked():
    code, (rep,) = reports("--network-key", KEY_HEX, VALID["ack"]["hex"])
    assert code == 0
    assert rep["tag"]["status"] == "unchecked"
    assert "give --link-key" in rep["tag"]["text"]


def test_bridged_flag_is_spelled_out():
    result = run(VALID["block"]["hex"])
    assert "flags:    0x4 BRIDGED" in result.output


# ---------------------------------------------------------------- signed records


def _announce(seed: bytes, **overrides) -> tuple[bytes, Identity]:
    ident = Identity(seed)
    fields = {
        "seq": 7,
        "kind": record.KIND_GATEWAY,
        "services": record.SVC_RELAY | record.SVC_BRIDGE,
        "endpoints": [
            (bytes([192, 0, 2, 1]), 4000),
            (bytes.fromhex("20010db8" + "00" * 11 + "01"), 4001),
        ],
        "mesh": (0, 9),
    }
    fields.update(overrides)
    rec = record.encode_record(fields, ident)
    return rec, ident


def test_signed_record_fields_and_signature_valid():
    rec, ident = _announce(bytes(range(32)))
    data = compose.seal_message(messages.ANNOUNCE, unpackb(rec), ident.id, 5, network_key=KEY)
    code, (rep,) = reports("--network-key", KEY_HEX, data.hex())
    assert code == 0, rep["error"]
    r = rep["body"]["record"]
    assert r["public_key"] == ident.public.hex()
    assert r["node_id"] == ident.id.hex() == rep["header"]["source"]
    assert r["kind"] == "gateway"
    assert r["services"] == ["RELAY", "BRIDGE"]
    assert r["seq"] == 7
    assert r["endpoints"] == ["192.0.2.1:4000", "[2001:db8::1]:4001"]
    assert r["mesh"] == {"region": "EU868", "sf": 9}
    assert r["signature"] == "valid"
    assert r["matches_source"] is True
    text = run("--network-key", KEY_HEX, data.hex()).output
    assert "signature: valid" in text and "endpoints: [192.0.2.1:4000, [2001:db8::1]:4001]" in text


def test_record_with_bad_signature_is_invalid_and_fails_the_frame():
    rec, ident = _announce(bytes(range(1, 33)))
    value = unpackb(rec)
    sig = bytearray(value[record.K_SIGNATURE])
    sig[10] ^= 1
    value[record.K_SIGNATURE] = bytes(sig)
    data = compose.seal_message(messages.ANNOUNCE, value, ident.id, 5, network_key=KEY)
    # Also inside a PEX_RESPONSE, alongside a good record.
    good, _ = _announce(bytes(range(2, 34)))
    pex = compose.seal_message(
        messages.PEX_RESPONSE,
        {0: [unpackb(good), value]},
        ident.id,
        6,
        network_key=KEY,
        max_len=frame.MAX_TCP_FRAME,
    )
    code, reps = reports("--max-len", "65535", "--network-key", KEY_HEX, data.hex(), pex.hex())
    assert code == 1
    assert reps[0]["body"]["record"]["signature"] == "INVALID"
    assert reps[0]["error"] == f"peer record of {ident.id.hex()}: signature INVALID"
    assert [r["signature"] for r in reps[1]["body"]["records"]] == ["valid", "INVALID"]
    assert "signature INVALID" in reps[1]["error"]


# ---------------------------------------------------------------- broken frames


def _bad_tag_frame() -> str:
    data = bytearray(bytes.fromhex(VALID["ping"]["hex"]))
    data[-1] ^= 0x01
    return data.hex()


BROKEN = [
    # (kind, extra args, frame text, expected message)
    ("empty input", [], "", "empty input: no frame text"),
    ("not hex or base64", [], "hello, world!", "not hex or base64: 'hello,world!'"),
    ("odd hex forced", [], "hex:abc", "odd number of hex digits (3)"),
    ("truncated header", [], ERRORS["truncated header"]["hex"], "truncated header: 7 bytes"),
    ("too short", [], ERRORS["header and tag without body"]["hex"], "frame too short: 21 bytes"),
    ("bad version", [], ERRORS["version 2"]["hex"], "bad version: 2 (first byte 0x20)"),
    ("reserved flag", [], ERRORS["reserved flag set"]["hex"], "reserved flag 0x8 is set"),
    (
        "hop count above limit",
        [],
        ERRORS["hop_count above hop_limit"]["hex"],
        "hop count 4 is above the hop limit 3",
    ),
    (
        "dest without room",
        [],
        ERRORS["DEST flag but too short for destination"]["hex"],
        "DEST flag set but the frame (24 bytes) is too short",
    ),
    (
        "oversize",
        [],
        ERRORS["oversize on LoRa (256 bytes)"]["hex"],
        "frame too long: 256 bytes, more than --max-len 255 (the LoRa limit",
    ),
    ("trailing body bytes", [], ERRORS["body trailing byte"]["hex"], "trailing bytes"),
    (
        "non-canonical body",
        [],
        ERRORS["body non-canonical uint8"]["hex"],
        "body of PING (0x04) is not canonical msgpack: non-canonical uint",
    ),
    (
        "keys out of order",
        [],
        ERRORS["body keys out of order"]["hex"],
        "map keys out of canonical order",
    ),
    ("not msgpack", [], ERRORS["body not msgpack (0xc1)"]["hex"], "type 0xc1 is outside"),
    (
        "missing key",
        [],
        ERRORS["ping missing key"]["hex"],
        "exactly the keys (0,); it has keys none",
    ),
    ("extra key", [], ERRORS["ping extra key"]["hex"], "it has keys 0, 1"),
    (
        "field out of range",
        [],
        ERRORS["pex_request want 17"]["hex"],
        "want (key 0) must be an int in 1..16",
    ),
    (
        "fragment index",
        [],
        ERRORS["fragment index = count"]["hex"],
        "fragment index must be an int below count",
    ),
    ("unknown type", [], ERRORS["unknown type 0x7e"]["hex"], "unknown message type 0x7e"),
    (
        "bad tag with key",
        ["--network-key", KEY_HEX],
        _bad_tag_frame(),
        f"tag BAD: {_bad_tag_frame()[-16:]} does not match the network key",
    ),
]


@pytest.mark.parametrize("kind,args,text,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_frame_is_explained_in_one_line(kind, args, text, expected):
    result = run(*args, text)
    assert result.exit_code == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("frame 1: error: ")]
    assert len(errors) == 1, result.stdout
    assert expected in errors[0], errors[0]


def test_broken_frame_messages_are_distinct():
    messages_seen = set()
    for _, args, text, _ in BROKEN:
        _, (rep,) = reports(*args, text)
        assert rep["ok"] is False
        messages_seen.add(rep["error"])
    assert len(messages_seen) == len(BROKEN)


def test_every_error_vector_fails_readably():
    for vec in VECTORS["errors"]:
        code, (rep,) = reports("--max-len", str(vec["max_len"]), "hex:" + vec["hex"])
        assert code == 1, vec["name"]
        assert rep["error"] and "internal" not in rep["error"], (vec["name"], rep["error"])
        if vec["error"] != "frame":  # header decoded: shown with the error
            assert rep["header"]["type"] == bytes.fromhex(vec["hex"])[1]


def test_header_still_shown_when_body_is_broken():
    result = run(ERRORS["unknown type 0x7e"]["hex"])
    assert "type:     0x7e unknown (0x7e)" in result.output
    assert "frame 1: error: unknown message type 0x7e" in result.output


def test_decoder_carries_on_after_a_broken_frame():
    code, reps = reports(VALID["ping"]["hex"], "zz", VALID["pong"]["hex"])
    assert code == 1
    assert [r["ok"] for r in reps] == [True, False, True]
    assert [r["frame"] for r in reps] == [1, 2, 3]


def test_max_len_tcp_accepts_the_big_inventory_body_check():
    vec = ERRORS["inv 33 entries (TCP)"]
    _, (lora,) = reports(vec["hex"])
    _, (tcp,) = reports("--max-len", "65535", vec["hex"])
    assert lora["error"].startswith("frame too long: 1214 bytes")
    assert "inventory (key 0) must be a list of 1..32 items" in tcp["error"]


# ---------------------------------------------------------------- capture files


def test_capture_file_with_mixed_lines(tmp_path):
    ping = VALID["ping"]["hex"]
    pong_b64 = base64.b64encode(bytes.fromhex(VALID["pong"]["hex"])).decode()
    capture = tmp_path / "gateway.log"
    capture.write_text(
        "# gateway capture\n"
        "\n"
        "2026-11-25T16:00:00Z up {}\n"
        "2026-11-25T16:00:01.250+01:00 down {}\n"
        "   # indented comment\n"
        "1764086400.5 rx {}\n"
        "some words here {}\n"
        "{}\n"
        "-> {}\n".format(ping, pong_b64, ERRORS["version 0"]["hex"], ping, _bad_tag_frame(), ping)
    )
    code, reps = reports("--network-key", KEY_HEX, "--file", str(capture))
    assert code == 1
    assert [r["origin"] for r in reps] == [f"{capture}:{n}" for n in (3, 4, 6, 7, 8, 9)]
    assert [r["ok"] for r in reps] == [True, True, False, False, False, True]
    assert reps[0]["timestamp"] == "2026-11-25T16:00:00Z" and reps[0]["direction"] == "up"
    assert reps[1]["direction"] == "down" and reps[1]["header"]["type_name"] == "PONG"
    assert reps[2]["timestamp"] == "1764086400.5" and reps[2]["error"].startswith("bad version")
    assert reps[3]["error"].startswith("cannot read line: expected [TIMESTAMP] [DIRECTION] FRAME")
    assert reps[4]["error"].startswith("tag BAD")
    assert reps[5]["direction"] == "->"
    text = run("--network-key", KEY_HEX, "--file", str(capture)).output
    assert f"frame 1 ({capture}:3, 2026-11-25T16:00:00Z, up): 28 bytes, PING" in text


def test_stdin_lines_and_arguments_mix():
    stdin = "2026-11-25T16:00:00Z up {}\n\n# c\n{}\n".format(
        VALID["ack"]["hex"], VALID["tx"]["hex"]
    )
    code, reps = reports(VALID["ping"]["hex"], "-", input=stdin)
    assert code == 0
    assert [r["header"]["type_name"] for r in reps] == ["PING", "ACK", "TX"]
    assert [r["origin"] for r in reps] == ["arg 1", "stdin:1", "stdin:4"]


def test_capture_line_parser():
    assert parse_capture_line("   ") is None
    assert parse_capture_line("# x") is None
    line = parse_capture_line("2026-11-25T16:00:00Z up 0a1b")
    assert (line.timestamp, line.direction, line.text) == ("2026-11-25T16:00:00Z", "up", "0a1b")
    line = parse_capture_line("tx 0a1b")
    assert (line.timestamp, line.direction) == (None, "tx")
    with pytest.raises(InputError):
        parse_capture_line("up 2026-11-25T16:00:00Z 0a1b")  # order is timestamp, direction


# ---------------------------------------------------------------- fragments and UART


def test_fragments_are_reassembled_and_the_inner_message_decoded():
    raw = bytes(range(256)) + bytes(range(144))
    payload = messages.fragment_payload(messages.TX, compose.encode_tx(raw))
    bodies = fragment.split(payload, 513, frame.MAX_LORA_FRAME - frame.OVERHEAD_BROADCAST)
    src = bytes.fromhex("a1a2a3a4a5a6a7a8")
    frames = []
    for seq, body in enumerate(bodies):
        f = frame.Frame(messages.FRAGMENT, src, seq)
        frames.append(auth.seal_frame(f, body, network_key=KEY).hex())
    assert len(frames) == 2
    code, reps = reports("--network-key", KEY_HEX, frames[1], frames[0])  # out of order
    assert code == 0
    assert "reassembled" not in reps[0]
    inner = reps[1]["reassembled"]
    assert inner["type_name"] == "TX" and inner["msg_id"] == 513
    assert inner["body"] == {"raw": raw.hex()}
    text = run(frames[0], frames[1]).output
    assert f"reassembled message (msg id 513, {len(payload)} bytes, TX)" in text


def test_uart_stream_packets_are_decoded():
    ping = bytes.fromhex(VALID["ping"]["hex"])
    stream = uart.encode_packet(link.encode(link.FRAME_UP, frame=ping, rssi=-97, snr_q4=-22))
    stream += uart.encode_packet(link.encode(link.TX_DONE, handle=3, airtime_ms=41))
    corrupt = bytearray(uart.encode_packet(link.encode(link.UNBAN, node_id=b"\x01" * 8)))
    corrupt[3] ^= 0x40
    half = len(stream) // 2
    code, reps = reports(
        "--uart", "--network-key", KEY_HEX, stream[:half].hex(), stream[half:].hex(), corrupt.hex()
    )
    assert code == 1
    assert [r.get("link_type_name") for r in reps] == ["FRAME_UP", "TX_DONE", None]
    up = reps[0]["fields"]
    assert up["rssi"] == -97 and up["snr_q4"] == -22
    assert up["frame"]["header"]["type_name"] == "PING"
    assert up["frame"]["tag"]["text"] == "tag ok (network key)"
    assert reps[1]["fields"] == {"handle": 3, "airtime_ms": 41}
    assert "CRC-16 mismatch" in reps[2]["error"] or "COBS" in reps[2]["error"]
    text = run("--uart", stream.hex()).output
    assert "uart packet 1 (arg 1): link FRAME_UP (0x02)" in text
    assert "nonce: 3735928559" in text


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--network-key", "xyz", "00"], "--network-key must be hex digits"),
        (["--network-key", "0011", "00"], "--network-key is 2 bytes; keys are at least 16 bytes"),
        (["--link-key", "abc", "00"], "--link-key must be hex digits"),
        (["--file", "/nonexistent/capture.txt"], "cannot read --file /nonexistent/capture.txt"),
        (["--network-key-file", "/nonexistent/k", "00"], "cannot read --network-key-file"),
        (["--network-key", KEY_HEX, "--network-key-file", "k", "00"], "not both"),
        ([], "no input"),
        (["--max-len", "5", "00"], "Invalid value for '--max-len'"),
        (["--frobnicate"], "No such option"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args, expected):
    result = run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("decode: error: ")
    assert expected in lines[0]


def test_network_key_file(tmp_path):
    key_file = tmp_path / "network.key"
    key_file.write_text(KEY_HEX + "\n")
    code, (rep,) = reports("--network-key-file", str(key_file), VALID["ping"]["hex"])
    assert code == 0 and rep["tag"]["text"] == "tag ok (network key)"
    key_file.write_text("not a key\n")
    result = run("--network-key-file", str(key_file), VALID["ping"]["hex"])
    assert result.exit_code == 2 and "must be hex digits" in result.stderr


# ---------------------------------------------------------------- properties


@settings(max_examples=300)
@given(st.binary(max_size=300), st.sampled_from([255, 65535]))
def test_any_bytes_give_a_report_never_a_crash(data, max_len):
    dec = Decoder(keys=Keys(network=KEY, link=KEY), max_len=max_len)
    rep = dec.decode_bytes(data)
    json.dumps(rep)
    assert rep["ok"] is (rep["error"] is None)
    if rep["error"]:
        assert "internal" not in rep["error"]


@settings(max_examples=200)
@given(st.sampled_from(sorted(VALID)), st.integers(0, 10_000), st.integers(0, 7))
def test_bit_flips_in_valid_frames_are_explained(name, pos, bit):
    data = bytearray(bytes.fromhex(VALID[name]["hex"]))
    data[pos % len(data)] ^= 1 << bit
    rep = Decoder(keys=Keys(network=KEY, link=KEY)).decode_bytes(bytes(data))
    # Every bit is covered by the tag or the header checks, except hop_count (by design).
    if pos % len(data) != 2:
        assert rep["ok"] is False
    if rep["error"]:
        assert "internal" not in rep["error"]


@given(st.text(max_size=80))
def test_any_text_is_read_or_refused_with_input_error(text):
    try:
        parse_frame_text(text)
    except InputError as exc:
        assert str(exc)
    try:
        parse_capture_line(text)
    except InputError as exc:
        assert str(exc)


# ---------------------------------------------------------------- real subprocess


def _python_m(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.decode", *args],
        cwd=ROOT,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_subprocess_decodes_vectors_and_reports_errors(tmp_path):
    capture = tmp_path / "cap.txt"
    capture.write_text(
        "2026-11-25T16:00:00Z up {}\n2026-11-25T16:00:01Z up {}\n".format(
            VALID["getdata"]["hex"], ERRORS["reserved flag set"]["hex"]
        )
    )
    proc = _python_m(*KEYS, VALID["reject"]["hex"], "--file", str(capture))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    assert "frame 1 (arg 1): 86 bytes, REJECT" in proc.stdout
    assert "tag ok (network key)" in proc.stdout
    assert "GETDATA" in proc.stdout
    assert "frame 3: error: reserved flag 0x8 is set" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr

    ok = _python_m("--json", "-", input=VALID["hello"]["hex"] + "\n")
    assert ok.returncode == 0
    rep = json.loads(ok.stdout)
    assert rep["header"]["type_name"] == "HELLO"
    assert rep["tag"]["text"] == "not checked (no key)"

    bad = _python_m("--network-key", "0xzz", VALID["ping"]["hex"])
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=80), max_size=6))
def test_any_uart_stream_gives_reports_never_a_crash(chunks):
    dec = UartDecoder(Decoder(keys=Keys(network=KEY)))
    for chunk in chunks:
        # Raw garbage, and garbage payloads in valid COBS + CRC framing (reach link.decode).
        stream = chunk + b"\x00" + uart.encode_packet(chunk)
        stream += uart.encode_packet(bytes([link.FRAME_UP]) + chunk)
        for rep in dec.feed(stream):
            json.dumps(rep)
            assert rep["ok"] is (rep["error"] is None)
