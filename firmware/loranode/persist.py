"""Atomic small-file writes for flash: write a temporary file, then rename over the target.

A power cut leaves either the old file or the new one, never a half-written one. On a
FAT filesystem MicroPython's `os.rename` refuses to replace an existing file, so the
fallback removes the target first; in that window only the `.tmp` file exists, which is
why `read_file` falls back to it.
"""

import os

TMP_SUFFIX = ".tmp"


def _fsync(f):
    try:
        f.flush()
        os.fsync(f.fileno())
    except (AttributeError, OSError):
        pass  # MicroPython: close() flushes; there is no fsync


def write_atomic(path, data):
    tmp = path + TMP_SUFFIX
    with open(tmp, "wb") as f:
        f.write(data)
        _fsync(f)
    try:
        os.rename(tmp, path)
    except OSError:
        try:
            os.remove(path)
        except OSError:
            pass
        os.rename(tmp, path)
    if hasattr(os, "sync"):
        os.sync()


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def read_file(path):
    """The file's bytes, the leftover `.tmp` from an interrupted write, or None."""
    data = _read(path)
    if data is None:
        data = _read(path + TMP_SUFFIX)
    return data
