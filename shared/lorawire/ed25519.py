"""Ed25519 signatures (RFC 8032): `public_key`, `sign`, `verify`.

On CPython the functions are backed by the `cryptography` package (OpenSSL) through
`lorawire._ed25519_fast`, chosen at import time; elsewhere (MicroPython) by the pure
implementation in `lorawire._ed25519_pure`, which stays importable on CPython so tests
cross-check both.

Verification rule (both paths, identical answers):
* inputs must be bytes-like (bytes, bytearray, memoryview), public key 32 bytes,
  signature 64 bytes; anything else gives False, never an exception;
* S must be < L;
* A must be a canonical encoding (y < p; x = 0 only with the sign bit clear) of a point
  that is not of small order (the 8 points of order 1, 2, 4 or 8 are rejected, since
  any signature "verifies" under them);
* then the cofactorless equation of RFC 8032 §5.1.7 on encodings:
  encode([S]B - [k]A) == R, which rejects a non-canonical R by construction.
OpenSSL applies the same equation but accepts non-canonical and small-order A, so the
fast path checks A against the rule first (cheap byte comparisons).

`public_key` and `sign` raise TypeError for a non-bytes seed or message and ValueError
for a seed that is not 32 bytes: those are local mistakes, not remote input.
"""

import sys

_CPYTHON = sys.implementation.name == "cpython"
FAST = False
if _CPYTHON:
    try:
        from lorawire._ed25519_fast import (  # noqa: F401 - re-exported for callers and tests
            SMALL_ORDER_ENCODINGS,
            acceptable_public_key,
            public_key,
            sign,
            verify,
        )

        FAST = True
    except ImportError:
        pass
if not FAST:
    from lorawire._ed25519_pure import public_key, sign, verify  # noqa: F401

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
