"""TCP handshake: HELLO/AUTH state machines, session keys, tampering, replay, reflection."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import auth, codec, compose, frame, handshake, messages, record
from lorawire.handshake import HandshakeError, Initiator, Responder
from lorawire.identity import Identity

ALICE = Identity(bytes(range(32)))
BOB = Identity(bytes(range(1, 33)))
CAROL = Identity(bytes(range(2, 34)))
REC = {
    ident.id: record.encode_record(
        {"seq": 1, "kind": record.KIND_GATEWAY, "endpoints": [(b"\x7f\x00\x00\x01", 8333)]},
        ident,
    )
    for ident in (ALICE, BOB, CAROL)
}

Msg = tuple[int, bytes]


def _pair(
    a: Identity = ALICE, b: Identity = BOB, expected: bytes | None = None
) -> tuple[Initiator, Responder]:
    return Initiator(a, REC[a.id], expected_id=expected), Responder(b, REC[b.id])


def _run(i: Initiator, r: Responder) -> list[Msg]:
    """Full handshake; returns the four messages in order HELLO_I, HELLO_R, AUTH_R, AUTH_I."""
    hello_i = i.start()[0]
    hello_r, auth_r = r.receive(*hello_i)
    assert i.receive(*hello_r) == []
    (auth_i,) = i.receive(*auth_r)
    assert r.receive(*auth_i) == []
    return [hello_i, hello_r, auth_r, auth_i]


def test_happy_path_gives_matching_direction_keys() -> None:
    i, r = _pair()
    msgs = _run(i, r)
    assert i.done and r.done
    assert [m[0] for m in msgs] == [
        handshake.HELLO,
        handshake.HELLO,
        handshake.AUTH,
        handshake.AUTH,
    ]
    si, sr = i.session, r.session
    assert si is not None and sr is not None
    assert si.send_key == sr.recv_key and si.recv_key == sr.send_key
    assert si.send_key != si.recv_key and len(si.send_key) == 16
    assert si.peer_id == BOB.id and sr.peer_id == ALICE.id
    assert si.peer_record.endpoints == ((b"\x7f\x00\x00\x01", 8333),)
    # the documented construction
    th = hashlib.sha256(msgs[0][1] + msgs[1][1]).digest()
    assert si.transcript_hash == sr.transcript_hash == th
    from lorawire.x25519 import ed25519_pk_to_x25519, x25519

    shared = x25519(ALICE.x_secret(), ed25519_pk_to_x25519(BOB.public))
    k = hmac.new(shared, b"lorachain session v1" + th, hashlib.sha256).digest()
    assert si.send_key == k[:16] and si.recv_key == k[16:]
    # HELLO / AUTH bodies pass the messages module's shape check
    for t, body in msgs:
        messages.decode_body(t, body)


def test_fresh_challenges_give_fresh_keys() -> None:
    i1, r1 = _pair()
    _run(i1, r1)
    i2, r2 = _pair()
    _run(i2, r2)
    assert i1.session is not None and i2.session is not None
    assert i1.session.send_key != i2.session.send_key


def test_session_keys_tag_frames_and_reflection_fails() -> None:
    i, r = _pair()
    _run(i, r)
    assert i.session is not None and r.session is not None
    data = compose.seal_message(
        messages.PING,
        {0: 1},
        ALICE.id,
        1,
        link_key=i.session.send_key,
        link=True,
        max_len=frame.MAX_TCP_FRAME,
    )
    v = auth.open_frame(data, None, r.session.recv_key, max_len=frame.MAX_TCP_FRAME)
    assert v.accepted and v.attributed
    # reflected back to Alice: her receive key is the other direction's
    v = auth.open_frame(data, None, i.session.recv_key, max_len=frame.MAX_TCP_FRAME)
    assert v.reason == auth.R_BAD_TAG


def test_frames_round_trip() -> None:
    i, r = _pair()
    out_r = r.receive_frame(i.start_frames()[0])
    assert len(out_r) == 2
    assert i.receive_frame(out_r[0]) == []
    (auth_i,) = i.receive_frame(out_r[1])
    assert r.receive_frame(auth_i) == []
    assert frame.decode(auth_i, frame.MAX_TCP_FRAME).source == ALICE.id
    assert i.done and r.done


def test_frame_source_must_match_the_presented_identity() -> None:
    i, r = _pair()
    body = i.start()[0][1]
    spoofed = handshake.to_frame(handshake.HELLO, body, CAROL.id, 0)
    with pytest.raises(HandshakeError) as exc:
        r.receive_frame(spoofed)
    assert exc.value.reason == handshake.MALFORMED


def test_expected_id_pinning() -> None:
    i, r = _pair(expected=CAROL.id)
    with pytest.raises(HandshakeError) as exc:
        _run(i, r)
    assert exc.value.reason == handshake.ID_MISMATCH
    i, r = _pair(expected=BOB.id)
    _run(i, r)
    assert i.done


def test_wrong_key_signature() -> None:
    """Bob's HELLO, but the AUTH is signed by Carol: refused."""
    i, r = _pair()
    hello_i = i.start()[0]
    hello_r, _ = r.receive(*hello_i)
    i.receive(*hello_r)
    th = hashlib.sha256(hello_i[1] + hello_r[1]).digest()
    forged = handshake.encode_auth(CAROL.sign(b"LCH1" + th + handshake.ROLE_RESPONDER))
    with pytest.raises(HandshakeError) as exc:
        i.receive(handshake.AUTH, forged)
    assert exc.value.reason == handshake.BAD_SIGNATURE
    assert i.failed and i.session is None
    with pytest.raises(HandshakeError) as exc:
        i.receive(handshake.AUTH, forged)
    assert exc.value.reason == handshake.FAILED


