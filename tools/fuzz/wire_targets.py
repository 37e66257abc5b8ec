"""Fuzz targets that run on MicroPython and CPython alike: every lorawire function that
decodes untrusted bytes, and the firmware's entry points for frames, UART bytes and
files. Imported by the CPython driver (tools.fuzz) and by the unix-port worker
(tools/fuzz/upy_worker.py), so both run exactly this code on the same inputs.

`outcome(name, data)` runs one input and says what happened, as one line:
  "ok <fingerprint>"  returned; the fingerprint (16 hex digits of a SHA-256 over a
                      canonical text of the result) is the same on both runtimes
                      exactly when the results are, "ok" alone for a target whose
                      result depends on the clock;
  "E <Name>"          raised a documented error (a DecodeError subclass, ConfigError);
  "X <Name> <text>"   anything else escaped: a finding.
"""

import binascii
import hashlib

from lorawire import auth, codec, ed25519, fragment, frame, handshake, link, messages, record, uart
from lorawire.errors import DecodeError
from lorawire.identity import Identity
from lorawire.replay import ReplayTable

NETWORK_KEY = bytes(range(0x11, 0x31))
LINK_KEY = bytes(range(0x40, 0x50))  # a TCP session's receive key
MY_SEED = bytes(range(32))
PEER_SEED = bytes(range(32, 64))
CHALLENGE_I = bytes(range(100, 132))  # the initiator's, then the responder's
CHALLENGE_R = bytes(range(140, 172))


class Target:
    def __init__(self, name, fn, allowed=(DecodeError,), clocked=False, max_len=600, slow=False):
        self.name = name
        self.fn = fn
        self.allowed = allowed
        self.clocked = clocked  # the result depends on the clock: not compared
        self.max_len = max_len
        self.slow = slow  # pure Ed25519 / X25519 on the unix port: a smaller share there


TARGETS = {}  # type: dict[str, Target]
_cache = {}  # type: dict[str, object]


def target(name, allowed=(DecodeError,), clocked=False, max_len=600, slow=False):
    def register(fn):
        TARGETS[name] = Target(name, fn, allowed, clocked, max_len, slow)
        return fn

    return register


def once(key, make):
    """A fixture built on first use and kept (identities, records, nodes)."""
    if key not in _cache:
        _cache[key] = make()
    return _cache[key]


# ---- canonical results -------------------------------------------------------------


