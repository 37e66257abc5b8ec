"""PeerSession over real loopback TCP: handshake, tagged frames, blame, limits, clean close."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loragate.bans import BanManager, BanPolicy, Misbehaviour
from loragate.ratelimit import TokenBucket
from loragate.session import (
    PRIO_BLOCK,
    PRIO_CONTROL,
    PRIO_TX,
    HandshakeFailed,
    PeerSession,
    SendQueue,
    SessionLimits,
)
from loragate.transport import FrameStream
from lorawire import auth, messages
from lorawire import frame as wireframe
from lorawire.codec import packb
from lorawire.identity import Identity
from lorawire.record import KIND_GATEWAY, encode_record


def make_node(port: int = 9000) -> tuple[Identity, bytes]:
    ident = Identity.generate()
    rec = encode_record(
        {"kind": KIND_GATEWAY, "seq": 1, "endpoints": [(bytes([127, 0, 0, 1]), port)]}, ident
    )
    return ident, rec


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[int, object]] = []
        self.blame: list[tuple[Misbehaviour, bool, bytes | None, str]] = []
        self.closed: list[str | None] = []
        self.got = asyncio.Event()

    def on_message(self, s: PeerSession, t: int, value: object, data: bytes) -> None:
        self.messages.append((t, value))
        self.got.set()

    def on_misbehaviour(self, s, kind, reason, attributed, msg_type, data) -> None:  # noqa: ANN001
        self.blame.append((kind, attributed, s.node_id if attributed else None, s.host))
        self.got.set()

    def on_closed(self, s: PeerSession) -> None:
        self.closed.append(s.close_reason)


async def connect_pair(
    *,
    server_limits: SessionLimits | None = None,
    frame_timeout: float = 5.0,
    ping_interval: float = 30.0,
) -> tuple[PeerSession, PeerSession, Recorder, Recorder, asyncio.Server]:
    a_id, a_rec = make_node()
    b_id, b_rec = make_node()
    srv_rec, cli_rec = Recorder(), Recorder()
    accepted: asyncio.Future[PeerSession] = asyncio.get_running_loop().create_future()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        stream = FrameStream(r, w, frame_timeout=frame_timeout, idle_timeout=30)
        s = PeerSession(
            stream,
            b_id,
            b_rec,
            outbound=False,
            limits=server_limits,
            ping_interval_s=ping_interval,
            on_message=srv_rec.on_message,
            on_misbehaviour=srv_rec.on_misbehaviour,
            on_closed=srv_rec.on_closed,
        )
        try:
            await s.handshake()
        except HandshakeFailed as exc:
            accepted.set_exception(exc)
            await stream.close()
            return
        s.start()
        accepted.set_result(s)

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    client = PeerSession(
        FrameStream(r, w),
        a_id,
        a_rec,
        outbound=True,
        expected_id=b_id.id,
        ping_interval_s=ping_interval,
        on_message=cli_rec.on_message,
        on_misbehaviour=cli_rec.on_misbehaviour,
        on_closed=cli_rec.on_closed,
    )
    await client.handshake()
    client.start()
    srv = await asyncio.wait_for(accepted, 5)
    return client, srv, cli_rec, srv_rec, server


def raw_frame(session: PeerSession, msg_type: int, body: bytes, seq: int) -> bytes:
    assert session.session is not None
    f = wireframe.Frame(msg_type, session.identity.id, seq, flags=wireframe.FLAG_LINK)
    f.hop_limit = 0
    return auth.seal_frame(
        f, body, link_key=session.session.send_key, max_len=wireframe.MAX_TCP_FRAME
    )


async def write_raw(session: PeerSession, data: bytes) -> None:
    session.stream.writer.write(len(data).to_bytes(4, "big") + data)
    await session.stream.writer.drain()


async def wait_for(pred, timeout: float = 5.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_handshake_and_exchange() -> None:
    client, srv, cli_rec, srv_rec, server = await connect_pair()
    try:
        assert client.node_id == srv.identity.id
        assert srv.node_id == client.identity.id
        assert client.kind == "gateway"
        client.send(messages.TX, {0: b"hello"}, PRIO_TX)
        srv.send(messages.BLOCK, {0: b"block!"}, PRIO_BLOCK)
        await wait_for(lambda: any(t == messages.TX for t, _ in srv_rec.messages))
        await wait_for(lambda: any(t == messages.BLOCK for t, _ in cli_rec.messages))
        assert (messages.TX, {0: b"hello"}) in srv_rec.messages
        # The first ping goes out at start: both sides learn the latency.
        await wait_for(lambda: client.latency_ms is not None and srv.latency_ms is not None)
        assert client.min_ping_ms is not None and client.min_ping_ms < 1000
        assert srv_rec.blame == [] and cli_rec.blame == []
    finally:
        await client.close()
        await srv.close()
        server.close()


async def test_handshake_timeout_against_silent_peer() -> None:
    silent: list[asyncio.StreamWriter] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        silent.append(w)  # accept and say nothing

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ident, rec = make_node()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    s = PeerSession(FrameStream(r, w), ident, rec, outbound=True, handshake_timeout_s=0.3)
    t0 = time.monotonic()
    with pytest.raises(HandshakeFailed) as err:
        await s.handshake()
    assert err.value.reason == "timeout"
    assert 0.25 < time.monotonic() - t0 < 2.0
    await s.close()
    for x in silent:
        x.close()
    server.close()


async def test_pinned_id_mismatch_fails() -> None:
    client, srv, _, _, server = await connect_pair()
    await client.close()
    await srv.close()
    port = server.sockets[0].getsockname()[1]
    ident, rec = make_node()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    s = PeerSession(FrameStream(r, w), ident, rec, outbound=True, expected_id=b"\x01" * 8)
    with pytest.raises(HandshakeFailed) as err:
        await s.handshake()
    assert err.value.reason == "id_mismatch"
    await s.close()
    server.close()


async def test_tampered_frame_rejected_and_attributed() -> None:
    client, srv, _, srv_rec, server = await connect_pair()
    try:
        base = (client.next_seq + 1000) & 0xFFFF
        good = raw_frame(client, messages.TX, messages.encode_tx(b"payload"), base)
        bad = bytearray(good)
        bad[-10] ^= 0x01  # flip one body bit: the tag no longer matches
        await write_raw(client, bytes(bad))
        await wait_for(lambda: srv_rec.blame)
        kind, attributed, node, host = srv_rec.blame[0]
        assert kind == Misbehaviour.BAD_TAG and not attributed and node is None
        assert host == "127.0.0.1"
        assert not any(t == messages.TX for t, _ in srv_rec.messages)
        # A valid tag over a malformed body is the sender's fault: node id and address.
        srv_rec.blame.clear()
        await write_raw(client, raw_frame(client, messages.TX, packb({0: 5}), (base + 1) & 0xFFFF))
        await wait_for(lambda: srv_rec.blame)
        kind, attributed, node, host = srv_rec.blame[0]
        assert kind == Misbehaviour.MALFORMED_FRAME and attributed
        assert node == client.identity.id
        # A replayed frame is dropped and held against the address.
        srv_rec.blame.clear()
        await write_raw(client, good)
        await write_raw(client, good)
        await wait_for(lambda: srv_rec.blame)
        assert srv_rec.blame[0][0] == Misbehaviour.REPLAY and not srv_rec.blame[0][1]
        assert sum(1 for t, _ in srv_rec.messages if t == messages.TX) == 1
    finally:
        await client.close()
        await srv.close()
        server.close()


async def test_flood_leads_to_ban_and_disconnect() -> None:
    limits = SessionLimits(frame_rate=50, frame_burst=20, flood_report_interval_s=0.05)
    client, srv, _, srv_rec, server = await connect_pair(server_limits=limits)
    bans = BanManager(BanPolicy(threshold=100))

    def hook(s, kind, reason, attributed, msg_type, data) -> None:  # noqa: ANN001
        new = bans.misbehaving(
            kind, node_id=s.node_id if attributed else None, host=s.host, reason=reason
        )
        if new:
            s.abort("banned")

    srv.on_misbehaviour = hook
    try:
        for i in range(60):
            if srv.closed:
                break
            for j in range(50):
                client.send(messages.PING, {0: i * 50 + j}, PRIO_CONTROL)
            await asyncio.sleep(0.06)
        await asyncio.wait_for(srv.wait_closed(), 5)
        assert srv.close_reason == "banned"
        assert bans.is_banned(node_id=client.identity.id)
        assert bans.is_banned(host="127.0.0.1")
        assert srv.dropped_in > 0
        assert bans.evidence(bans.bans()[0].target)[0].misbehaviour == "flooding"
        await wait_for(lambda: client.closed)  # the server hung up
    finally:
        await client.close()
        await srv.close()
        server.close()


async def test_slow_loris_mid_frame_is_dropped() -> None:
    client, srv, _, srv_rec, server = await connect_pair(frame_timeout=0.3)
    try:
        t0 = time.monotonic()
        client.stream.writer.write(b"\x00\x00\x01\x00" + b"\x10" * 3)  # 256 announced, 3 sent
        await client.stream.writer.drain()
        await asyncio.wait_for(srv.wait_closed(), 3)
        assert srv.close_reason == "stalled"
        assert time.monotonic() - t0 < 2.5
    finally:
        await client.close()
        server.close()


async def test_absurd_length_prefix_is_a_protocol_violation() -> None:
    client, srv, _, srv_rec, server = await connect_pair()
    try:
        client.stream.writer.write(b"\x7f\xff\xff\xff")
        await client.stream.writer.drain()
        await asyncio.wait_for(srv.wait_closed(), 3)
        assert srv.close_reason == "bad_length"
        assert srv_rec.blame and srv_rec.blame[0][0] == Misbehaviour.PROTOCOL_VIOLATION
        assert srv_rec.blame[0][1] is False  # framing is not authenticated: address only
    finally:
        await client.close()
        server.close()


async def test_close_leaves_no_tasks() -> None:
    before = set(asyncio.all_tasks())
    client, srv, cli_rec, srv_rec, server = await connect_pair()
    client.send(messages.TX, {0: b"x"}, PRIO_TX)
    await wait_for(lambda: srv_rec.messages)
    assert len(asyncio.all_tasks()) > len(before)
    await client.close("test")
    await asyncio.wait_for(srv.wait_closed(), 3)  # EOF on the other side
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0)
    assert set(asyncio.all_tasks()) - before == set()
    assert cli_rec.closed == ["test"] and srv_rec.closed == ["eof"]
    assert client.closed and srv.closed
    assert not client.send(messages.TX, {0: b"late"}, PRIO_TX)


def test_outgoing_queue_priorities_and_drops() -> None:
    q = SendQueue(capacity=4)
    for i in range(4):
        assert q.push(PRIO_TX, messages.TX, bytes([i]))
    assert q.push(PRIO_BLOCK, messages.BLOCK, b"b")  # pushes out the oldest tx
    assert q.push(PRIO_CONTROL, messages.PING, b"p")
    assert q.dropped == 2 and len(q) == 4
    assert [q.pop() for _ in range(4)] == [
        (messages.PING, b"p"),
        (messages.BLOCK, b"b"),
        (messages.TX, bytes([2])),
        (messages.TX, bytes([3])),
    ]
    # Full of control messages: a tx is refused rather than pushing control out.
    for i in range(4):
        q.push(PRIO_CONTROL, messages.PING, bytes([i]))
    assert not q.push(PRIO_TX, messages.TX, b"t")
    assert len(q) == 4 and q.dropped == 3


def test_token_bucket_basics() -> None:
    b = TokenBucket(rate=2, burst=3, now=0.0)
    assert [b.take(1, 0.0) for _ in range(4)] == [True, True, True, False]
    assert not b.take(1, 0.4)
    assert b.take(1, 0.5)
    assert b.available(100.0) == 3.0
    assert not b.take(4, 100.0)
    with pytest.raises(ValueError):
        TokenBucket(rate=-1, burst=1)


@given(
    st.lists(
        st.tuples(st.floats(0, 5, allow_nan=False), st.floats(0.1, 10, allow_nan=False)),
        max_size=60,
    ),
    st.floats(0.1, 100),
    st.floats(1, 50),
)
def test_token_bucket_bounds(steps: list[tuple[float, float]], rate: float, burst: float) -> None:
    b = TokenBucket(rate, burst, now=0.0)
    now = 0.0
    granted = 0.0
    for dt, n in steps:
        now += dt
        if b.take(n, now):
            granted += n
        assert 0.0 <= b.tokens <= burst
    # Never more than the burst plus what the rate refilled.
    assert granted <= burst + rate * now + 1e-6


def _established_session() -> tuple[PeerSession, list, list]:  # noqa: ANN001
    from lorawire.handshake import Session
    from lorawire.record import decode_record

    me, my_rec = make_node()
    peer, peer_rec = make_node()

    class _W:
        def get_extra_info(self, name: str) -> tuple[str, int]:
            return ("127.0.0.9", 1)

    seen_msgs: list = []
    blamed: list = []
    s = PeerSession(
        FrameStream(None, _W()),  # type: ignore[arg-type]
        me,
        my_rec,
        outbound=False,
        limits=SessionLimits(frame_rate=1e9, frame_burst=1e9, pex_rate=1e9, pex_burst=1e9),
        on_message=lambda sess, t, v, d: seen_msgs.append(t),
        on_misbehaviour=lambda sess, k, r, a, t, d: blamed.append((k, a)),
    )
    s.session = Session(b"k" * 16, b"r" * 16, decode_record(peer_rec), b"")
    s.send = lambda *a, **k: True  # type: ignore[method-assign]  # PONGs go nowhere
    return s, seen_msgs, blamed


@given(st.lists(st.binary(max_size=80), max_size=30), st.integers(0, 0xFFFF))
def test_any_bytes_are_judged_never_crash(blobs: list[bytes], seq: int) -> None:
    """Arbitrary frames (and mutated valid ones) never raise; each is either delivered,
    counted as unknown, or blamed exactly once; blame on the node id only with a valid tag."""
    s, seen_msgs, blamed = _established_session()
    peer_id = s.session.peer_id  # type: ignore[union-attr]
    valid = []
    for i, blob in enumerate(blobs):
        f = wireframe.Frame(messages.TX, peer_id, (seq + i) & 0xFFFF, flags=wireframe.FLAG_LINK)
        f.hop_limit = 0
        valid.append(
            auth.seal_frame(f, packb({0: blob or b"x"}), link_key=b"r" * 16, max_len=0xFFFF)
        )
    inputs = []
    for blob, good in zip(blobs, valid, strict=True):
        inputs.append(blob)
        inputs.append(good)
        if blob:
            inputs.append(good[: len(blob) % len(good)] + blob)
    for data in inputs:
        s.receive_frame(data)
    assert len(seen_msgs) + len(blamed) + s.unknown_in == len(inputs)
    assert seen_msgs.count(messages.TX) >= 1 if blobs else True
    for kind, attributed in blamed:
        if attributed:
            assert kind in (Misbehaviour.MALFORMED_FRAME, Misbehaviour.PROTOCOL_VIOLATION)
