"""HMAC-SHA256 (RFC 2104) over hashlib.sha256, for runtimes without an `hmac` module.

MicroPython has no `hmac`, so the construction is written out here; on CPython the
stdlib `hmac` (OpenSSL) is used instead, chosen at import time. Both give identical
bytes (tests run the RFC 4231 vectors on both runtimes).

`compare(a, b)` compares two byte strings without an early exit on the first
difference ("constant-time-ish": Python bytecode promises nothing stronger), so a tag
check does not tell an attacker how many leading bytes were right.
"""

import hashlib
import sys

BLOCK_SIZE = 64
DIGEST_SIZE = 32

_CPYTHON = sys.implementation.name == "cpython"
FAST = False
if _CPYTHON:
    try:
        import hmac as _hmac

        FAST = True
    except ImportError:
        pass

_IPAD = bytes(0x36 for _ in range(BLOCK_SIZE))
_OPAD = bytes(0x5C for _ in range(BLOCK_SIZE))


def _check(v, what):
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise TypeError(what + " must be bytes")


def _xor_pad(key, pad):
    out = bytearray(pad)
    for i in range(len(key)):
        out[i] ^= key[i]
    return bytes(out)


def pure_hmac_sha256(key, msg):
    """HMAC-SHA256(key, msg) written out per RFC 2104 (used on MicroPython)."""
    _check(key, "key")
    _check(msg, "message")
    key = bytes(key)
    if len(key) > BLOCK_SIZE:
        key = hashlib.sha256(key).digest()
    inner = hashlib.sha256(_xor_pad(key, _IPAD))
    inner.update(bytes(msg))
    outer = hashlib.sha256(_xor_pad(key, _OPAD))
    outer.update(inner.digest())
    return outer.digest()


def pure_compare(a, b):
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


if FAST:

    def hmac_sha256(key, msg):
        """HMAC-SHA256(key, msg): 32 bytes."""
        _check(key, "key")
        _check(msg, "message")
        return _hmac.new(bytes(key), bytes(msg), "sha256").digest()

    def compare(a, b):
        """True when the byte strings are equal; no early exit on a mismatch."""
        return _hmac.compare_digest(bytes(a), bytes(b))

else:
    hmac_sha256 = pure_hmac_sha256
    compare = pure_compare
