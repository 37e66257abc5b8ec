"""Messages and frames composed from their fields: a builder per message type, whole
frames (`build`, `parse`, `seal_message`). For hosts and tests: a board keeps only the
builders a node itself uses (lorawire.messages.encode_ping, encode_pex_request), so this
module is not shipped to boards (firmware/manifest.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lorawire import auth
from lorawire import messages as m
from lorawire.frame import DEFAULT_HOP_LIMIT, FLAG_LINK, MAX_LORA_FRAME, Frame
from lorawire.frame import decode as decode_frame
from lorawire.frame import encode as encode_frame

encode_ping = m.encode_ping
encode_pex_request = m.encode_pex_request


def encode_announce(record: dict) -> bytes:
    return m.encode_body(m.ANNOUNCE, record)


def encode_pex_response(records: Iterable[dict]) -> bytes:
    return m.encode_body(m.PEX_RESPONSE, {0: list(records)})


def encode_pong(nonce: int) -> bytes:
    return m.encode_body(m.PONG, {0: nonce})


def encode_ack(seq: int) -> bytes:
    return m.encode_body(m.ACK, {0: seq})


def encode_inv(items: Iterable[tuple[int, bytes]]) -> bytes:
    """`items`: (kind, hash32) pairs."""
    return m.encode_body(m.INV, {0: [[kind, h] for kind, h in items]})


def encode_getdata(items: Iterable[tuple[int, bytes]]) -> bytes:
    return m.encode_body(m.GETDATA, {0: [[kind, h] for kind, h in items]})


def encode_tx(raw: bytes) -> bytes:
    return m.encode_body(m.TX, {0: bytes(raw)})


def encode_block(raw: bytes) -> bytes:
    return m.encode_body(m.BLOCK, {0: bytes(raw)})


def encode_reject(kind: int, obj_hash: bytes, code: int, text: str = "") -> bytes:
    return m.encode_body(m.REJECT, {0: kind, 1: obj_hash, 2: code, 3: text})


def build(
    msg_type: int,
    fields: Any,
    source: bytes,
    seq: int,
    tag: Any,
    dest: bytes | None = None,
    flags: int = 0,
    hop_limit: int | None = None,
    max_len: int = MAX_LORA_FRAME,
) -> bytes:
    """Frame bytes for a message: body from `fields` (checked), `tag` bytes or tag_fn."""
    frame = Frame(msg_type, source, seq, dest, flags)
    if hop_limit is not None:
        frame.hop_limit = hop_limit
    return encode_frame(frame, m.encode_body(msg_type, fields), tag, max_len)


def parse(data: bytes, max_len: int = MAX_LORA_FRAME) -> tuple[Frame, Any]:
    """(Frame, fields) without checking the tag: for tools and tests. A node verifies the
    tag between frame.decode and decode_body instead."""
    frame = decode_frame(data, max_len)
    return frame, m.decode_body(frame.type, frame.body)


def seal_message(
    msg_type: int,
    fields: Any,
    source: bytes,
    seq: int,
    network_key: bytes | None = None,
    link_key: bytes | None = None,
    dest: bytes | None = None,
    link: bool = False,
    hop_limit: int = DEFAULT_HOP_LIMIT,
    max_len: int = MAX_LORA_FRAME,
) -> bytes:
    """auth.seal_frame for a message given as its fields (checked by lorawire.messages)."""
    f = Frame(msg_type, source, seq, dest, FLAG_LINK if link else 0, hop_limit=hop_limit)
    body = m.encode_body(msg_type, fields)
    return auth.seal_frame(f, body, network_key, link_key, max_len)
