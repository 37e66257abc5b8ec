"""One authenticated TCP connection to a peer: handshake, then framed, tagged messages.

Life of a `PeerSession`:

1. `handshake()` runs the signed-challenge handshake (lorawire.handshake) over the
   `FrameStream`: `Initiator` for outbound, `Responder` for inbound, the whole exchange
   under `handshake_timeout_s`. `expected_id` pins a known peer's node id. Any failure
   raises `HandshakeFailed(reason)`; the caller counts it against the *address* only
   (the peer's identity is not proven until the handshake ends).
2. `start()` runs three tasks under one supervisor: a reader, a writer and a pinger.
   The first to end (EOF, timeout, framing fault, `abort()`) ends them all; the stream is
   closed and `on_closed(session)` is called once. `close()` waits for that; `abort()`
   only asks (safe from inside a callback running on the reader).

Incoming frames: the inbound token bucket is checked first (so a flood costs no HMAC);
then `lorawire.auth.open_frame` with the session's receive key (LINK flag) and a
replay window for this session. Blame (see `on_misbehaviour`):

* tag valid (attributed): malformed body, a source id other than the peer's, a
  handshake message after the handshake -> the node id *and* its address;
* bad tag, undecodable header, replay, no LINK flag: the address only -- the frame
  proves nothing about who made it;
* flooding (frames or PEX requests above the bucket): the node id and its address,
  reported at most once per `flood_report_interval_s` (the excess is dropped);
* unknown message types are counted, not blamed (a newer peer may send them).

Outgoing messages wait in a bounded `SendQueue` with three priorities (control >
blocks > transactions/gossip). When it is full the oldest message of the lowest
priority at or below the newcomer's is dropped (or the newcomer, if everything queued
is more urgent); drops are counted in `dropped_out`. Frames are sealed with the send
key when written, so sequence numbers go out in order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loragate.bans import Misbehaviour
from loragate.ratelimit import TokenBucket
from loragate.transport import FrameStream, TransportError
from lorawire import auth, handshake, messages
from lorawire import frame as wireframe
from lorawire.identity import Identity, id_hex
from lorawire.record import KIND_NAMES, Record
from lorawire.replay import ReplayTable

log = logging.getLogger(__name__)

PRIO_CONTROL = 0
PRIO_BLOCK = 1
PRIO_TX = 2
PRIORITIES = (PRIO_CONTROL, PRIO_BLOCK, PRIO_TX)
# Message types the session consumes and never hands on: PING is answered here, a
# handshake message after the handshake is a protocol violation. PONG and PEX_REQUEST
# are looked at here (latency, rate) and handed on (loragate.handler.HANDLERS).
SESSION_TYPES = frozenset({messages.PING, messages.HELLO, messages.AUTH})
WRITE_BATCH = 64
_LENGTH = struct.Struct(">I")
_MAX_FRAME = wireframe.MAX_TCP_FRAME

MessageHook = Callable[["PeerSession", int, Any, bytes], None]
MisbehaviourHook = Callable[
    ["PeerSession", Misbehaviour, str, bool, "int | None", "bytes | None"], None
]
ClosedHook = Callable[["PeerSession"], None]


def _check_cancelled() -> None:
    """Re-raise a cancellation that asyncio.wait_for swallowed (Python 3.11 returns the
    inner result when it is ready at the moment the outer task is cancelled)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until every one has ended, cancelling again any that
    swallowed the cancellation."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    for t in tasks:
        if not t.cancelled():
            t.exception()  # retrieved: no "exception was never retrieved" noise