def test_role_byte_prevents_signature_reflection() -> None:
    """Bob's own AUTH (role responder) fed back to him as the initiator's AUTH fails,
    even if an attacker relays Alice's HELLO."""
    i, r = _pair()
    hello_i = i.start()[0]
    _, auth_r = r.receive(*hello_i)
    with pytest.raises(HandshakeError) as exc:
        r.receive(*auth_r)
    assert exc.value.reason == handshake.BAD_SIGNATURE


def test_reflecting_the_initiators_hello_fails() -> None:
    i = Initiator(ALICE, REC[ALICE.id])
    hello = i.start()[0]
    with pytest.raises(HandshakeError) as exc:
        i.receive(*hello)
    assert exc.value.reason == handshake.REFLECTED
    # and a responder fed its own identity
    r = Responder(ALICE, REC[ALICE.id])
    with pytest.raises(HandshakeError) as exc:
        r.receive(*Initiator(ALICE, REC[ALICE.id]).start()[0])
    assert exc.value.reason == handshake.REFLECTED


def test_replayed_messages_from_a_recorded_session_fail() -> None:
    old = _run(*_pair())
    # replay Alice's HELLO and AUTH to Bob: Bob's new challenge is in the new transcript
    r = Responder(BOB, REC[BOB.id])
    r.receive(*old[0])
    with pytest.raises(HandshakeError) as exc:
        r.receive(*old[3])
    assert exc.value.reason == handshake.BAD_SIGNATURE and r.session is None
    # replay Bob's HELLO and AUTH to a new initiator
    i = Initiator(ALICE, REC[ALICE.id])
    i.start()
    i.receive(*old[1])
    with pytest.raises(HandshakeError) as exc:
        i.receive(*old[2])
    assert exc.value.reason == handshake.BAD_SIGNATURE and i.session is None


def test_bad_record_in_hello() -> None:
    value = codec.unpackb(REC[BOB.id])
    value[record.K_SERVICES] = 1  # changed after signing
    hello = handshake.encode_hello(value, bytes(32))
    i = Initiator(ALICE, REC[ALICE.id])
    i.start()
    with pytest.raises(HandshakeError) as exc:
        i.receive(handshake.HELLO, hello)
    assert exc.value.reason == handshake.BAD_RECORD


def test_out_of_order_and_malformed() -> None:
    i, r = _pair()
    with pytest.raises(HandshakeError) as exc:
        r.receive(handshake.AUTH, handshake.encode_auth(bytes(64)))
    assert exc.value.reason == handshake.UNEXPECTED
    i, r = _pair()
    with pytest.raises(HandshakeError) as exc:
        r.receive(messages.PING, messages.encode_ping(1))
    assert exc.value.reason == handshake.UNEXPECTED
    for body in (b"", b"\xc1", codec.packb({0: 1}), codec.packb({0: {}, 1: bytes(32)})):
        with pytest.raises(HandshakeError) as exc:
            Responder(BOB, REC[BOB.id]).receive(handshake.HELLO, body)
        assert exc.value.reason == handshake.MALFORMED


def test_constructor_refuses_someone_elses_record() -> None:
    with pytest.raises(ValueError):
        Initiator(ALICE, REC[BOB.id])


@settings(max_examples=300)
@given(st.integers(0, 3), st.data())
def test_any_bit_flip_in_any_message_fails_the_handshake(which: int, data: st.DataObject) -> None:
    i, r = _pair()
    sent = [i.start()[0]]

    def flip(msg: Msg) -> Msg:
        bit = data.draw(st.integers(0, len(msg[1]) * 8 - 1))
        body = bytearray(msg[1])
        body[bit // 8] ^= 1 << (bit % 8)
        return msg[0], bytes(body)

    with pytest.raises(HandshakeError):
        hello_i = flip(sent[0]) if which == 0 else sent[0]
        hello_r, auth_r = r.receive(*hello_i)
        i.receive(*(flip(hello_r) if which == 1 else hello_r))
        (auth_i,) = i.receive(*(flip(auth_r) if which == 2 else auth_r))
        r.receive(*(flip(auth_i) if which == 3 else auth_i))
    assert r.session is None
    if which < 3:
        assert i.session is None


@settings(max_examples=300)
@given(st.binary(max_size=300), st.sampled_from([handshake.HELLO, handshake.AUTH, 0x04]))
def test_random_input_raises_only_handshake_error(body: bytes, msg_type: int) -> None:
    r = Responder(BOB, REC[BOB.id])
    with pytest.raises(HandshakeError):
        r.receive(msg_type, body)
    with pytest.raises(HandshakeError) as exc:
        Responder(BOB, REC[BOB.id]).receive_frame(body)
    assert exc.value.reason != handshake.FAILED
