"""Transaction and block relay between connected peers: INV, GETDATA, TX, BLOCK.

* A new object (hash = SHA-256 of its raw bytes) is announced by INV to every peer
  not known to have it; a peer that wants it asks with GETDATA; we answer from a
  bounded object store (by count and by bytes, oldest dropped first). The store keeps
  one copy of each object, its encoded TX/BLOCK body (the raw bytes are its tail), and
  counts what that costs: the body plus STORE_ENTRY_OVERHEAD for the key, the entry
  and the object headers, so `store_max_bytes` bounds the memory the store holds.
* Dedupe: a bounded LRU of every hash seen (`seen_max`, 100,000 by default). An object
  seen before is neither validated nor relayed again; an announced hash we already
  have or have asked someone for is not requested again (until `getdata_timeout_s`).
* Per peer: a bounded LRU of hashes the peer has or was told about (no echo), token
  buckets for announced INV items and for unsolicited objects received (the excess
  is dropped, counted in `dropped["inv"]` / `dropped["object"]`, and reported through
  `on_flooding(peer, what)` at most once per `flood_report_interval_s` per peer; the
  manager turns it into FLOODING points for the sender), at most `inflight_max`
  outstanding GETDATA items.
* Priorities: blocks go out at PRIO_BLOCK, transactions and their INVs at PRIO_TX;
  GETDATA is control traffic. A new block is announced at once; transactions wait
  `inv_delay_s` (20 ms) so that announcements leave in batches of up to INV_MAX.
* The node judges objects through `validator(kind, payload) -> bool | None` ("tx" or
  "block"; None = cannot tell, relay anyway); the peer manager passes one that applies
  the configured size limits first (`validation.DefaultValidator`). False is reported to the
  `on_invalid(peer, kind, reason)` listeners (the peer manager charges its TCP peers
  INVALID_SYNC_DATA points, the mesh wing the mesh node it came from) and the object is
  neither stored nor relayed.
* `on_object(kind, payload, peer)` listeners: every new valid object, local ones with
  peer None (the mesh wing offers them to the mesh). Both are `Listeners`: each
  consumer registers with `.add(fn)`.
* `on_response(peer, ms)`: time from our GETDATA to the object (for the peer's score);
  `on_useful(peer, kind)`: the peer delivered a new valid object (eviction protection);
  `on_flooding(peer, what)`: see above.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from loragate.bounded import BoundedDict
from loragate.listeners import Listeners
from loragate.ratelimit import TokenBucket
from loragate.session import PRIO_BLOCK, PRIO_CONTROL, PRIO_TX
from lorawire import messages

log = logging.getLogger(__name__)

KINDS = {messages.KIND_TX: "tx", messages.KIND_BLOCK: "block"}
KIND_CODES = {"tx": messages.KIND_TX, "block": messages.KIND_BLOCK}
_OBJECT_TYPE = {messages.KIND_TX: messages.TX, messages.KIND_BLOCK: messages.BLOCK}
_PRIO = {messages.KIND_TX: PRIO_TX, messages.KIND_BLOCK: PRIO_BLOCK}


class RelayPeer(Protocol):
    """What the relay needs of a connection (PeerSession has it; the mesh wing's one
    stand-in for the whole mesh too). `node_id` and `host` say whom a fault is charged
    to (None: not proven / no address)."""

    @property
    def serial(self) -> int: ...

    @property
    def node_id(self) -> bytes | None: ...

    @property
    def host(self) -> str | None: ...

    def send_body(self, msg_type: int, body: bytes, prio: int = PRIO_CONTROL) -> bool: ...


Validator = Callable[[str, bytes], "bool | None"]

# What one stored object costs beyond its encoded body on CPython 3.11: the 32-byte key
# (65 B), the entry tuple (64 B), the body's bytes header (33 B) and the ordered
# table's share of its tables, which a full store churning old objects out leaves
# between half and fully used (measured with tracemalloc: 272-346 B per entry in all),
# rounded up.
STORE_ENTRY_OVERHEAD = 384


@dataclass
class RelayLimits:
    seen_max: int = 100_000
    store_max_objects: int = 20_000
    store_max_bytes: int = 32 * 1024 * 1024
    known_per_peer: int = 5_000
    inflight_max: int = 1_024
    getdata_timeout_s: float = 30.0
    inv_item_rate: float = 2_000.0
    inv_item_burst: float = 4_000.0
    object_rate: float = 1_000.0
    object_burst: float = 2_000.0
    inv_delay_s: float = 0.02  # transactions are announced in batches (blocks at once)
    flood_report_interval_s: float = 1.0  # at most one FLOODING report per peer per interval


class _PeerState:
    __slots__ = ("peer", "known", "pending", "inflight", "inv_bucket", "obj_bucket", "flood_at")

    def __init__(self, peer: RelayPeer, limits: RelayLimits) -> None:
        self.peer = peer
        self.known: BoundedDict[bytes, None] = BoundedDict(limits.known_per_peer)
        self.pending: list[tuple[int, bytes]] = []
        self.inflight: dict[bytes, float] = {}
        self.inv_bucket = TokenBucket(limits.inv_item_rate, limits.inv_item_burst)
        self.obj_bucket = TokenBucket(limits.object_rate, limits.object_burst)
        self.flood_at = -float("inf")  # monotonic time of the last flooding report

    def know(self, h: bytes) -> None:
        self.known.put(h, None)


def object_hash(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()


class Relay:
    def __init__(
        self,
        *,
        validator: Validator | None = None,
        on_object: Callable[[str, bytes, RelayPeer | None], None] | None = None,
        on_invalid: Callable[[RelayPeer, str, str], None] | None = None,
        on_response: Callable[[RelayPeer, float], None] | None = None,
        on_useful: Callable[[RelayPeer, str], None] | None = None,
        on_flooding: Callable[[RelayPeer, str], None] | None = None,
        limits: RelayLimits | None = None,
    ) -> None:
        self.validator = validator
        self.on_object: Listeners[[str, bytes, RelayPeer | None]] = Listeners("on_object", log)
        self.on_invalid: Listeners[[RelayPeer, str, str]] = Listeners("on_invalid", log)
        self.on_response: Listeners[[RelayPeer, float]] = Listeners("on_response", log)
        self.on_useful: Listeners[[RelayPeer, str]] = Listeners("on_useful", log)
        self.on_flooding: Listeners[[RelayPeer, str]] = Listeners("on_flooding", log)
        # The keyword arguments are first listeners, for a relay used on its own.
        if on_object is not None:
            self.on_object.add(on_object)
        if on_invalid is not None:
            self.on_invalid.add(on_invalid)
        if on_response is not None:
            self.on_response.add(on_response)
        if on_useful is not None:
            self.on_useful.add(on_useful)
        if on_flooding is not None:
            self.on_flooding.add(on_flooding)
        self.limits = lim = limits or RelayLimits()
        self._peers: dict[int, _PeerState] = {}
        self._seen: BoundedDict[bytes, None] = BoundedDict(lim.seen_max)
        # hash -> (kind code, offset of the raw object in the body, encoded body)
        self._objects: BoundedDict[bytes, tuple[int, int, bytes]] = BoundedDict(
            lim.store_max_objects, on_evict=self._forget_object
        )
        self._object_bytes = 0
        self._requested: dict[bytes, float] = {}  # hash -> monotonic time of GETDATA
        self._flush_scheduled = False
        self._flush_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self.relayed: Counter[str] = Counter()  # objects and INV items sent
        self.received: Counter[str] = Counter()  # new valid objects received
        self.duplicates = 0
        self.invalid = 0
        self.dropped: Counter[str] = Counter()  # "inv" items / "object"s over the buckets

    # ---- peers ---------------------------------------------------------------------

    def add_peer(self, peer: RelayPeer) -> None:
        self._peers[peer.serial] = _PeerState(peer, self.limits)

    def remove_peer(self, peer: RelayPeer) -> None:
        st = self._peers.pop(peer.serial, None)
        if st is not None:
            for h in st.inflight:
                self._requested.pop(h, None)

    @property
    def peer_count(self) -> int:
        return len(self._peers)

    def known_count(self, peer: RelayPeer) -> int:
        """Hashes `peer` is known to have (at most `limits.known_per_peer`)."""
        st = self._peers.get(peer.serial)
        return 0 if st is None else len(st.known)

    # ---- local objects ---------------------------------------------------------------

    def has(self, h: bytes) -> bool:
        return h in self._seen

    def get(self, h: bytes) -> bytes | None:
        obj = self._objects.get(h)
        return None if obj is None else obj[2][obj[1] :]

    @property
    def object_count(self) -> int:
        return len(self._objects)

    @property
    def object_bytes(self) -> int:
        """What the store holds: encoded bodies plus STORE_ENTRY_OVERHEAD per object."""
        return self._object_bytes

    def submit_local(self, kind: str, payload: bytes) -> bytes:
        """Our node made an object: store it and announce it to every peer; its hash."""
        code = KIND_CODES[kind]
        payload = bytes(payload)
        h = object_hash(payload)
        if h in self._seen:
            return h
        self._accept(code, h, payload, None)
        return h

    @property
    def seen_count(self) -> int:
        """Hashes held for deduplication (at most `limits.seen_max`)."""
        return len(self._seen)

    def _mark_seen(self, h: bytes) -> None:
        self._seen.put(h, None)

    def _forget_object(self, h: bytes, obj: tuple[int, int, bytes]) -> None:
        self._object_bytes -= len(obj[2]) + STORE_ENTRY_OVERHEAD

    def _store(self, code: int, h: bytes, payload: bytes) -> None:
        body = messages.encode_body(_OBJECT_TYPE[code], {0: payload})
        held = self._objects.pop(h)
        if held is not None:
            self._forget_object(h, held)
        self._object_bytes += len(body) + STORE_ENTRY_OVERHEAD
        # beyond the count: oldest forgotten
        self._objects.put(h, (code, len(body) - len(payload), body))
        while self._objects and self._object_bytes > self.limits.store_max_bytes:
            self._forget_object(*self._objects.pop_oldest())

    def _accept(self, code: int, h: bytes, payload: bytes, source: _PeerState | None) -> None:
        self._mark_seen(h)
        self._store(code, h, payload)
        kind = KINDS[code]
        for st in self._peers.values():
            if st is source or h in st.known:
                continue
            st.know(h)
            st.pending.append((code, h))
        self._schedule_flush(urgent=code == messages.KIND_BLOCK)
        if source is not None:
            self.received[kind] += 1
            self.on_useful(source.peer, kind)
        self.on_object(kind, payload, None if source is None else source.peer)

    def _schedule_flush(self, urgent: bool = False) -> None:
        if self._flush_scheduled and not urgent:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (synchronous use in tests): flush now
            self._flush()
            return
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_scheduled = True
        delay = self.limits.inv_delay_s
        if urgent or delay <= 0:
            self._flush_handle = loop.call_soon(self._flush)
        else:
            self._flush_handle = loop.call_later(delay, self._flush)

    def close(self) -> None:
        """Cancel a pending announcement flush (at shutdown)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._flush_scheduled = False

    def _flush(self) -> None:
        """Send the pending announcements, batched into INVs of at most INV_MAX items."""
        self._flush_scheduled = False
        self._flush_handle = None
        for st in self._peers.values():
            if not st.pending:
                continue
            pending, st.pending = st.pending, []
            for code in (messages.KIND_BLOCK, messages.KIND_TX):
                items = [[c, h] for c, h in pending if c == code]
                for i in range(0, len(items), messages.INV_MAX):
                    chunk = items[i : i + messages.INV_MAX]
                    body = messages.encode_body(messages.INV, {0: chunk})
                    if st.peer.send_body(messages.INV, body, _PRIO[code]):
                        self.relayed["inv"] += len(chunk)

    # ---- incoming ------------------------------------------------------------------

    def handle(self, peer: RelayPeer, msg_type: int, value: Any) -> bool:
        """Process a relay message from a peer; False if the type is not a relay one."""
        handle = _HANDLERS.get(msg_type)
        if handle is None:
            return False
        st = self._peers.get(peer.serial)
        if st is not None:
            handle(self, st, value[0])
        return True

    def _on_tx(self, st: _PeerState, payload: bytes) -> None:
        self._on_object(st, messages.KIND_TX, payload)

    def _on_block(self, st: _PeerState, payload: bytes) -> None:
        self._on_object(st, messages.KIND_BLOCK, payload)

    def _on_inv(self, st: _PeerState, items: list[list[Any]]) -> None:
        now = time.monotonic()
        if not st.inv_bucket.take(len(items), now):
            self.dropped["inv"] += len(items)
            self._flooding(st, now, "INV items above the limit")
            return
        want: list[list[Any]] = []
        timeout = self.limits.getdata_timeout_s
        for code, h in items:
            st.know(h)
            if h in self._seen or h in st.inflight:
                continue
            asked = self._requested.get(h)
            if asked is not None and now - asked < timeout:
                continue
            if len(st.inflight) >= self.limits.inflight_max:
                self._expire_inflight(st, now)
                if len(st.inflight) >= self.limits.inflight_max:
                    break
            st.inflight[h] = now
            self._requested[h] = now
            want.append([code, h])
        if want:
            body = messages.encode_body(messages.GETDATA, {0: want})
            st.peer.send_body(messages.GETDATA, body, PRIO_CONTROL)

    def _flooding(self, st: _PeerState, now: float, what: str) -> None:
        if now - st.flood_at < self.limits.flood_report_interval_s:
            return
        st.flood_at = now
        self.on_flooding(st.peer, what)

    def _expire_inflight(self, st: _PeerState, now: float) -> None:
        timeout = self.limits.getdata_timeout_s
        for h, t in list(st.inflight.items()):
            if now - t >= timeout:
                del st.inflight[h]
                if self._requested.get(h) == t:
                    del self._requested[h]

    def _on_getdata(self, st: _PeerState, items: list[list[Any]]) -> None:
        served: set[bytes] = set()
        for code, h in items:
            obj = self._objects.get(h)
            if obj is None or obj[0] != code or h in served:
                continue  # unknown, wrong kind, or asked twice in one request
            served.add(h)
            st.know(h)
            if st.peer.send_body(_OBJECT_TYPE[code], obj[2], _PRIO[code]):
                self.relayed[KINDS[code]] += 1

    def _on_object(self, st: _PeerState, code: int, payload: bytes) -> None:
        now = time.monotonic()
        h = object_hash(payload)
        asked = st.inflight.pop(h, None)
        if asked is not None:
            if self._requested.get(h) == asked:
                del self._requested[h]
            self.on_response(st.peer, (now - asked) * 1000.0)
        elif not st.obj_bucket.take(1, now):
            self.dropped["object"] += 1  # unsolicited and over the limit
            self._flooding(st, now, "unsolicited objects above the limit")
            return
        st.know(h)
        if h in self._seen:
            self.duplicates += 1
            return
        kind = KINDS[code]
        verdict: bool | None = None
        if self.validator is not None:
            try:
                verdict = self.validator(kind, payload)
            except Exception:
                log.exception("validator failed on a %s", kind)
                verdict = None
        if verdict is False:
            self.invalid += 1
            self._mark_seen(h)
            self.on_invalid(st.peer, kind, f"invalid {kind} {h.hex()[:16]}")
            return
        self._accept(code, h, payload, st)


# The relay's message types and what each does, for TCP peers and the mesh wing alike
# (the wing is one relay peer: mesh.relay); tests/test_dispatch.py checks them against
# lorawire.messages.
_HANDLERS: dict[int, Callable[[Relay, _PeerState, Any], None]] = {
    messages.INV: Relay._on_inv,
    messages.GETDATA: Relay._on_getdata,
    messages.TX: Relay._on_tx,
    messages.BLOCK: Relay._on_block,
}
RELAY_TYPES = frozenset(_HANDLERS)
