"""What the simulator substitutes for a board's hardware while it drives nodes.

* Entropy: a board's `loranode.announce.rand` reads `os.urandom` (jitter, nonces,
  intervals). While a simulation runs, that module's `urandom` reads a seeded stream
  instead, so the same seed gives the same run.
* Verification: many simulated nodes verify the same few hundred signed records.
  `lorawire.ed25519.verify` answers from a cache keyed by (public key, message,
  signature) shared by every node in the process; a miss runs the real verification,
  so every answer is the one the node would have computed itself.

`substitutes(rng)` is a context manager that installs both and puts the originals back.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import loranode.announce as _announce
from lorawire import ed25519 as _ed25519

CACHE_MAX = 200_000

_real_verify = _ed25519.verify
_verified: dict[tuple[bytes, bytes, bytes], bool] = {}
stats = {"verify_calls": 0, "verify_misses": 0}


def cached_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    stats["verify_calls"] += 1
    try:
        key = (bytes(public), bytes(message), bytes(signature))
    except TypeError:
        return bool(_real_verify(public, message, signature))
    ok = _verified.get(key)
    if ok is None:
        stats["verify_misses"] += 1
        ok = bool(_real_verify(public, message, signature))
        if len(_verified) >= CACHE_MAX:
            _verified.clear()
        _verified[key] = ok
    return ok


@contextmanager
def substitutes(rng: random.Random) -> Iterator[None]:
    saved = (_announce.urandom, _ed25519.verify)
    _announce.urandom = rng.randbytes
    _ed25519.verify = cached_verify
    try:
        yield
    finally:
        _announce.urandom, _ed25519.verify = saved
