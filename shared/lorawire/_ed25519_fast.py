"""The `cryptography` (OpenSSL) back end of lorawire.ed25519, CPython only.

OpenSSL applies the same cofactorless equation as the pure path but accepts a
non-canonical or small-order public key and, depending on its version, S >= L; the byte
checks here refuse those first, so both paths give the same answer on every input.
Kept out of lorawire.ed25519 so a board never loads it.
"""

from binascii import unhexlify

from cryptography.exceptions import InvalidSignature as _Invalid
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey as _Private
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey as _Public

from lorawire import _ed25519_pure as _pure

_L = _pure.L

# Canonical encodings of the 8 points of small order; with y >= p refused separately,
# these are every encoding of such a point that decodes at all.
SMALL_ORDER_ENCODINGS = (
    bytes(32),  # (sqrt(-1), 0), order 4
    b"\x00" * 31 + b"\x80",  # (-sqrt(-1), 0), order 4
    b"\x01" + b"\x00" * 31,  # identity
    b"\xec" + b"\xff" * 30 + b"\x7f",  # (0, -1), order 2
    unhexlify("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    unhexlify("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    unhexlify("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    unhexlify("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
)

# (0, 1) and (0, -1) with the sign bit set: x = 0 cannot be "negative" (RFC 8032 §5.1.3)
_NEGATIVE_ZERO_X = (
    b"\x01" + b"\x00" * 30 + b"\x80",
    b"\xec" + b"\xff" * 31,
)


def _is_bytes(v):
    return isinstance(v, (bytes, bytearray, memoryview))


def _y_non_canonical(public):
    """True when the y coordinate (low 255 bits, little-endian) is >= p."""
    top = public[31] & 0x7F
    if top != 0x7F:
        return False
    for i in range(30, 0, -1):
        if public[i] != 0xFF:
            return False
    return public[0] >= 0xED


def acceptable_public_key(public):
    """True when public is 32 bytes that the verification rule accepts as a key A.

    Byte checks only: the pure path additionally finds out whether y has a square root.
    """
    if not _is_bytes(public) or len(public) != 32:
        return False
    public = bytes(public)
    if _y_non_canonical(public):
        return False
    if public in SMALL_ORDER_ENCODINGS or public in _NEGATIVE_ZERO_X:
        return False
    return True


def _s_in_range(signature):
    return int.from_bytes(signature[32:], "little") < _L


def public_key(seed):
    """Ed25519 public key (32 bytes) of a 32-byte seed."""
    _pure._check_seed(seed)
    key = _Private.from_private_bytes(bytes(seed))
    return key.public_key().public_bytes_raw()


def sign(seed, message):
    """Ed25519 signature (64 bytes) of message under the 32-byte seed."""
    _pure._check_seed(seed)
    if not _is_bytes(message):
        raise TypeError("message must be bytes")
    return _Private.from_private_bytes(bytes(seed)).sign(bytes(message))


def verify(public, message, signature):
    """True when signature is valid for message under public; False for any bad input."""
    if not (_is_bytes(public) and _is_bytes(message) and _is_bytes(signature)):
        return False
    if len(public) != 32 or len(signature) != 64:
        return False
    signature = bytes(signature)
    if not acceptable_public_key(public) or not _s_in_range(signature):
        return False
    try:
        _Public.from_public_bytes(bytes(public)).verify(signature, bytes(message))
    except (_Invalid, ValueError):
        return False
    return True