class HandshakeFailed(Exception):
    """The handshake did not complete; `reason` is a short tag (timeout, bad_signature...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class SessionLimits:
    frame_rate: float = 500.0  # frames per second, sustained
    frame_burst: float = 1000.0
    pex_rate: float = 0.1  # PEX requests per second
    pex_burst: float = 3.0
    queue_max: int = 4096  # outgoing messages waiting
    flood_report_interval_s: float = 1.0


def _noop_message(session: PeerSession, msg_type: int, value: Any, data: bytes) -> None:
    pass


def _noop_misbehaviour(
    session: PeerSession,
    kind: Misbehaviour,
    reason: str,
    attributed: bool,
    msg_type: int | None,
    data: bytes | None,
) -> None:
    pass


def _noop_closed(session: PeerSession) -> None:
    pass


class SendQueue:
    """The outgoing messages of one session: three priorities, at most `capacity` queued.

    When full, the oldest message of the lowest priority at or below the newcomer's is
    dropped to make room, or the newcomer itself when everything queued is more urgent;
    `dropped` counts both.
    """

    __slots__ = ("capacity", "dropped", "_queues", "_count")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.dropped = 0
        self._queues: tuple[deque[tuple[int, bytes]], ...] = tuple(deque() for _ in PRIORITIES)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, prio: int, msg_type: int, body: bytes) -> bool:
        """Queue one message; False when it was the one dropped."""
        if self._count >= self.capacity:
            for p in reversed(PRIORITIES):
                if p < prio:
                    self.dropped += 1
                    return False  # everything queued is more urgent than the newcomer
                if self._queues[p]:
                    self._queues[p].popleft()
                    self._count -= 1
                    self.dropped += 1
                    break
        self._queues[prio].append((msg_type, body))
        self._count += 1
        return True

    def pop(self) -> tuple[int, bytes]:
        """The most urgent message, oldest first (IndexError when empty)."""
        for q in self._queues:
            if q:
                self._count -= 1
                return q.popleft()
        raise IndexError("empty queue")


class PeerSession:
    _serial = 0

    def __init__(
        self,
        stream: FrameStream,
        identity: Identity,
        record: Record | bytes,
        *,
        outbound: bool,
        addr: tuple[str, int] | None = None,
        expected_id: bytes | None = None,
        handshake_timeout_s: float = 10.0,
        ping_interval_s: float = 30.0,
        limits: SessionLimits | None = None,
        on_message: MessageHook | None = None,
        on_misbehaviour: MisbehaviourHook | None = None,
        on_closed: ClosedHook | None = None,
    ) -> None:
        PeerSession._serial += 1
        self.serial = PeerSession._serial
        self.stream = stream
        self.identity = identity
        self.record = record
        self.outbound = outbound
        self.addr = addr if addr is not None else stream.peer_address
        self.expected_id = expected_id
        self.handshake_timeout_s = handshake_timeout_s
        self.ping_interval_s = ping_interval_s
        self.limits = limits or SessionLimits()
        self.on_message: MessageHook = on_message or _noop_message
        self.on_misbehaviour: MisbehaviourHook = on_misbehaviour or _noop_misbehaviour
        self.on_closed: ClosedHook = on_closed or _noop_closed
        self.session: handshake.Session | None = None
        self.connected_at = time.time()
        self.latency_ms: float | None = None
        self.min_ping_ms: float | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.dropped_in = 0  # over the inbound rate limit
        self.rejected_in = 0  # failed open_frame
        self.unknown_in = 0
        self.close_reason: str | None = None
        self.closed = False
        now = time.monotonic()
        lim = self.limits
        self._in_bucket = TokenBucket(lim.frame_rate, lim.frame_burst, now)
        self._pex_bucket = TokenBucket(lim.pex_rate, lim.pex_burst, now)
        self._last_flood = -1e9
        self._replay = ReplayTable(2)
        self._out = SendQueue(self.limits.queue_max)
        self._seq = int.from_bytes(os.urandom(2), "big")
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._ping_nonce: int | None = None
        self._ping_sent = 0.0

    # ---- identity ------------------------------------------------------------------

    @property
    def peer_record(self) -> Record | None:
        return None if self.session is None else self.session.peer_record

    @property
    def node_id(self) -> bytes | None:
        return None if self.session is None else bytes(self.session.peer_id)

    @property
    def kind(self) -> str:
        rec = self.peer_record
        return "full" if rec is None else KIND_NAMES[rec.kind]

    @property
    def host(self) -> str:
        return self.addr[0]

    @property
    def queued(self) -> int:
        return len(self._out)

    @property
    def dropped_out(self) -> int:
        """Messages pushed out of the full outgoing queue (or refused by it)."""
        return self._out.dropped

    @property
    def next_seq(self) -> int:
        """The sequence number our next frame goes out with."""
        return self._seq

    def __repr__(self) -> str:
        who = id_hex(self.node_id) if self.node_id else "?"
        way = "out" if self.outbound else "in"
        return f"PeerSession({who} {self.addr[0]}:{self.addr[1]} {way})"

    # ---- handshake -----------------------------------------------------------------

    async def handshake(self) -> handshake.Session:
        side: handshake.Initiator | handshake.Responder
        cls = handshake.Initiator if self.outbound else handshake.Responder
        try:
            side = cls(self.identity, self.record, expected_id=self.expected_id)
        except ValueError as exc:  # our own record is unusable: a local bug
            raise HandshakeFailed("local", str(exc)) from None
        stream = self.stream
        try:
            async with asyncio.timeout(self.handshake_timeout_s):
                if isinstance(side, handshake.Initiator):
                    for out in side.start_frames():
                        await stream.write_frame(out)
                while not side.done:
                    data = await stream.read_frame()
                    for out in side.receive_frame(data):
                        await stream.write_frame(out)
        except TimeoutError:
            raise HandshakeFailed("timeout", f"not done in {self.handshake_timeout_s}s") from None
        except handshake.HandshakeError as exc:
            raise HandshakeFailed(exc.reason, str(exc)) from None
        except TransportError as exc:
            raise HandshakeFailed(exc.reason, str(exc)) from None
        except (EOFError, ConnectionError, OSError) as exc:
            raise HandshakeFailed("closed", str(exc)) from None
        assert side.session is not None
        self.session = side.session
        self.connected_at = time.time()
        return side.session

    # ---- running -------------------------------------------------------------------

    def start(self) -> None:
        if self.session is None:
            raise RuntimeError("handshake first")
        if self._main is None:
            self._main = asyncio.create_task(self._run(), name=f"session-{self.serial}")

    def abort(self, reason: str = "closed") -> None:
        """Ask the session to end (returns at once; safe inside a callback)."""
        if self.close_reason is None:
            self.close_reason = reason
        self._stop.set()

    async def close(self, reason: str = "closed") -> None:
        """End the session and wait until its tasks are gone and the socket closed."""
        self.abort(reason)
        if self._main is None:
            if not self.closed:
                self.closed = True
                await self.stream.close()
            return
        await asyncio.shield(self._main)

    async def wait_closed(self) -> None:
        if self._main is not None:
            await asyncio.shield(self._main)

    async def _run(self) -> None:
        tasks = [
            asyncio.create_task(self._reader()),
            asyncio.create_task(self._writer()),
            asyncio.create_task(self._pinger()),
            asyncio.create_task(self._stop.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_all(tasks)
            await self.stream.close()
            self.closed = True
            if self.close_reason is None:
                self.close_reason = "closed"
            try:
                self.on_closed(self)
            except Exception:
                log.exception("on_closed hook failed for %r", self)

    def _end(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason

    async def _reader(self) -> None:
        try:
            while True:
                data = await self.stream.read_frame()
                _check_cancelled()
                self.receive_frame(data)
        except TransportError as exc:
            if exc.reason == "bad_length":
                self._report(Misbehaviour.PROTOCOL_VIOLATION, str(exc), False)
            self._end(exc.reason)
        except EOFError:
            self._end("eof")
        except (ConnectionError, OSError) as exc:
            self._end(f"socket: {exc}")

    async def _writer(self) -> None:
        writer = self.stream.writer
        assert self.session is not None
        key = self.session.send_key
        me = self.identity.id
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._out:
                    chunks: list[bytes] = []
                    while self._out and len(chunks) < WRITE_BATCH:
                        msg_type, body = self._out.pop()
                        f = wireframe.Frame(msg_type, me, self._seq, flags=wireframe.FLAG_LINK)
                        f.hop_limit = 0
                        self._seq = (self._seq + 1) & wireframe.SEQ_MAX
                        data = auth.seal_frame(f, body, link_key=key, max_len=_MAX_FRAME)
                        chunks.append(_LENGTH.pack(len(data)))
                        chunks.append(data)
                    out = b"".join(chunks)
                    writer.write(out)  # one syscall for the batch
                    self.stream.bytes_out += len(out)
                    self.frames_out += len(chunks) // 2
                    try:
                        await asyncio.wait_for(writer.drain(), self.stream.write_timeout)
                    except TimeoutError:
                        self._end("write_stalled")
                        return
                    _check_cancelled()
        except (ConnectionError, OSError) as exc:
            self._end(f"socket: {exc}")

    async def _pinger(self) -> None:
        while True:
            if self._ping_nonce is None:
                self._ping_nonce = int.from_bytes(os.urandom(4), "big")
                self._ping_sent = time.monotonic()
                self.send(messages.PING, {0: self._ping_nonce}, PRIO_CONTROL)
            await asyncio.sleep(self.ping_interval_s)

    # ---- outgoing ------------------------------------------------------------------

    def send(self, msg_type: int, fields: Any, prio: int = PRIO_CONTROL) -> bool:
        """Queue a message (fields are checked now); False if dropped or closing."""
        return self.send_body(msg_type, messages.encode_body(msg_type, fields), prio)

    def send_body(self, msg_type: int, body: bytes, prio: int = PRIO_CONTROL) -> bool:
        """Queue an already-encoded (and checked) body."""
        if self._stop.is_set() or self.closed:
            return False
        if not self._out.push(prio, msg_type, body):
            return False
        self._wake.set()
        return True

    # ---- incoming ------------------------------------------------------------------

    def _report(
        self,
        kind: Misbehaviour,
        reason: str,
        attributed: bool,
        msg_type: int | None = None,
        data: bytes | None = None,
    ) -> None:
        try:
            self.on_misbehaviour(self, kind, reason, attributed, msg_type, data)
        except Exception:
            log.exception("misbehaviour hook failed for %r", self)

    def _flooding(self, now: float, what: str) -> None:
        if now - self._last_flood >= self.limits.flood_report_interval_s:
            self._last_flood = now
            self._report(Misbehaviour.FLOODING, what, True)

    def receive_frame(self, data: bytes) -> None:
        """Judge one frame read from the stream (the reader task calls it)."""
        now = time.monotonic()
        self.frames_in += 1
        if not self._in_bucket.take(1, now):
            self.dropped_in += 1
            self._flooding(now, "frame rate above the limit")
            return
        assert self.session is not None
        v = auth.open_frame(
            data,
            link_keys=self.session.recv_key,
            replay=self._replay,
            my_id=self.identity.id,
            max_len=wireframe.MAX_TCP_FRAME,
        )
        if not v.accepted:
            self._rejected(v, data)
            return
        f = v.frame
        if f.source != self.session.peer_id:
            self._report(
                Misbehaviour.PROTOCOL_VIOLATION, "frame source is not the peer", True, f.type, data
            )
            return
        t = f.type
        if t == messages.PING:
            self.send(messages.PONG, {0: v.value[0]}, PRIO_CONTROL)
            return
        if t == messages.PONG:
            if v.value[0] == self._ping_nonce:
                ms = (now - self._ping_sent) * 1000.0
                self.latency_ms = ms
                if self.min_ping_ms is None or ms < self.min_ping_ms:
                    self.min_ping_ms = ms
                self._ping_nonce = None
        elif t == messages.PEX_REQUEST:
            if not self._pex_bucket.take(1, now):
                self.dropped_in += 1
                self._flooding(now, "PEX requests above the limit")
                return
        elif t in (messages.HELLO, messages.AUTH):
            self._report(
                Misbehaviour.PROTOCOL_VIOLATION, "handshake message in session", True, t, data
            )
            return
        try:
            self.on_message(self, t, v.value, data)
        except Exception:
            log.exception("message hook failed for %r on type 0x%02x", self, t)

    def _rejected(self, v: auth.Verdict, data: bytes) -> None:
        self.rejected_in += 1
        msg_type = v.frame.type if v.frame is not None else None
        code = auth.blame(v)  # the session tag proves the sender
        if code is not None:
            self._report(Misbehaviour.from_code(code), v.reason or "", True, msg_type, data)
            return
        reason = v.reason
        if reason == auth.R_UNKNOWN_TYPE:
            self.unknown_in += 1
            return
        if reason == auth.R_REPLAY:
            kind = Misbehaviour.REPLAY
        elif reason == auth.R_BAD_TAG:
            kind = Misbehaviour.BAD_TAG
        else:  # bad_frame, no_key (no LINK flag), own_frame
            kind = Misbehaviour.MALFORMED_FRAME
        self._report(kind, reason or "", False, msg_type, data)
