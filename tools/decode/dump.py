"""Decode Lorachain frames into a report (a JSON-ready dict) and render it as text.

Everything here is a pure function of the bytes and the keys given; the click CLI in
`tools.decode.__main__` only reads inputs and prints. Reports never raise on bad input:
a frame that cannot be decoded gives a report with `ok: False` and a one-line `error`.

Input text (one frame): hex (an optional `0x` prefix, whitespace ignored) or base64
(standard or URL-safe alphabet, padding optional). A string that is valid hex is read as
hex; prefix `hex:` or `b64:` to force one reading.

Capture line (as the gateway logs frames): `[TIMESTAMP] [DIRECTION] FRAME`, fields
separated by whitespace, where

* TIMESTAMP is ISO 8601 (`2026-11-25T16:00:00Z`, fractions and offsets allowed) or Unix
  seconds (`1764086400.25`);
* DIRECTION is one word of letters (`up`, `down`, `rx`, `tx`, `in`, `out`, ...), or one
  of `<`, `>`, `<-`, `->`;
* FRAME is the frame text as above (no spaces inside).

Blank lines and lines starting with `#` are skipped.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from lorawire import auth, fragment, frame, link, messages, record, uart
from lorawire._purecodec import unpackb as pure_unpackb
from lorawire.codec import unpackb
from lorawire.errors import DecodeError
from lorawire.handshake import HANDSHAKE_KEY
from lorawire.regions import REGION_NAMES

Report = dict[str, Any]

FLAG_NAMES = ((frame.FLAG_DEST, "DEST"), (frame.FLAG_LINK, "LINK"), (frame.FLAG_BRIDGED, "BRIDGED"))

# Body field names per message type (docs/PROTOCOL.md §5, docs/AUTH.md for HELLO/AUTH).
FIELD_NAMES: dict[int, dict[int, str]] = {
    messages.PEX_REQUEST: {0: "want", 1: "have"},
    messages.PEX_RESPONSE: {0: "records"},
    messages.PING: {0: "nonce"},
    messages.PONG: {0: "nonce"},
    messages.ACK: {0: "acked_seq"},
    messages.INV: {0: "inventory"},
    messages.GETDATA: {0: "inventory"},
    messages.TX: {0: "raw"},
    messages.BLOCK: {0: "raw"},
    messages.REJECT: {0: "kind", 1: "hash", 2: "code", 3: "text"},
    messages.HELLO: {0: "record", 1: "challenge"},
    messages.AUTH: {0: "signature"},
}
INV_KINDS = {messages.KIND_TX: "tx", messages.KIND_BLOCK: "block"}
REJECT_CODES = {
    messages.REJECT_MALFORMED: "malformed",
    messages.REJECT_INVALID: "invalid",
    messages.REJECT_OBSOLETE: "obsolete",
    messages.REJECT_DUPLICATE: "duplicate",
    messages.REJECT_NONSTANDARD: "nonstandard",
    messages.REJECT_DUST: "dust",
    messages.REJECT_INSUFFICIENT_FEE: "insufficient fee",
    messages.REJECT_CHECKPOINT: "checkpoint",
}
SERVICE_NAMES = (
    (record.SVC_RELAY, "RELAY"),
    (record.SVC_PEX, "PEX"),
    (record.SVC_STORE, "STORE"),
    (record.SVC_BRIDGE, "BRIDGE"),
)

TAG_OK = "ok"
TAG_BAD = "bad"
TAG_UNCHECKED = "unchecked"

_HEX_RE = re.compile(r"^[0-9a-fA-F]*$")
_B64_RE = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")
_TS_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T_ ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$|^\d+(\.\d+)?$"
)
_DIR_RE = re.compile(r"^([A-Za-z][A-Za-z_-]{0,15}|<|>|<-|->)$")


class InputError(ValueError):
    """Text that is not a frame (not hex/base64, empty, unparsable capture line)."""


@dataclass
class Keys:
    """Keys to check tags with; any may be None."""

    network: bytes | None = None
    link: bytes | None = None


@dataclass
class CaptureLine:
    """One frame line of a capture: the frame text and the optional prefix fields."""

    text: str
    timestamp: str | None = None
    direction: str | None = None


@dataclass
class Decoder:
    """Decodes a sequence of frames, numbering them and reassembling FRAGMENTs.

    Fragments of one (source, msg_id) seen in the same run are put back together; the
    completed message is decoded and reported with the frame that completed it.
    """

    keys: Keys = field(default_factory=Keys)
    max_len: int = frame.MAX_LORA_FRAME
    count: int = 0
    failed: int = 0
    reassembler: fragment.Reassembler = field(
        default_factory=lambda: fragment.Reassembler(
            slots=16, timeout_ms=1 << 30, max_message=1 << 16, per_source=16
        )
    )

    def decode_text(self, text: str, origin: str | None = None, **extra: Any) -> Report:
        """Report for one frame given as text (hex or base64)."""
        try:
            data = parse_frame_text(text)
        except InputError as exc:
            return self._finish(_new_report(self.count + 1, origin, extra), str(exc))
        return self.decode_bytes(data, origin, **extra)

    def decode_bytes(self, data: bytes, origin: str | None = None, **extra: Any) -> Report:
        """Report for one frame given as bytes."""
        report = _new_report(self.count + 1, origin, extra)
        try:
            error = self._fill(report, data)
        except Exception as exc:  # the decoder must never die on input; say what broke
            error = f"internal decoder error: {type(exc).__name__}: {exc}"
        return self._finish(report, error)

    def error_report(self, reason: str, origin: str | None = None) -> Report:
        """A failed report for input that never became a frame (e.g. a bad capture line)."""
        return self._finish(_new_report(self.count + 1, origin, {}), reason)

    def _finish(self, report: Report, error: str | None) -> Report:
        self.count += 1
        report["ok"] = error is None
        report["error"] = error
        if error is not None:
            self.failed += 1
        return report

    def _fill(self, report: Report, data: bytes) -> str | None:
        report["length"] = len(data)
        report["hex"] = data.hex()
        if not data:
            return "empty input: no frame bytes"
        try:
            f = frame.decode(data, self.max_len)
        except DecodeError as exc:
            return _header_error(str(exc), data, self.max_len)
        report["header"] = _header(f)
        report["tag"] = _tag(f, data, self.keys)
        try:
            value = unpackb(f.body)
        except DecodeError as exc:
            if not messages.is_known(f.type):
                return _unknown(f.type)
            reason = _codec_reason(f.body, exc)
            return f"body of {_type_label(f.type)} is not canonical msgpack: {reason}"
        try:
            messages.check_fields(f.type, value)
        except messages.UnknownType:
            report["body"] = _plain(value)
            return _unknown(f.type)
        except DecodeError as exc:
            report["body"] = _plain(value)
            reason = _strip_type(f.type, str(exc))
            if isinstance(value, dict) and "exactly the keys" in reason:
                keys = ", ".join(repr(k) for k in value) or "none"
                reason += f"; it has keys {keys}"
            return f"body of {_type_label(f.type)}: {reason}"
        report["body"] = _body(f.type, value)
        rec = report["body"].get("record") if f.type == messages.ANNOUNCE else None
        if isinstance(rec, dict) and "node_id" in rec:
            # Relays keep the source, so an ANNOUNCE's source is the record's owner.
            rec["matches_source"] = rec["node_id"] == report["header"]["source"]
        problems = []
        if report["tag"]["status"] == TAG_BAD:
            problems.append(
                "tag BAD: {} does not match the {}".format(f.tag.hex(), report["tag"]["key"])
            )
        problems.extend(_record_problems(report["body"]))
        if f.type == messages.FRAGMENT:
            inner = self._reassemble(f, value)
            if inner is not None:
                report["reassembled"] = inner
                if inner.get("error"):
                    problems.append("reassembled message: {}".format(inner["error"]))
                problems.extend(_record_problems(inner.get("body")))
        return "; ".join(problems) if problems else None

    def _reassemble(self, f: frame.Frame, value: list[Any]) -> Report | None:
        try:
            message = self.reassembler.add(bytes(f.source), value, self.count)
        except fragment.ReassemblyError as exc:
            return {"error": f"fragment not reassembled: {exc}"}
        if message is None:
            return None
        out: Report = {"length": len(message), "msg_id": value[0]}
        try:
            msg_type, body = messages.parse_fragment_payload(message)
            out["type"] = msg_type
            out["type_name"] = messages.type_name(msg_type)
            out["body"] = _body(msg_type, messages.decode_body(msg_type, body))
        except DecodeError as exc:
            out["error"] = str(exc)
        return out


LINK_NAMES = {
    link.HELLO: "HELLO",
    link.FRAME_UP: "FRAME_UP",
    link.FRAME_DOWN: "FRAME_DOWN",
    link.TX_DONE: "TX_DONE",
    link.TX_DEFERRED: "TX_DEFERRED",
    link.RADIO_STATS: "RADIO_STATS",
    link.CONFIG_GET: "CONFIG_GET",
    link.CONFIG_VALUE: "CONFIG_VALUE",
    link.CONFIG_SET: "CONFIG_SET",
    link.BAN: "BAN",
    link.UNBAN: "UNBAN",
    link.ERROR: "ERROR",
}


@dataclass
class UartDecoder:
    """Decodes a UART byte stream (COBS + CRC-16 packets, lorawire.uart) into link messages.

    Bytes from successive calls form one stream, so a packet may span input lines. A
    frame carried by FRAME_UP / FRAME_DOWN is decoded with `frames` (a Decoder).
    """

    frames: Decoder
    stream: uart.StreamDecoder = field(default_factory=uart.StreamDecoder)
    count: int = 0
    failed: int = 0

    def feed_text(self, text: str, origin: str | None = None) -> list[Report]:
        try:
            data = parse_frame_text(text)
        except InputError as exc:
            return [self._report(origin, error=str(exc))]
        return self.feed(data, origin)

    def feed(self, data: bytes, origin: str | None = None) -> list[Report]:
        before = (self.stream.bad_crc, self.stream.bad_cobs, self.stream.oversize)
        payloads = self.stream.feed(data)
        out = []
        bad_crc, bad_cobs, oversize = (
            self.stream.bad_crc - before[0],
            self.stream.bad_cobs - before[1],
            self.stream.oversize - before[2],
        )
        for n, what in (
            (bad_crc, "CRC-16 mismatch (packet corrupted)"),
            (bad_cobs, "broken COBS encoding"),
            (oversize, f"packet longer than {uart.MAX_PACKET} bytes, dropped"),
        ):
            for _ in range(n):
                out.append(self._report(origin, error="UART packet dropped: " + what))
        for payload in payloads:
            out.append(self._packet(payload, origin))
        return out

    def error_report(self, reason: str, origin: str | None = None) -> Report:
        """A failed report for input that never became stream bytes (a bad capture line)."""
        return self._report(origin, error=reason)

    def _report(self, origin: str | None, error: str | None = None) -> Report:
        self.count += 1
        report: Report = {"packet": self.count, "ok": error is None, "error": error}
        if origin is not None:
            report["origin"] = origin
        if error is not None:
            self.failed += 1
        return report

    def _packet(self, payload: bytes, origin: str | None) -> Report:
        try:
            msg_type, fields = link.decode(payload)
        except DecodeError as exc:
            return self._report(origin, error=f"link message: {exc}")
        report = self._report(origin)
        report["link_type"] = msg_type
        report["link_type_name"] = LINK_NAMES.get(msg_type, f"0x{msg_type:02x}")
        plain = {}
        for name, value in fields.items():
            if name == "frame" and isinstance(value, bytes):
                inner = self.frames.decode_bytes(value, origin)
                plain[name] = inner
                if not inner["ok"]:
                    report["ok"] = False
                    report["error"] = "carried frame: {}".format(inner["error"])
                    self.failed += 1
            else:
                plain[name] = _plain(value)
        report["fields"] = plain
        return report


def render_uart(report: Report) -> str:
    """Text dump of one UART link packet report."""
    title = f"uart packet {report['packet']}"
    if report.get("origin"):
        title += " ({})".format(report["origin"])
    lines = []
    if "link_type_name" in report:
        lines.append(
            "{}: link {} (0x{:02x})".format(title, report["link_type_name"], report["link_type"])
        )
        for name, value in report["fields"].items():
            if name == "frame" and isinstance(value, dict):
                inner = render_text(value).splitlines()
                lines.append("  frame:")
                lines.extend("    " + line for line in inner)
            else:
                _render_value(name, value, "  ", lines)
    if report["error"] is not None:
        lines.append(f"uart packet {report['packet']}: error: {report['error']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- input text


def parse_frame_text(text: str) -> bytes:
    """Frame bytes from hex or base64 text (see the module docstring); InputError if neither."""
    s = "".join(text.split())
    if not s:
        raise InputError("empty input: no frame text")
    forced = None
    for prefix in ("hex:", "b64:", "base64:"):
        if s.lower().startswith(prefix):
            forced = "hex" if prefix == "hex:" else "b64"
            s = s[len(prefix) :]
            break
    if forced != "b64" and s[:2].lower() == "0x":
        s = s[2:]
        forced = "hex"
    if forced != "b64" and _HEX_RE.match(s) and len(s) % 2 == 0:
        return bytes.fromhex(s)
    if forced == "hex":
        if not _HEX_RE.match(s):
            raise InputError(f"not hex: {_quote(s)}")
        raise InputError(f"odd number of hex digits ({len(s)})")
    if _B64_RE.match(s):
        padded = s.rstrip("=")
        padded += "=" * (-len(padded) % 4)
        altchars = b"-_" if ("-" in s or "_" in s) else None
        try:
            return base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            pass
    if _HEX_RE.match(s):
        raise InputError(f"odd number of hex digits ({len(s)}) and not base64 either")
    raise InputError(f"not hex or base64: {_quote(s)}")


def parse_capture_line(line: str) -> CaptureLine | None:
    """The frame of one capture line, or None for a blank or `#` comment line.

    InputError when the line does not have the `[TIMESTAMP] [DIRECTION] FRAME` form.
    """
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    tokens = stripped.split()
    text = tokens[-1]
    prefix = tokens[:-1]
    timestamp = direction = None
    if prefix and _TS_RE.match(prefix[0]):
        timestamp = prefix.pop(0)
    if prefix and _DIR_RE.match(prefix[0]):
        direction = prefix.pop(0)
    if prefix:
        raise InputError(
            "cannot read line: expected [TIMESTAMP] [DIRECTION] FRAME, "
            f"got {_quote(' '.join(tokens[:-1]))} before the frame"
        )
    return CaptureLine(text, timestamp, direction)


def parse_key(text: str, what: str) -> bytes:
    """Key bytes from hex text; ValueError with a one-line reason."""
    s = "".join(text.split())
    if s[:2].lower() == "0x":
        s = s[2:]
    if not s or not _HEX_RE.match(s) or len(s) % 2:
        raise ValueError(f"{what} must be hex digits (an even number of them)")
    key = bytes.fromhex(s)
    if len(key) < auth.MIN_KEY_LEN:
        raise ValueError(f"{what} is {len(key)} bytes; keys are at least {auth.MIN_KEY_LEN} bytes")
    return key


def _quote(s: str, limit: int = 24) -> str:
    return repr(s if len(s) <= limit else s[:limit] + "...")


# ---------------------------------------------------------------- header, tag, errors


def _new_report(number: int, origin: str | None, extra: dict[str, Any]) -> Report:
    report: Report = {"frame": number}
    if origin is not None:
        report["origin"] = origin
    for name, value in extra.items():
        if value is not None:
            report[name] = value
    return report


def _type_label(msg_type: int) -> str:
    return f"{messages.type_name(msg_type)} (0x{msg_type:02x})"


def _unknown(msg_type: int) -> str:
    return f"unknown message type 0x{msg_type:02x}: not defined in wire version {frame.VERSION}"


def _codec_reason(body: bytes, exc: DecodeError) -> str:
    # The msgpack-C fast path words its errors for C programmers; the pure decoder
    # names the offending byte or offset, so ask it for the explanation.
    try:
        pure_unpackb(body)
    except DecodeError as pure_exc:
        return str(pure_exc)
    return str(exc) or "undecodable"


def _strip_type(msg_type: int, text: str) -> str:
    prefix = messages.type_name(msg_type) + ": "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _header_error(reason: str, data: bytes, max_len: int) -> str:
    n = len(data)
    if n > max_len:
        hint = ""
        if max_len == frame.MAX_LORA_FRAME:
            hint = " (the LoRa limit; pass --max-len 65535 for frames from TCP or UART)"
        return f"frame too long: {n} bytes, more than --max-len {max_len}{hint}"
    if n < frame.HEADER_BROADCAST:
        return f"truncated header: {n} bytes, a header alone is {frame.HEADER_BROADCAST}"
    if reason.startswith("frame of") and "shorter than the minimum" in reason:
        return (
            f"frame too short: {n} bytes, the smallest frame (header, 1-byte body, tag) "
            f"is {frame.MIN_FRAME}"
        )
    if reason.startswith("unsupported frame version"):
        return (
            f"bad version: {data[0] >> 4} (first byte 0x{data[0]:02x}), "
            f"this decoder reads version {frame.VERSION}"
        )
    if reason.startswith("reserved flag"):
        return f"reserved flag 0x8 is set (first byte 0x{data[0]:02x}); it must be 0"
    if reason.startswith("hop_count"):
        return (
            f"hop count {data[2] & 0x0F} is above the hop limit {data[2] >> 4} "
            f"(byte 2 = 0x{data[2]:02x})"
        )
    if "no room for a body" in reason:
        return (
            f"DEST flag set but the frame ({n} bytes) is too short for a destination, "
            f"a body and a tag (at least {frame.OVERHEAD_UNICAST + frame.MIN_BODY})"
        )
    return f"bad header: {reason}"


def _flag_names(flags: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES if flags & bit]


def _header(f: frame.Frame) -> Report:
    return {
        "version": f.version,
        "flags": f.flags,
        "flag_names": _flag_names(f.flags),
        "type": f.type,
        "type_name": messages.type_name(f.type)
        if messages.is_known(f.type)
        else f"unknown (0x{f.type:02x})",
        "hop_limit": f.hop_limit,
        "hop_count": f.hop_count,
        "source": bytes(f.source).hex(),
        "dest": None if f.dest is None else bytes(f.dest).hex(),
        "seq": f.seq,
        "body_length": len(f.body),
    }


def _tag(f: frame.Frame, data: bytes, keys: Keys) -> Report:
    out: Report = {"value": bytes(f.tag).hex()}
    region = frame.tagged_region(data)
    if f.flags & frame.FLAG_LINK:
        key, name = keys.link, "link key"
    else:
        key, name = keys.network, "network key"
    handshake = f.type in (messages.HELLO, messages.AUTH)
    if key is None and handshake and auth.check(HANDSHAKE_KEY, region, f.tag):
        # Handshake frames carry a tag under a public constant: a checksum anyone can check.
        key, name = HANDSHAKE_KEY, "handshake key"
    if key is None:
        out.update(status=TAG_UNCHECKED, key=None, text="not checked (no key)")
        if f.flags & frame.FLAG_LINK and keys.network is not None:
            out["text"] = "not checked (no key: LINK frame, give --link-key)"
        return out
    ok = auth.check(key, region, f.tag)
    if not ok and key is not HANDSHAKE_KEY and handshake:
        if auth.check(HANDSHAKE_KEY, region, f.tag):
            key, name, ok = HANDSHAKE_KEY, "handshake key", True
    out["key"] = name
    out["status"] = TAG_OK if ok else TAG_BAD
    out["text"] = f"tag ok ({name})" if ok else f"tag BAD (checked with the {name})"
    return out


# ---------------------------------------------------------------- bodies


def _plain(value: Any) -> Any:
    """A decoded msgpack value made JSON-ready: bytes as hex, map keys as str."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {
            str(k if not isinstance(k, bytes) else k.hex()): _plain(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _named(msg_type: int, value: dict[Any, Any]) -> Report:
    names = FIELD_NAMES.get(msg_type, {})
    return {names.get(k, str(k)) if isinstance(k, int) else str(k): v for k, v in value.items()}


def _inventory(items: list[list[Any]]) -> list[Report]:
    return [{"kind": INV_KINDS.get(kind, str(kind)), "hash": h.hex()} for kind, h in items]


def _body(msg_type: int, value: Any) -> Any:
    if msg_type == messages.ANNOUNCE:
        return {"record": decode_peer_record(value)}
    if msg_type == messages.FRAGMENT:
        msg_id, index, count, chunk = value
        return {
            "msg_id": msg_id,
            "index": index,
            "count": count,
            "chunk_length": len(chunk),
            "last": index == count - 1,
            "chunk": chunk.hex(),
        }
    if not isinstance(value, dict):
        return _plain(value)
    fields = _named(msg_type, value)
    out: Report = {}
    for name, v in fields.items():
        if name == "inventory":
            out[name] = _inventory(v)
        elif name == "records":
            out[name] = [decode_peer_record(r) for r in v]
        elif name == "record" and isinstance(v, dict):
            out[name] = decode_peer_record(v)
        elif msg_type == messages.REJECT and name == "kind":
            out[name] = INV_KINDS.get(v, str(v))
        elif msg_type == messages.REJECT and name == "code":
            out[name] = "0x{:02x} {}".format(v, REJECT_CODES.get(v, "(undefined)"))
        else:
            out[name] = _plain(v)
    return out


def _endpoint(host: bytes, port: int) -> str:
    addr = ipaddress.ip_address(host)
    return ("[%s]:%d" if addr.version == 6 else "%s:%d") % (addr, port)


def decode_peer_record(value: Any) -> Report:
    """A peer record's fields and signature status ("valid"/"INVALID"), or why it is not one."""
    try:
        rec = record.decode_record(value)
    except DecodeError as exc:
        reason = str(exc)
        for prefix in ("peer record: malformed: ", "peer record: "):
            if reason.startswith(prefix):
                reason = reason[len(prefix) :]
                break
        return {"malformed": reason, "raw": _plain(value)}
    services = [name for bit, name in SERVICE_NAMES if rec.services & bit]
    unknown_bits = rec.services & ~0xF
    if unknown_bits:
        services.append(f"0x{unknown_bits:x}")
    out: Report = {
        "public_key": rec.public.hex(),
        "node_id": rec.id.hex(),
        "kind": record.KIND_NAMES[rec.kind],
        "services": services,
        "seq": rec.seq,
        "endpoints": [_endpoint(h, p) for h, p in rec.endpoints],
        "mesh": None,
    }
    if rec.mesh is not None:
        region, sf = rec.mesh
        name = REGION_NAMES[region] if region < len(REGION_NAMES) else f"region {region}"
        out["mesh"] = {"region": name, "sf": sf}
    try:
        record.verify_record(rec)
        out["signature"] = "valid"
    except record.RecordError:
        out["signature"] = "INVALID"
    return out


def _record_problems(body: Any) -> list[str]:
    """Records whose signature is INVALID, anywhere in a body report."""
    out: list[str] = []
    if isinstance(body, dict):
        if body.get("signature") == "INVALID" and "node_id" in body:
            out.append("peer record of {}: signature INVALID".format(body["node_id"]))
        for v in body.values():
            out.extend(_record_problems(v))
    elif isinstance(body, list):
        for v in body:
            out.extend(_record_problems(v))
    return out


# ---------------------------------------------------------------- text rendering


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value if value else '""'
    return str(value)


def _render_value(label: str, value: Any, indent: str, out: list[str]) -> None:
    if isinstance(value, dict):
        if not value:
            out.append(f"{indent}{label}: {{}}")
            return
        out.append(f"{indent}{label}:")
        for k, v in value.items():
            _render_value(str(k), v, indent + "  ", out)
    elif isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            items = ", ".join(_scalar(v) for v in value)
            out.append(f"{indent}{label}: [{items}]")
            return
        out.append(f"{indent}{label}: {len(value)} items")
        for i, v in enumerate(value):
            _render_value(f"[{i}]", v, indent + "  ", out)
    else:
        out.append(f"{indent}{label}: {_scalar(value)}")


def render_text(report: Report) -> str:
    """The human-readable dump of one report (several lines, no trailing newline)."""
    where = []
    if report.get("origin"):
        where.append(report["origin"])
    for name in ("timestamp", "direction"):
        if report.get(name):
            where.append(report[name])
    title = f"frame {report['frame']}"
    if where:
        title += " ({})".format(", ".join(where))
    lines = []
    header = report.get("header")
    if header is not None:
        lines.append(f"{title}: {report['length']} bytes, {header['type_name']}")
        flags = "|".join(header["flag_names"]) or "none"
        dest = header["dest"] if header["dest"] is not None else "broadcast"
        lines.extend(
            [
                f"  version:  {header['version']}",
                "  flags:    0x{:x} {}".format(header["flags"], flags),
                "  type:     0x{:02x} {}".format(header["type"], header["type_name"]),
                f"  hops:     {header['hop_count']} of limit {header['hop_limit']}",
                "  source:   {}".format(header["source"]),
                f"  dest:     {dest}",
                f"  seq:      {header['seq']}",
            ]
        )
        if "body" in report:
            label = f"body ({header['body_length']} bytes)"
            _render_value(label, report["body"], "  ", lines)
        else:
            lines.append(f"  body:     {header['body_length']} bytes, not decoded")
        reassembled = report.get("reassembled")
        if reassembled is not None:
            if "type_name" in reassembled:
                label = (
                    f"reassembled message (msg id {reassembled['msg_id']}, "
                    f"{reassembled['length']} bytes, {reassembled['type_name']})"
                )
                _render_value(label, reassembled.get("body", {}), "  ", lines)
            if reassembled.get("error"):
                lines.append("  reassembly: {}".format(reassembled["error"]))
        tag = report["tag"]
        lines.append("  tag:      {} {}".format(tag["value"], tag["text"]))
    if report["error"] is not None:
        lines.append(f"frame {report['frame']}: error: {report['error']}")
        if header is None and where:
            lines[-1] += " [{}]".format(", ".join(where))
    return "\n".join(lines)
