"""Signed-challenge handshake for TCP links, as a sans-IO state machine.

    initiator                                   responder
    HELLO_I {0: record_I, 1: challenge_I}  -->
                                           <--  HELLO_R {0: record_R, 1: challenge_R}
                                           <--  AUTH_R  {0: sig_R}
    AUTH_I  {0: sig_I}                     -->

* record_X is X's signed peer record (lorawire.record), checked and signature-verified;
  challenge_X is 32 fresh random bytes.
* th = SHA-256(HELLO_I body || HELLO_R body): the two encoded bodies, initiator's first
  (msgpack values are self-delimiting, so the concatenation is unambiguous). It holds
  both challenges, so every signature is bound to this run.
* sig_X = Ed25519(X, b"LCH1" || th || role), role 0x01 initiator, 0x02 responder: a
  signature cannot be reflected to the other side.
* K = HMAC-SHA256(key = X25519(my_x_secret, their_x_public), msg = b"lorachain session v1"
  || th); K[:16] tags frames initiator->responder, K[16:] responder->initiator, so a
  frame reflected back to its sender fails its tag check.
* A peer presenting our own id is refused ("reflected"); an initiator that expects a
  node id (pinning) refuses any other ("id_mismatch") before verifying anything.

Messages are (msg_type, body bytes) pairs; `receive_frame` / the `*_frames` helpers do
the same with whole frames (HELLO 0x30, AUTH 0x31) tagged with the public constant
HANDSHAKE_KEY: that tag is only a checksum, the handshake authenticates itself.
Failures raise HandshakeError (a DecodeError) with `reason`; the machine then refuses
any further input.
"""

import hashlib
import os

from lorawire import ed25519
from lorawire import frame as _frame
from lorawire.codec import packb, unpackb
from lorawire.errors import DecodeError
from lorawire.hmac256 import hmac_sha256
from lorawire.record import Record, RecordError, decode_record, verify_record

HELLO = 0x30
AUTH = 0x31
HANDSHAKE_KEY = b"lorachain handshake v1"
AUTH_DOMAIN = b"LCH1"
SESSION_INFO = b"lorachain session v1"
ROLE_INITIATOR = b"\x01"
ROLE_RESPONDER = b"\x02"
CHALLENGE_LEN = 32
SIGNATURE_LEN = 64
MAX_BODY = 256

MALFORMED = "malformed"
UNEXPECTED = "unexpected"
REFLECTED = "reflected"
ID_MISMATCH = "id_mismatch"
BAD_RECORD = "bad_record"
BAD_SIGNATURE = "bad_signature"
BAD_KEY = "bad_key"
FAILED = "failed"

_WAIT_HELLO = 0
_WAIT_AUTH = 1
_DONE = 2
_FAILED = 3


class HandshakeError(DecodeError):
    def __init__(self, reason, detail=""):
        super().__init__("handshake: %s%s" % (reason, (": " + detail) if detail else ""))
        self.reason = reason


class Session:
    """A finished handshake: tag outgoing frames with send_key, check incoming ones with
    recv_key (lorawire.auth with the LINK flag)."""

    __slots__ = ("send_key", "recv_key", "peer_record", "transcript_hash")

    def __init__(self, send_key, recv_key, peer_record, transcript_hash):
        self.send_key = send_key
        self.recv_key = recv_key
        self.peer_record = peer_record
        self.transcript_hash = transcript_hash

    @property
    def peer_id(self):
        return self.peer_record.id


def encode_hello(record_value, challenge):
    return packb({0: record_value, 1: challenge})


def encode_auth(signature):
    return packb({0: signature})


def _parse(body, keys):
    if not isinstance(body, (bytes, bytearray, memoryview)) or len(body) > MAX_BODY:
        raise HandshakeError(MALFORMED, "body must be bytes of at most %d" % MAX_BODY)
    try:
        value = unpackb(bytes(body))
    except DecodeError as exc:
        raise HandshakeError(MALFORMED, str(exc)) from None
    if not isinstance(value, dict) or len(value) != len(keys):
        raise HandshakeError(MALFORMED, "body must be a map with keys %r" % (keys,))
    for key in keys:
        if key not in value:
            raise HandshakeError(MALFORMED, "key %d missing" % key)
    return value


