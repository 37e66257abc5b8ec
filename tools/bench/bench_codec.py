"""Encode+decode throughput of a typical ~120-byte peer record on every codec path.

`python -m tools.bench.bench_codec`
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lorawire import _fastcodec, _purecodec
from tools.bench.upy import run_micropython

# Shaped like an announce record: key, kind, services, endpoints, mesh hints, seq, signature.
RECORD: dict[int, Any] = {
    0: bytes(range(32)),
    1: 2,
    2: 0b1011,
    3: [["203.0.113.7", 8333]],
    4: ["EU868", 9],
    5: 1_790_000_123,
    6: bytes(range(64, 100)),
}

UPY_LOOP = """
import time
from lorawire import _purecodec as c
record = {0: bytes(range(32)), 1: 2, 2: 11, 3: [["203.0.113.7", 8333]], 4: ["EU868", 9],
          5: 1790000123, 6: bytes(range(64, 100))}
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
    count, elapsed_ms, _ = run_micropython(UPY_LOOP % int(seconds * 1000)).split()
    upy = int(count) / (int(elapsed_ms) / 1000)
    print(f"codec encode+decode, pure path on the unix port: {upy:,.0f} records/s")


if __name__ == "__main__":
    main()
