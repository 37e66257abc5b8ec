"""The frames the gateway puts on the mesh, sealed with its identity.

`MeshFramer(identity, network_key, store, seq_block, msg_id, spawn)` seals frames
(`lorawire.auth.seal_frame`, network tag or a link tag for a direct neighbour) under our
frame sequence. The sequence survives restarts: a block of `seq_block` numbers is
reserved in the store (`mesh_seq`) before use, and a restart jumps to the next block,
so the mesh's replay windows accept our first frames (as the firmware does).

Objects larger than one frame are fragmented (lorawire.fragment); one that needs more
than MAX_FRAGMENTS frames is neither offered nor sent (`fits` is False for it,
`object_frames` gives None). INV items are packed as many per frame as the MTU allows.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from loragate.store import AsyncStore
from lorawire import auth, fragment, messages
from lorawire import frame as wframe
from lorawire.identity import Identity

SEQ_KEY = "mesh_seq"
MTU = wframe.MAX_LORA_FRAME
MTU_BODY = MTU - wframe.OVERHEAD_BROADCAST
MAX_OBJECT_MESSAGE = fragment.max_message(MTU)


KIND_TX = "tx"
KIND_BLOCK = "block"
OBJ_TYPE = {KIND_TX: messages.TX, KIND_BLOCK: messages.BLOCK}  # relay kind -> message type


def fits(msg_type: int, payload: bytes) -> bool:
    """Whether an object can travel on the mesh at all (fragmented if need be)."""
    body_len = len(messages.encode_body(msg_type, {0: bytes(payload)}))
    if wframe.OVERHEAD_BROADCAST + body_len <= MTU:
        return True
    return 1 + body_len <= MAX_OBJECT_MESSAGE


def object_fits(kind: str, payload: bytes) -> bool:
    """`fits` for a relay object ("tx" or "block")."""
    return fits(OBJ_TYPE[kind], payload)


class MeshFramer:
    def __init__(
        self,
        identity: Identity,
        network_key: bytes,
        store: AsyncStore | None,
        seq_block: int,
        msg_id: int,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.identity = identity
        self.network_key = network_key
        self._store = store  # where the reserved block is kept (None: restarts at 0)
        self._seq_block = seq_block
        self._spawn = spawn
        self._seq = 0
        self._seq_limit = 0
        self._msg_id = msg_id

    # ---- sequence numbers ------------------------------------------------------------------

    async def load_seq(self) -> None:
        """Start at the block reserved after the last one used (0 without a store)."""
        store = self._store
        start = 0
        if store is not None:
            raw = await store.get_kv(SEQ_KEY)
            if raw:
                start = int.from_bytes(raw, "big") & 0xFFFF
        self._seq = start
        self._seq_limit = (start + self._seq_block) & 0xFFFF
        await self._save_seq()

    async def _save_seq(self) -> None:
        store = self._store
        if store is not None:
            await store.set_kv(SEQ_KEY, self._seq_limit.to_bytes(2, "big"))

    def next_seq(self) -> int:
        s = self._seq
        self._seq = (s + 1) & 0xFFFF
        block = self._seq_block
        if (self._seq_limit - self._seq) & 0xFFFF <= block // 2:
            # Reserve the next block half a block early, so the write is done before a
            # number from it is used (a crash then never reuses a sent number).
            self._seq_limit = (self._seq_limit + block) & 0xFFFF
            self._spawn(self._save_seq())
        return s

    # ---- frames ------------------------------------------------------------------------------

    def seal(
        self,
        msg_type: int,
        body: bytes,
        *,
        dest: bytes | None = None,
        hop_limit: int,
        bridged: bool,
        link_key: bytes | None = None,
    ) -> bytes:
        flags = (wframe.FLAG_BRIDGED if bridged else 0) | (wframe.FLAG_LINK if link_key else 0)
        f = wframe.Frame(msg_type, self.identity.id, self.next_seq(), dest, flags, hop_limit)
        return bytes(auth.seal_frame(f, body, self.network_key, link_key, MTU))

    def object_frames(self, msg_type: int, body: bytes, hop_limit: int) -> list[bytes] | None:
        """BRIDGED broadcast frame(s) carrying one object; None if it cannot be sent."""
        if wframe.OVERHEAD_BROADCAST + len(body) <= MTU:
            return [self.seal(msg_type, body, hop_limit=hop_limit, bridged=True)]
        try:
            payload = messages.fragment_payload(msg_type, body)
            self._msg_id = (self._msg_id + 1) & 0xFFFF
            chunks = fragment.split(payload, self._msg_id, MTU_BODY)
        except ValueError:
            return None
        return [self.seal(messages.FRAGMENT, c, hop_limit=hop_limit, bridged=True) for c in chunks]

    def inv_frames(self, code: int, hashes: list[bytes], hop_limit: int) -> list[bytes]:
        """BRIDGED INV broadcasts offering `hashes` (all of kind `code`)."""
        frames: list[bytes] = []
        i = 0
        while i < len(hashes):
            n = min(messages.INV_MAX, len(hashes) - i)
            while True:
                body = messages.encode_inv([(code, h) for h in hashes[i : i + n]])
                if wframe.OVERHEAD_BROADCAST + len(body) <= MTU or n == 1:
                    break
                n -= 1
            frames.append(self.seal(messages.INV, body, hop_limit=hop_limit, bridged=True))
            i += n
        return frames
