"""Identity, records, tags, replay windows, handshake and the board key file, run inside
the MicroPython unix port and checked byte for byte against CPython."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_auth import RFC4231

from lorawire import auth, compose, handshake, record
from lorawire.identity import Identity
from upy import run_upy

pytestmark = pytest.mark.upy

SEED_A = bytes(range(32))
SEED_B = bytes(range(1, 33))
NET_KEY = bytes(range(100, 132))
FIELDS = {
    "kind": record.KIND_GATEWAY,
    "services": 5,
    "seq": 77,
    "endpoints": [(b"\x20\x01" + b"\x0d" * 14, 8333), (bytes([192, 0, 2, 7]), 1)],
    "mesh": (0, 9),
}

SCRIPT = r"""
import json, sys
from binascii import hexlify, unhexlify
from lorawire import hmac256, auth, record, replay, handshake, messages, frame
from lorawire.identity import Identity

with open(sys.argv[1]) as fh:
    IN = json.loads(fh.read())
out = {}
h = lambda b: hexlify(b).decode()
u = unhexlify

out["hmac"] = [h(hmac256.hmac_sha256(u(k), u(d))) for k, d in IN["hmac"]]
out["hmac_fast"] = hmac256.FAST

a = Identity(u(IN["seed_a"]))
b = Identity(u(IN["seed_b"]))
f = IN["fields"]
fields = {"kind": f["kind"], "services": f["services"], "seq": f["seq"],
          "endpoints": [(u(hh), p) for hh, p in f["endpoints"]], "mesh": tuple(f["mesh"])}
rec_bytes = record.encode_record(fields, a)
out["record"] = h(rec_bytes)
rec = record.verify_record(rec_bytes, expected_id=a.id)
out["record_id"] = h(rec.id)
cp = record.verify_record(u(IN["cpython_record"]))
out["cpython_record_seq"] = cp.seq
bad = bytearray(rec_bytes); bad[-1] ^= 1
try:
    record.verify_record(bytes(bad))
    out["tampered"] = "accepted"
except record.RecordError as e:
    out["tampered"] = e.reason
try:
    record.verify_record(rec_bytes, held_seq=77)
except record.RecordError as e:
    out["stale"] = e.reason

w = replay.ReplayWindow()
out["replay"] = [w.check_and_update(s) for s in (65535, 0, 0, 65535, 65534, 65535 - 64, 200)]
t = replay.ReplayTable(2)
for src in (b"a" * 8, b"b" * 8, b"c" * 8):
    t.check_and_update(src, 1)
out["replay_table_len"] = len(t)
out["replay_table_evictions"] = t.evictions
out["generated_id_len"] = len(Identity.generate().id)

region = u(IN["region"])
tag = auth.tag(u(IN["net_key"]), region)
out["tag"] = h(tag)
out["tag_ok"] = auth.check(u(IN["net_key"]), region, tag)
out["tag_bad"] = auth.check(u(IN["net_key"]), region + b"x", tag)
out["link_key"] = h(auth.link_key(a.x_secret(), a.id, b.public))
wire = auth.seal_frame(
    frame.Frame(messages.ANNOUNCE, a.id, 3), messages.encode_body(messages.ANNOUNCE, rec.value),
    u(IN["net_key"]))
out["announce"] = h(wire)
v = auth.open_frame(u(IN["cpython_frame"]), u(IN["net_key"]), replay=replay.ReplayTable())
out["open"] = [v.kind, v.attributed, v.value, v.accepted]
bad = bytearray(u(IN["cpython_frame"])); bad[14] ^= 0x01
v = auth.open_frame(bytes(bad), u(IN["net_key"]))
out["open_flipped"] = [v.kind, v.reason, v.blame]

ra = record.encode_record({"seq": 1}, a)
rb = record.encode_record({"seq": 2}, b)
i = handshake.Initiator(a, ra, expected_id=b.id, challenge=b"\x01" * 32)
r = handshake.Responder(b, rb, challenge=b"\x02" * 32)
hr, ar = r.receive(*i.start()[0])
i.receive(*hr)
(ai,) = i.receive(*ar)
r.receive(*ai)
out["session"] = [h(i.session.send_key), h(i.session.recv_key),
                  r.session.send_key == i.session.recv_key]
