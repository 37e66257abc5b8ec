"""Encode+decode throughput of a typical ~120-byte peer record on every codec path.

`python -m tools.bench.bench_codec`
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lorawire import _fastcodec, _purecodec
from lorawire.record import encode_record
from tools.bench.upy import run_micropython

# A real signed peer record (one IPv4 endpoint, mesh hints): 129 bytes encoded.
RECORD_BYTES = encode_record(
    {
        "seq": 1_790_000_123,
        "kind": 2,
        "services": 3,
        "endpoints": [(bytes([203, 0, 113, 7]), 8333)],
        "mesh": (0, 9),
    },
    bytes(range(32)),
)
RECORD: dict[int, Any] = _purecodec.unpackb(RECORD_BYTES)

UPY_LOOP = """
import binascii
import time
from lorawire import _purecodec as c
record = c.unpackb(binascii.unhexlify("%s"))
n = 0
start = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), start) < %d:
    c.unpackb(c.packb(record))
    n += 1
print(n, time.ticks_diff(time.ticks_ms(), start), len(c.packb(record)))
"""


def _rate(pack: Callable[[Any], bytes], unpack: Callable[[bytes], Any], seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        unpack(pack(RECORD))
        n += 1
    return n / (time.perf_counter() - start)


def main(seconds: float = 1.0) -> None:
    size = len(_purecodec.packb(RECORD))
    print(f"codec record size: {size} bytes")
    pure = _rate(_purecodec.packb, _purecodec.unpackb, seconds)
    print(f"codec encode+decode, pure path on CPython: {pure:,.0f} records/s")
    fast = _rate(_fastcodec.packb, _fastcodec.unpackb, seconds)
    print(f"codec encode+decode, msgpack C path on CPython: {fast:,.0f} records/s")
    count, elapsed_ms, _ = run_micropython(
        UPY_LOOP % (RECORD_BYTES.hex(), int(seconds * 1000))
    ).split()
    upy = int(count) / (int(elapsed_ms) / 1000)
    print(f"codec encode+decode, pure path on the unix port: {upy:,.0f} records/s")


if __name__ == "__main__":
    main()
