"""This board's identity: a 32-byte Ed25519 seed in a file, made on first boot.

The seed file is written once, atomically (loranode.persist: temporary file, then
rename), from os.urandom. It is never rewritten or replaced by this module: the node id
is derived from it, and with it every neighbour's view of this node -- its reputation,
and the bans it has served. A file of the wrong length is therefore an error
(`IdentityFileError`), not a reason to make a new key: silently replacing it would hand
the node a fresh, unbanned identity and lose the old one. Restore the file (or delete
it on purpose) and reboot.

A `<path>.tmp` left without `<path>` means the very first write was interrupted; that
key was never used, so it is discarded and a new one made.
"""

import os

from loranode.persist import write_atomic
from lorawire.identity import SEED_LEN, Identity

DEFAULT_PATH = "key.bin"


class IdentityFileError(Exception):
    pass


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read(SEED_LEN + 1)
    except OSError:
        return None


def load(path=DEFAULT_PATH):
    """The Identity in `path`; IdentityFileError if it is missing or not 32 bytes."""
    seed = _read(path)
    if seed is None:
        raise IdentityFileError("no key file at %s" % path)
    if len(seed) != SEED_LEN:
        raise IdentityFileError(
            "key file %s holds %s bytes, expected %d; refusing to replace it (the node id, "
            "its reputation and bans belong to this key): restore the file or delete it "
            "to make a new identity"
            % (path, len(seed) if len(seed) <= SEED_LEN else "> 32", SEED_LEN)
        )
    return Identity(seed)


def load_or_create(path=DEFAULT_PATH):
    """The node's Identity, creating `path` with a random seed on first boot."""
    if _read(path) is None:
        seed = os.urandom(SEED_LEN)
        write_atomic(path, seed)
        if _read(path) != seed:
            raise IdentityFileError("could not write the key file %s" % path)
    return load(path)