def canon(x):
    """A text of `x` that is the same on both runtimes when the values are (dicts in
    key order, bytes in hex, floats to the precision a board's float32 has)."""
    if x is None or x is True or x is False:
        return repr(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return "f%.5g" % x
    if isinstance(x, (bytes, bytearray, memoryview)):
        return "b" + binascii.hexlify(bytes(x)).decode()
    if isinstance(x, str):
        return "s" + binascii.hexlify(x.encode()).decode()
    if isinstance(x, (list, tuple)):
        return "[" + ",".join([canon(i) for i in x]) + "]"
    if isinstance(x, dict):
        items = sorted([canon(k) + ":" + canon(v) for k, v in x.items()])
        return "{" + ",".join(items) + "}"
    return "?" + type(x).__name__


def fingerprint(x):
    return binascii.hexlify(hashlib.sha256(canon(x).encode()).digest()[:8]).decode()


def outcome(name, data):
    t = TARGETS[name]
    try:
        result = t.fn(data)
    except t.allowed as e:
        return "E " + type(e).__name__
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - anything else escaping is the finding
        text = str(e).replace("\n", " ")[:120]
        return "X " + type(e).__name__ + " " + text
    return "ok" if t.clocked else "ok " + fingerprint(result)


def retag(data, key):
    """When the input's last byte is odd, the frame with a valid tag under `key` (so the
    mutated header and body get past the tag check); else the input as it is."""
    if not data or not data[-1] & 1:
        return data
    try:
        region = frame.tagged_region(data)
    except DecodeError:
        return data
    return region[:2] + bytes([data[2]]) + region[3:] + auth.tag(key, region)


def _frame_fields(f):
    return [f.type, f.source, f.seq, f.dest, f.flags, f.hop_limit, f.hop_count, f.body, f.tag]


# ---- lorawire ----------------------------------------------------------------------


@target("codec.unpackb")
def _unpackb(data):
    return codec.unpackb(data)


@target("frame.decode")
def _frame_decode(data):
    return _frame_fields(frame.decode(data))


@target("frame.decode_tcp", max_len=1200)
def _frame_decode_tcp(data):
    return _frame_fields(frame.decode(data, frame.MAX_TCP_FRAME))


@target("frame.peek_source")
def _peek(data):
    return frame.peek_source(data)


@target("frame.decode+decode_body")
def _frame_then_body(data):
    f = frame.decode(data, frame.MAX_LORA_FRAME)
    return [_frame_fields(f), messages.decode_body(f.type, f.body)]


@target("messages.decode_body")
def _decode_body(data):
    if not data:
        return None
    return messages.decode_body(data[0], data[1:])


@target("messages.parse_fragment_payload")
def _fragment_payload(data):
    return messages.parse_fragment_payload(data)


@target("fragment.decode")
def _fragment_decode(data):
    return fragment.decode(data)


@target("fragment.Reassembler", max_len=1200)
def _reassemble(data):
    """The input is a stream of [length, source and time step, fragment body...]."""
    r = fragment.Reassembler(3, 5000, 1000)
    out = []
    i = 0
    now = 0
    while i + 2 <= len(data):
        n = data[i]
        meta = data[i + 1]
        body = data[i + 2 : i + 2 + n]
        i += 2 + n
        now += (meta >> 2) * 250
        try:
            out.append(r.add(bytes([meta & 3]) * 8, fragment.decode(body), now))
        except DecodeError as e:
            out.append(type(e).__name__)
        if r.live_slots() > 3 or r.buffered_bytes() > 3 * 1000:
            raise AssertionError("reassembler over its bound")
    out.append([r.completed, r.duplicates, r.expired, r.evicted, r.rejected])
    return out


def _record_fields(rec):
    return [rec.id, rec.public, rec.kind, rec.seq, rec.encoded]


@target("record.decode_record")
def _record_decode(data):
    return _record_fields(record.decode_record(data))


@target("record.verify_record", slow=True)
def _record_verify(data):
    return _record_fields(record.verify_record(data))


@target("ed25519.verify", slow=True)
def _ed_verify(data):
    return ed25519.verify(data[:32], data[96:], data[32:96])


@target("auth.open_frame")
def _open_frame(data):
    data = retag(data, NETWORK_KEY if len(data) % 2 else LINK_KEY)
    me = once("my_id", lambda: Identity(MY_SEED).id)
    v = auth.open_frame(data, NETWORK_KEY, LINK_KEY, ReplayTable(4), me)
    return [v.kind, v.attributed, v.reason, v.value]


def _handshake_record(seed):
    ident = Identity(seed)
    fields = {"kind": record.KIND_FULL, "seq": 1, "endpoints": [(bytes([127, 0, 0, 1]), 8333)]}
    return ident, record.encode_record(fields, seed)


@target("handshake.Responder", max_len=1200, slow=True)
def _responder(data):
    ident, rec = once("hs_me", lambda: _handshake_record(MY_SEED))
    side = handshake.Responder(ident, rec, challenge=CHALLENGE_R)
    return side.receive_frame(retag(data, handshake.HANDSHAKE_KEY))


@target("handshake.Initiator", max_len=1200, slow=True)
def _initiator(data):
    """The input is a 2-byte length, the responder's HELLO frame, then its AUTH frame."""
    ident, rec = once("hs_peer", lambda: _handshake_record(PEER_SEED))
    side = handshake.Initiator(ident, rec, challenge=CHALLENGE_I)
    side.start()
    n = (data[0] << 8 | data[1]) if len(data) >= 2 else 0
    out = side.receive_frame(retag(data[2 : 2 + n], handshake.HANDSHAKE_KEY))
    rest = data[2 + n :]
    if rest:
        out = out + side.receive_frame(retag(rest, handshake.HANDSHAKE_KEY))
    return [out, side.done]


@target("uart.cobs_decode")
def _cobs(data):
    return uart.cobs_decode(data)


@target("uart.StreamDecoder", allowed=(), max_len=1200)
def _stream(data):
    d = uart.StreamDecoder()
    out = d.feed(data)
    return [out, d.packets, d.bad_crc, d.bad_cobs, d.oversize]


@target("link.decode")
def _link_decode(data):
    return list(link.decode(data))


# ---- firmware ----------------------------------------------------------------------
# Imported on first use: the CPython driver puts firmware/ on its path for these. A
# board reads a config the deploy tool validated and completed (tools/deploy/fwconfig);
# the driver writes one per role into the state directory (node.json, bridge.json).

# Set by the driver or the worker before a firmware target runs: a writable directory
# of this process alone, and (for the bridge) the path of a pseudo-terminal.
STATE = {"dir": None, "pty": None}  # type: dict[str, str | None]


def state_file(name):
    return "%s/%s" % (STATE["dir"], name)


class BoardConfigRefused(Exception):
    """loranode.start.load stopped (SystemExit) after printing one line naming the
    config; what the board does with a config.json it cannot use."""


@target("firmware.start.load", allowed=(BoardConfigRefused,), max_len=4096)
def _start_load(data):
    from loranode import start

    path = state_file("config.json")
    with open(path, "wb") as f:
        f.write(data)
    said = []
    start.print = lambda *a: said.append(" ".join([str(x) for x in a]))  # its one line
    try:
        return start.load(path)
    except SystemExit:
        if len(said) != 1 or "\n" in said[0] or not said[0].startswith("config"):
            raise AssertionError("not one line naming the config: %r" % said) from None
        raise BoardConfigRefused() from None


def _board_config(role):
    import json

    with open(state_file(role + ".json")) as f:
        cfg = json.loads(f.read())
    cfg["node"]["state_dir"] = STATE["dir"]
    cfg["node"]["stdin"] = False
    return cfg


class _NoRadio:
    speed = 1.0
    name = "fuzz"


def _node():
    from loranode.node import Node

    return Node(_board_config("node"), Identity(MY_SEED), _NoRadio())


@target("firmware.Node.handle_frame", allowed=(), clocked=True)
def _node_frame(data):
    node = once("node", _node)
    node.handle_frame(retag(data, NETWORK_KEY), -80, 5)
    while node.txq.pop_ready(None) is not None:  # what it would send: dropped
        pass


def _bridge():
    from loranode import bridge
    from loranode.uart_port import UartPort

    port = UartPort(path=STATE["pty"])
    return bridge.Bridge(_board_config("bridge"), Identity(MY_SEED), None, port)


@target("firmware.Bridge.feed", allowed=(), clocked=True, max_len=1200)
def _bridge_feed(data):
    once("bridge", _bridge).feed(data)


@target("firmware.BanTable.load")
def _bans_load(data):
    from loranode.bans import BanTable

    path = state_file("bans.bin")
    with open(path, "wb") as f:
        f.write(data)
    t = BanTable(4, path)
    return [t.load(path, 1000), len(t), t.last_load]
