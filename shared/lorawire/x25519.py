"""X25519 Diffie-Hellman (RFC 7748) and Ed25519 -> X25519 key conversion (as libsodium).

`x25519(scalar32, u32)` and `public_key(scalar32)` use `cryptography` on CPython (chosen
at import time) and a pure Montgomery ladder elsewhere; both are kept so tests can
compare them (`pure_x25519`). The scalar is clamped and the top bit of u masked, as
RFC 7748 §5 says; a non-canonical u (>= p) is taken mod p.

A shared secret of all zeros (the peer sent a point of small order) raises ValueError
on both paths: callers treat it as an invalid peer key.

The pure ladder branches on key bits: it is not constant-time (nothing in bytecode is).

Conversions (pure arithmetic on every runtime):
* `ed25519_pk_to_x25519(pub32)`: u = (1 + y) / (1 - y); ValueError for a key that
  Ed25519 verification would refuse (non-canonical, not on the curve, small order).
* `ed25519_seed_to_x25519(seed32)`: the first 32 bytes of SHA-512(seed), clamped.
"""

import sys

from lorawire import _ed25519_pure as _ed
from lorawire.sha512 import sha512

P = _ed.P
_A24 = 121665
_MASK255 = (1 << 255) - 1

_CPYTHON = sys.implementation.name == "cpython"
_XPrivate = None
_XPublic = None
if _CPYTHON:
    try:
        from cryptography.hazmat.primitives.asymmetric.x25519 import (
            X25519PrivateKey as _XPrivate,
        )
        from cryptography.hazmat.primitives.asymmetric.x25519 import (
            X25519PublicKey as _XPublic,
        )
    except ImportError:
        _XPrivate = None

FAST = _XPrivate is not None
BASE_POINT = b"\x09" + bytes(31)


def _check32(v, what):
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise TypeError(what + " must be bytes")
    if len(v) != 32:
        raise ValueError(what + " must be 32 bytes")
    return bytes(v)


def clamp(scalar):
    """RFC 7748 decodeScalar25519 as an int."""
    k = bytearray(scalar)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return int.from_bytes(k, "little")


def _ladder(k, u):
    p = P
    x1 = u
    x2, z2, x3, z3 = 1, 0, u, 1
    swap = 0
    for t in range(254, -1, -1):
        kt = (k >> t) & 1
        if swap ^ kt:
            x2, x3 = x3, x2
            z2, z3 = z3, z2
        swap = kt
        a = x2 + z2
        aa = a * a % p
        b = x2 - z2
        bb = b * b % p
        e = aa - bb
        da = (x3 - z3) * a % p
        cb = (x3 + z3) * b % p
        x3 = da + cb
        x3 = x3 * x3 % p
        z3 = da - cb
        z3 = x1 * (z3 * z3 % p) % p
        x2 = aa * bb % p
        z2 = e * (aa + _A24 * e) % p
    if swap:
        x2, z2 = x3, z3
    return x2 * _ed._inv(z2) % p


def pure_x25519(scalar, u):
    """X25519(scalar, u) by the pure ladder; ValueError on an all-zero result."""
    scalar = _check32(scalar, "scalar")
    u = _check32(u, "u")
    out = _ladder(clamp(scalar), (int.from_bytes(u, "little") & _MASK255) % P)
    if out == 0:
        raise ValueError("X25519 result is all zeros (small-order peer key)")
    return out.to_bytes(32, "little")


def pure_public_key(scalar):
    return pure_x25519(scalar, BASE_POINT)


if FAST:

    def x25519(scalar, u):
        """X25519(scalar, u) as 32 bytes; ValueError on an all-zero result."""
        scalar = _check32(scalar, "scalar")
        u = _check32(u, "u")
        try:
            # both classes are set when FAST; mypy types them by their first binding, None
            mine = _XPrivate.from_private_bytes(scalar)  # type: ignore[attr-defined]
            out = mine.exchange(_XPublic.from_public_bytes(u))  # type: ignore[attr-defined]
        except ValueError:
            raise ValueError("X25519 result is all zeros (small-order peer key)") from None
        if out == bytes(32):
            raise ValueError("X25519 result is all zeros (small-order peer key)")
        return out

    def public_key(scalar):
        """X25519 public key (u coordinate of [clamp(scalar)]9) as 32 bytes."""
        scalar = _check32(scalar, "scalar")
        mine = _XPrivate.from_private_bytes(scalar)  # type: ignore[attr-defined]  # as above
        return mine.public_key().public_bytes_raw()

else:
    x25519 = pure_x25519
    public_key = pure_public_key


def ed25519_pk_to_x25519(public):
    """The X25519 public key of the same secret as the Ed25519 public key `public`."""
    public = _check32(public, "public key")
    pt = _ed._decode(public)
    if pt is None or _ed._small_order(pt[0], pt[1]):
        raise ValueError("not an acceptable Ed25519 public key")
    y = pt[1]
    u = (1 + y) * _ed._inv((1 - y) % P) % P
    return u.to_bytes(32, "little")


def ed25519_seed_to_x25519(seed):
    """The X25519 private scalar (clamped) of an Ed25519 seed."""
    seed = _check32(seed, "seed")
    return clamp(sha512(seed)[:32]).to_bytes(32, "little")