print("RESULT" + json.dumps(out))
"""


def _cpython_handshake_keys() -> list[str]:
    a, b = Identity(SEED_A), Identity(SEED_B)
    i = handshake.Initiator(
        a, record.encode_record({"seq": 1}, a), expected_id=b.id, challenge=b"\x01" * 32
    )
    r = handshake.Responder(b, record.encode_record({"seq": 2}, b), challenge=b"\x02" * 32)
    hr, ar = r.receive(*i.start()[0])
    i.receive(*hr)
    (ai,) = i.receive(*ar)
    r.receive(*ai)
    assert i.session is not None
    return [i.session.send_key.hex(), i.session.recv_key.hex()]


def test_unix_port_agrees_with_cpython(tmp_path: Path) -> None:
    a, b = Identity(SEED_A), Identity(SEED_B)
    region = b"\x10\x04\x30" + a.id + b"\x00\x01\x81\x00\x07"
    cp_record = record.encode_record({"seq": 9, "mesh": (1, 12)}, b)
    cp_frame = compose.seal_message(0x04, {0: 42}, b.id, 7, network_key=NET_KEY)
    inputs = {
        "hmac": [[k.hex(), d.hex()] for k, d, _ in RFC4231],
        "seed_a": SEED_A.hex(),
        "seed_b": SEED_B.hex(),
        "fields": {
            **FIELDS,
            "endpoints": [[host.hex(), port] for host, port in FIELDS["endpoints"]],
        },
        "cpython_record": cp_record.hex(),
        "region": region.hex(),
        "net_key": NET_KEY.hex(),
        "cpython_frame": cp_frame.hex(),
    }
    # inputs go through a file: a long argv crashes the unix port ("uncaught NLR")
    (tmp_path / "in.json").write_text(json.dumps(inputs))
    res = run_upy(SCRIPT, args=[str(tmp_path / "in.json")], heap="512K")
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT")][0]
    out = json.loads(line[len("RESULT") :])

    assert out["hmac_fast"] is False  # the pure RFC 2104 path is what ran
    for got, (_, _, expected) in zip(out["hmac"], RFC4231, strict=True):
        assert got[: len(expected)] == expected
    rec_bytes = record.encode_record(FIELDS, a)
    assert out["record"] == rec_bytes.hex()  # Ed25519 is deterministic: same bytes
    assert record.verify_record(bytes.fromhex(out["record"])).id == a.id
    assert out["record_id"] == a.id.hex()
    assert out["cpython_record_seq"] == 9
    assert out["tampered"] == "bad_signature"
    assert out["stale"] == "stale_sequence"
    assert out["replay"] == [True, True, False, False, True, False, True]
    assert out["replay_table_len"] == 2
    assert out["replay_table_evictions"] == 1
    assert out["generated_id_len"] == 8
    assert out["tag"] == auth.tag(NET_KEY, region).hex()
    assert out["tag_ok"] is True and out["tag_bad"] is False
    assert out["link_key"] == auth.link_key(b.x_secret(), b.id, a.public).hex()
    wire = compose.seal_message(
        0x01, record.decode_record(rec_bytes).value, a.id, 3, network_key=NET_KEY
    )
    assert out["announce"] == wire.hex()
    assert out["open"] == ["accept", False, {"0": 42}, True]
    assert out["open_flipped"] == ["drop_unattributed", "bad_tag", None]
    assert out["session"] == _cpython_handshake_keys() + [True]


BOARD = r"""
import sys
from loranode import identity
ident = identity.load_or_create()
print("ID", ident.hex_id())
again = identity.load_or_create()
print("SAME", again.id == ident.id)
"""

CORRUPT = r"""
from loranode import identity
try:
    identity.load_or_create()
    print("NO ERROR")
except identity.IdentityFileError as e:
    print("ERROR", e)
"""


def test_board_key_file(tmp_path: Path) -> None:
    res = run_upy(BOARD, cwd=tmp_path)
    key = (tmp_path / "key.bin").read_bytes()
    assert len(key) == 32
    assert f"ID {Identity(key).hex_id()}" in res.stdout
    assert "SAME True" in res.stdout
    assert not (tmp_path / "key.bin.tmp").exists()
    # a second boot keeps the identity
    res2 = run_upy(BOARD, cwd=tmp_path)
    assert f"ID {Identity(key).hex_id()}" in res2.stdout
    # a corrupt file is an error and is left alone
    (tmp_path / "key.bin").write_bytes(key[:20])
    res3 = run_upy(CORRUPT, cwd=tmp_path)
    assert "ERROR key file key.bin holds 20 bytes, expected 32" in res3.stdout
    assert "refusing to replace it" in res3.stdout
    assert (tmp_path / "key.bin").read_bytes() == key[:20]
    (tmp_path / "key.bin").write_bytes(key + b"\x00")
    res4 = run_upy(CORRUPT, cwd=tmp_path)
    assert "ERROR key file key.bin holds > 32 bytes" in res4.stdout


def test_board_first_boot_after_interrupted_write(tmp_path: Path) -> None:
    """A lone key.bin.tmp is what an interrupted first write leaves: never used, replaced."""
    (tmp_path / "key.bin.tmp").write_bytes(b"\x01\x02")
    res = run_upy(BOARD, cwd=tmp_path)
    assert len((tmp_path / "key.bin").read_bytes()) == 32
    assert "SAME True" in res.stdout
