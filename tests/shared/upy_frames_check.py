# Runs under MicroPython and CPython alike: checks tests/vectors/frames.json against
# lorawire.frame / messages / fragment byte for byte, then fuzzes the decoders with
# bit-flipped and random frames. Prints failures, then one summary line the tests parse.
import binascii
import hashlib
import json
import sys

from vectors_json import untyped

from lorawire import fragment, frame, messages
from lorawire.errors import DecodeError


def unhex(s):
    return binascii.unhexlify(s) if s else b""


def hmac_sha256(key, msg):
    # hashlib has no hmac module on MicroPython; RFC 2104 with a 64-byte block.
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


class Checker:
    def __init__(self):
        self.failures = 0

    def fail(self, *what):
        print("FAIL", *what)
        self.failures += 1

    def expect(self, ok, *what):
        if not ok:
            self.fail(*what)


def stage_of(data, max_len):
    """Which step refuses the bytes: 'frame', 'body', 'unknown', or None (accepted)."""
    try:
        f = frame.decode(data, max_len)
    except DecodeError:
        return "frame"
    try:
        messages.decode_body(f.type, f.body)
    except messages.UnknownType:
        return "unknown"
    except DecodeError:
        return "body"
    return None


def check_frames(c, vec, key):
    for v in vec["frames"]:
        name = v["name"]
        data = unhex(v["hex"])
        f = frame.decode(data)
        c.expect(f.type == v["type"], name, "type")
        c.expect(f.flags == v["flags"], name, "flags")
        c.expect(f.hop_limit == v["hop_limit"] and f.hop_count == v["hop_count"], name, "hops")
        c.expect(f.source == unhex(v["source"]), name, "source")
        c.expect(f.dest == (unhex(v["dest"]) if v["dest"] else None), name, "dest")
        c.expect(f.seq == v["seq"], name, "seq")
        c.expect(f.body == unhex(v["body"]), name, "body")
        c.expect(f.tag == unhex(v["tag"]), name, "tag")
        region = frame.tagged_region(data)
        c.expect(hmac_sha256(key, region)[:8] == f.tag, name, "tag is not the HMAC of the region")
        c.expect(frame.peek_source(data) == f.source, name, "peek_source")
        fields = untyped(v["fields"])
        c.expect(messages.decode_body(f.type, f.body) == fields, name, "decode_body")
        c.expect(messages.encode_body(f.type, fields) == f.body, name, "encode_body")

        def tag_fn(r):
            return hmac_sha256(key, r)[:8]

        again = frame.encode(f, f.body, tag_fn)
        c.expect(again == data, name, "re-encode", binascii.hexlify(again))
        if f.hop_count < f.hop_limit:
            relayed = frame.next_hop(data)
            c.expect(frame.decode(relayed).hop_count == f.hop_count + 1, name, "next_hop")
            c.expect(frame.tagged_region(relayed) == region, name, "relay changes the region")
        else:
            c.expect(frame.next_hop(data) is None, name, "next_hop past the limit")


def check_errors(c, vec):
    for v in vec["errors"]:
        got = stage_of(unhex(v["hex"]), v["max_len"])
        c.expect(got == v["error"], v["name"], "stage", got, "expected", v["error"])


def check_fragments(c, vec):
    for v in vec["fragments"]:
        name = v["name"]
        message = unhex(v["message"])
        c.expect(fragment.max_chunk(v["mtu"], v["unicast"]) == v["max_chunk"], name, "max_chunk")
        overhead = frame.OVERHEAD_UNICAST if v["unicast"] else frame.OVERHEAD_BROADCAST
        bodies = fragment.split(message, v["msg_id"], v["mtu"] - overhead)
        expected = [unhex(h) for h in v["fragments"]]
        c.expect(bodies == expected, name, "split")
        for b in bodies:
            c.expect(len(b) + overhead <= v["mtu"], name, "fragment frame over the MTU")
        r = fragment.Reassembler()
        out = None
        order = list(reversed(expected)) + expected[:1]
        for i, b in enumerate(order):
            got = r.add(b"\x01" * 8, fragment.decode(b), i)
            if got is not None:
                out = got
        c.expect(out == message, name, "reassembly")
        c.expect(r.live_slots() == 0 and r.duplicates == 1, name, "late duplicate")


def refused(c, r, source, fields, now, reason, what):
    try:
        r.add(source, fields, now)
    except fragment.ReassemblyError as exc:
        c.expect(exc.reason == reason, what, "reason", exc.reason)
        c.expect(exc.source == source, what, "source not reported")
        return
    c.fail(what, "accepted")


