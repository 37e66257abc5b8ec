"""The gateway's node key: a 32-byte Ed25519 seed in `<data dir>/node.key`, mode 0600.

The file holds the raw seed, the same format as a board's `key.bin`, so a key made on
the host can be provisioned onto a board. It is created with os.open(..., 0o600) under
a temporary name and linked into place, so it is never visible half-written or with
wider permissions. A key file that group or others can read is refused (like ssh does):
whoever reads the seed can act as this node.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from loragate.config import DATA_DIR_ENV, default_data_dir
from lorawire.identity import SEED_LEN, Identity

__all__ = ["DATA_DIR_ENV", "KeyFileError", "create_identity", "key_path", "load_identity"]

KEY_FILE = "node.key"


class KeyFileError(Exception):
    """A key file problem; str(error) is one line for the user."""


def key_path(data_dir: Path | None = None) -> Path:
    return (data_dir if data_dir is not None else default_data_dir()) / KEY_FILE


def load_identity(path: Path) -> Identity:
    """The Identity stored at path; KeyFileError if missing, unsafe or malformed."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise KeyFileError(f"no key at {path}: run 'loragate keygen' first") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key {path} is readable by group/others (mode {mode:04o}); "
            f"run 'chmod 600 {path}' if it has not leaked, else make a new one"
        )
    try:
        seed = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key {path}: {exc.strerror}") from None
    if len(seed) != SEED_LEN:
        raise KeyFileError(f"key {path} holds {len(seed)} bytes, expected {SEED_LEN}")
    return Identity(seed)


def create_identity(path: Path, force: bool = False) -> Identity:
    """Write a new random key to path (0600) and return it.

    Without `force` an existing key is never replaced (KeyFileError): the node id,
    and the reputation and bans attached to it, would be lost.
    """
    if path.exists() and not force:
        raise KeyFileError(
            f"a key already exists at {path}; use --force to replace it (the node id changes)"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise KeyFileError(f"cannot create {path.parent}: {exc.strerror}") from None
    identity = Identity.generate()
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, identity.seed)
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if another process created the key meanwhile
            tmp.unlink()
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise KeyFileError(f"a key already exists at {path}") from None
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write key {path}: {exc.strerror}") from None
    return identity
