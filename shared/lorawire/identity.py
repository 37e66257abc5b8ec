"""Node identity: an Ed25519 seed, its public key and the node id derived from it.

node_id = SHA-256(public key)[:8]: an id cannot be claimed without the key, and every
frame header carries it. The X25519 secret (for pairwise link keys and TCP session
keys) is derived from the seed the way libsodium's crypto_sign_ed25519_sk_to_curve25519
does, only when first needed, then cached.

Storage is not here: the board keeps the seed in a file (loranode.identity), the
gateway in a 0600 key file (loragate.keys).
"""

import hashlib
import os
from binascii import hexlify

from lorawire import ed25519

SEED_LEN = 32
PUBLIC_KEY_LEN = 32
ID_LEN = 8


def node_id(public):
    """The 8-byte node id of a 32-byte Ed25519 public key."""
    if not isinstance(public, (bytes, bytearray, memoryview)) or len(public) != PUBLIC_KEY_LEN:
        raise ValueError("public key must be %d bytes" % PUBLIC_KEY_LEN)
    return hashlib.sha256(bytes(public)).digest()[:ID_LEN]


def id_hex(raw):
    """Lower-case hex of an id (or any bytes), as printed by the CLI and logs."""
    return hexlify(bytes(raw)).decode()


class Identity:
    """This node's keys. `seed` is secret; `public` and `id` are shared freely."""

    __slots__ = ("seed", "public", "id", "_x_secret", "_x_public")

    def __init__(self, seed):
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_LEN:
            raise ValueError("seed must be %d bytes" % SEED_LEN)
        self.seed = bytes(seed)
        self.public = ed25519.public_key(self.seed)
        self.id = node_id(self.public)
        self._x_secret = None
        self._x_public = None

    @classmethod
    def generate(cls):
        """A fresh identity from os.urandom."""
        return cls(os.urandom(SEED_LEN))

    def x_secret(self):
        """X25519 private scalar (clamped) of this identity; derived once, cached."""
        if self._x_secret is None:
            from lorawire.x25519 import ed25519_seed_to_x25519

            self._x_secret = ed25519_seed_to_x25519(self.seed)
        return self._x_secret

    def x_public(self):
        """X25519 public key matching x_secret(); equals ed25519_pk_to_x25519(public)."""
        if self._x_public is None:
            from lorawire.x25519 import ed25519_pk_to_x25519

            self._x_public = ed25519_pk_to_x25519(self.public)
        return self._x_public

    def sign(self, message):
        return ed25519.sign(self.seed, message)

    def hex_id(self):
        return id_hex(self.id)

    def __repr__(self):
        return "Identity(%s)" % self.hex_id()