def check_reassembler_rules(c):
    a, b, d = b"A" * 8, b"B" * 8, b"D" * 8
    r = fragment.Reassembler(slots=2, timeout_ms=100, max_message=40, per_source=1)
    c.expect(r.add(a, [1, 0, 3, b"0123456789"], 0) is None, "first fragment")
    refused(c, r, a, [2, 0, 2, b"xx"], 1, fragment.QUOTA, "second message from one source")
    c.expect(r.add(b, [1, 1, 2, b"yy"], 2) is None, "second slot")
    refused(c, r, d, [1, 0, 2, b"zz"], 3, fragment.BUSY, "third source, slots busy")
    c.expect(r.add(a, [1, 0, 3, b"0123456789"], 4) is None and r.duplicates == 1, "duplicate")
    refused(c, r, a, [1, 1, 3, b"0123"], 5, fragment.INCONSISTENT, "chunk length changes")
    c.expect(r.live_slots() == 1, "inconsistent message abandoned")
    refused(c, r, d, [9, 0, 5, b"0123456789"], 6, fragment.OVERSIZE, "over max_message")
    refused(c, r, d, [9, 0, 9, b""], 6, fragment.MALFORMED, "malformed")
    c.expect(r.add(d, [5, 0, 2, b"hello"], 200) is None, "timed-out slot freed")
    c.expect(r.live_slots() == 1 and r.expired == 1, "expiry count")
    c.expect(r.add(d, [5, 1, 2, b"!"], 201) == b"hello!", "complete")
    c.expect(r.live_slots() == 0 and r.buffered_bytes() == 0, "slot freed on completion")


class Rng:
    # xorshift32: the same sequence on both runtimes.
    def __init__(self, seed):
        self.state = seed

    def next(self):
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def below(self, n):
        return self.next() % n

    def bytes(self, n):
        return bytes(self.next() & 0xFF for _ in range(n))


def pipeline(c, data, reasm, now):
    """Everything a node does with received bytes; only DecodeError may come out."""
    try:
        frame.peek_source(data)
        f = frame.decode(data, frame.MAX_TCP_FRAME)
        frame.tagged_region(data)
        value = messages.decode_body(f.type, f.body)
        if f.type == messages.FRAGMENT:
            whole = reasm.add(f.source, value, now)
            if whole is not None and len(whole) > 1:
                t, body = messages.parse_fragment_payload(whole)
                messages.decode_body(t, body)
    except DecodeError:
        pass
    except Exception as exc:  # noqa: BLE001 - the point is to catch anything else
        c.fail("non-DecodeError", type(exc).__name__, exc, binascii.hexlify(data))
    c.expect(reasm.live_slots() <= len(reasm.slots), "slots exceeded")
    c.expect(reasm.buffered_bytes() <= len(reasm.slots) * reasm.max_message, "buffer bound")


def fuzz(c, vec, rounds):
    rng = Rng(0x2545F491)
    reasm = fragment.Reassembler(slots=2, timeout_ms=50, max_message=300)
    seeds = [unhex(v["hex"]) for v in vec["frames"]]
    seeds += [unhex(v["hex"]) for v in vec["errors"] if v["hex"]]
    n = 0
    for i in range(rounds):
        base = seeds[rng.below(len(seeds))]
        kind = rng.below(4)
        if kind == 0:
            data = rng.bytes(rng.below(64))
        elif kind == 1:
            data = bytearray(base)
            for _ in range(1 + rng.below(3)):
                pos = rng.below(len(data))
                data[pos] ^= 1 << rng.below(8)
            data = bytes(data)
        elif kind == 2:
            data = base[: rng.below(len(base) + 1)]
        else:
            data = bytearray(base)
            data[rng.below(len(data))] = rng.below(256)
            data = bytes(data)
        pipeline(c, data, reasm, i)
        n += 1
    return n


def main(path, rounds=3000):
    with open(path) as fh:
        vec = json.load(fh)
    c = Checker()
    key = unhex(vec["tag_key"])
    check_frames(c, vec, key)
    check_errors(c, vec)
    check_fragments(c, vec)
    check_reassembler_rules(c)
    n = fuzz(c, vec, rounds)
    print(
        "frames:",
        len(vec["frames"]),
        "errors:",
        len(vec["errors"]),
        "fragments:",
        len(vec["fragments"]),
        "fuzz:",
        n,
        "failures:",
        c.failures,
    )
    return c.failures


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3000)
