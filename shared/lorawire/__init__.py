"""Lorawire: the wire codec shared by the MicroPython firmware and the CPython gateway.

`packb`, `unpackb` and `DecodeError` are the public face of the body encoding; the
frame, record, crypto and airtime modules are imported from their own submodules so a
board loads only what it uses.
"""

from lorawire.codec import packb, unpackb
from lorawire.errors import DecodeError

__all__ = ["DecodeError", "packb", "unpackb"]