class _Side:
    _my_role = b""
    _peer_role = b""

    def __init__(self, identity, record, expected_id=None, challenge=None):
        if not isinstance(record, Record):
            record = decode_record(record)
        if record.public != identity.public:
            raise ValueError("record is not signed by this identity")
        if challenge is None:
            challenge = os.urandom(CHALLENGE_LEN)
        if len(challenge) != CHALLENGE_LEN:
            raise ValueError("challenge must be %d bytes" % CHALLENGE_LEN)
        self.identity = identity
        self.record = record
        self.expected_id = None if expected_id is None else bytes(expected_id)
        self.challenge = bytes(challenge)
        self.my_hello = encode_hello(record.value, self.challenge)
        self.peer_hello = b""
        self.peer_record = Record()
        self.session = None
        self._state = _WAIT_HELLO
        self._th = b""

    @property
    def done(self):
        return self._state == _DONE

    @property
    def failed(self):
        return self._state == _FAILED

    def _fail(self, reason, detail=""):
        self._state = _FAILED
        raise HandshakeError(reason, detail)

    def _expect(self, state, msg_type, want_type):
        if self._state == _FAILED:
            raise HandshakeError(FAILED, "the handshake already failed")
        if self._state != state or msg_type != want_type:
            self._fail(UNEXPECTED, "message type 0x%02x now" % msg_type)

    def _take_hello(self, body):
        try:
            value = _parse(body, (0, 1))
            challenge = value[1]
            if not isinstance(challenge, bytes) or len(challenge) != CHALLENGE_LEN:
                raise HandshakeError(MALFORMED, "challenge must be %d bytes" % CHALLENGE_LEN)
            rec = decode_record(value[0])
        except DecodeError as exc:
            self._fail(MALFORMED, str(exc))
        if rec.id == self.identity.id or challenge == self.challenge:
            self._fail(REFLECTED, "the peer presented our own identity or challenge")
        if self.expected_id is not None and rec.id != self.expected_id:
            self._fail(ID_MISMATCH, "expected another node id")
        try:
            verify_record(rec)
        except RecordError as exc:
            self._fail(BAD_RECORD, exc.reason)
        self.peer_hello = bytes(body)
        self.peer_record = rec

    def _transcript(self, hello_i, hello_r):
        h = hashlib.sha256(hello_i)
        h.update(hello_r)
        self._th = h.digest()

    def _auth(self):
        sig = self.identity.sign(AUTH_DOMAIN + self._th + self._my_role)
        return (AUTH, encode_auth(sig))

    def _take_auth(self, body):
        try:
            value = _parse(body, (0,))
        except HandshakeError as exc:
            self._fail(exc.reason, str(exc))
        sig = value[0]
        if not isinstance(sig, bytes) or len(sig) != SIGNATURE_LEN:
            self._fail(MALFORMED, "signature must be %d bytes" % SIGNATURE_LEN)
        if not ed25519.verify(
            self.peer_record.public, AUTH_DOMAIN + self._th + self._peer_role, sig
        ):
            self._fail(BAD_SIGNATURE)

    def _finish(self):
        from lorawire.x25519 import ed25519_pk_to_x25519, x25519

        try:
            shared = x25519(self.identity.x_secret(), ed25519_pk_to_x25519(self.peer_record.public))
        except ValueError as exc:
            self._fail(BAD_KEY, str(exc))
        k = hmac_sha256(shared, SESSION_INFO + self._th)
        i2r, r2i = k[:16], k[16:]
        if self._my_role == ROLE_INITIATOR:
            send, recv = i2r, r2i
        else:
            send, recv = r2i, i2r
        self.session = Session(send, recv, self.peer_record, self._th)
        self._state = _DONE
        return self.session

    def receive(self, msg_type, body):
        raise NotImplementedError

    def receive_frame(self, data):
        """receive() for a whole frame; returns the frames to send. The frame's source id
        must be the id of the record the peer presents."""
        try:
            f = _frame.decode(data, _frame.MAX_TCP_FRAME)
        except DecodeError as exc:
            self._fail(MALFORMED, str(exc))
        if f.flags & _frame.FLAG_LINK or not _check_tag(f, data):
            self._fail(MALFORMED, "bad handshake frame tag")
        out = self.receive(f.type, f.body)
        if f.source != self.peer_record.id:
            self._fail(MALFORMED, "frame source is not the presented identity")
        return [to_frame(t, b, self.identity.id, 0 if t == HELLO else 1) for t, b in out]


def _check_tag(f, data):
    from lorawire.auth import check

    return check(HANDSHAKE_KEY, _frame.tagged_region(data), f.tag)


def to_frame(msg_type, body, source, seq=0):
    """A handshake message as a frame (tagged with the public HANDSHAKE_KEY)."""
    from lorawire.auth import seal_frame

    f = _frame.Frame(msg_type, source, seq, hop_limit=0)
    return seal_frame(f, body, network_key=HANDSHAKE_KEY, max_len=_frame.MAX_TCP_FRAME)


class Initiator(_Side):
    """Connects out. start() gives HELLO_I; receive(HELLO_R) then receive(AUTH_R) gives
    AUTH_I and sets `session`."""

    _my_role = ROLE_INITIATOR
    _peer_role = ROLE_RESPONDER

    def start(self):
        return [(HELLO, self.my_hello)]

    def start_frames(self):
        return [to_frame(HELLO, self.my_hello, self.identity.id, 0)]

    def receive(self, msg_type, body):
        if self._state == _WAIT_HELLO and msg_type == HELLO:
            self._take_hello(body)
            self._transcript(self.my_hello, self.peer_hello)
            self._state = _WAIT_AUTH
            return []
        self._expect(_WAIT_AUTH, msg_type, AUTH)
        self._take_auth(body)
        out = [self._auth()]
        self._finish()
        return out


class Responder(_Side):
    """Accepts. receive(HELLO_I) gives [HELLO_R, AUTH_R]; receive(AUTH_I) sets `session`."""

    _my_role = ROLE_RESPONDER
    _peer_role = ROLE_INITIATOR

    def receive(self, msg_type, body):
        if self._state == _WAIT_HELLO and msg_type == HELLO:
            self._take_hello(body)
            self._transcript(self.peer_hello, self.my_hello)
            self._state = _WAIT_AUTH
            return [(HELLO, self.my_hello), self._auth()]
        self._expect(_WAIT_AUTH, msg_type, AUTH)
        self._take_auth(body)
        self._finish()
        return []
