"""`packb` / `unpackb`: the one body encoding, chosen at import time.

On CPython with the `msgpack` package the C extension does the work; elsewhere
(MicroPython, or CPython without msgpack) the pure implementation does. Both give the
same bytes for every value and reject the same inputs with DecodeError.
"""

try:
    from lorawire._fastcodec import packb, unpackb

    BACKEND = "msgpack-c"
except ImportError:
    from lorawire._purecodec import packb, unpackb

    BACKEND = "pure"

__all__ = ["BACKEND", "packb", "unpackb"]
