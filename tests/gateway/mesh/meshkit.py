"""Mesh nodes for the mesh wing's tests: real identities, frames built by lorawire."""

from __future__ import annotations

import hashlib
from typing import Any

from lorawire import auth, compose, messages
from lorawire import frame as wframe
from lorawire import record as wrecord
from lorawire.codec import unpackb
from lorawire.identity import Identity

NETKEY = hashlib.sha256(b"lorachain test network").digest()  # the test network's key


class MeshNode:
    """A mesh node's identity and frame sequence; frames built by lorawire."""

    def __init__(self, kind: int = wrecord.KIND_MESH) -> None:
        self.ident = Identity.generate()
        self.id = self.ident.id
        self.kind = kind
        self.seq = 100

    def record_value(self) -> dict[int, Any]:
        return unpackb(wrecord.encode_record({"seq": 1, "kind": self.kind}, self.ident))

    def link_key(self, other: Identity) -> bytes:
        return auth.link_key(self.ident.x_secret(), self.id, other.public)

    def frame(
        self,
        msg_type: int,
        fields: Any,
        *,
        dest: bytes | None = None,
        link_key: bytes | None = None,
        hop: int = 0,
        source: bytes | None = None,
    ) -> bytes:
        self.seq += 1
        data = compose.seal_message(
            msg_type,
            fields,
            source or self.id,
            self.seq,
            network_key=NETKEY,
            link_key=link_key,
            dest=dest,
            link=link_key is not None,
        )
        return wframe.with_hop(data, hop) if hop else data

    def raw(
        self, msg_type: int, body: bytes, key: bytes, *, dest: bytes | None = None, link: bool
    ) -> bytes:
        """A frame with any body bytes (no schema check), tagged under `key`."""
        self.seq += 1
        f = wframe.Frame(msg_type, self.id, self.seq, dest, wframe.FLAG_LINK if link else 0)
        return wframe.encode(f, body, lambda region: auth.tag(key, region))

    def announce(self, hop: int = 0) -> bytes:
        return self.frame(messages.ANNOUNCE, self.record_value(), hop=hop)
