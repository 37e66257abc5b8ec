"""Address-book benchmark: select time and memory per address with 100,000 addresses.

Run: ``.venv/bin/python -m tools.bench.bench_addrman`` (or call ``main()``).
"""

from __future__ import annotations

import gc
import random
import sys
import time
import tracemalloc
from pathlib import Path

_GATEWAY = str(Path(__file__).resolve().parents[2] / "gateway")
if _GATEWAY not in sys.path:
    sys.path.insert(0, _GATEWAY)

from loragate.addrman import AddrMan  # noqa: E402

N_ADDRS = 100_000
N_SELECTS = 20_000
N_GOOD = 2_000
NOW = 1_700_000_000.0


def _ip(r: random.Random) -> str:
    return f"{r.randrange(1, 224)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"


def fill(book: AddrMan, r: random.Random, n: int = N_ADDRS) -> float:
    """Offer n random addresses from 2,000 sources; returns seconds taken."""
    sources = [_ip(r) for _ in range(2000)]
    addrs = [(_ip(r), 8333) for _ in range(n)]
    t = time.perf_counter()
    for i, a in enumerate(addrs):
        book.add(a, sources[i % len(sources)], now=NOW, seen=NOW - r.randrange(86400))
    return time.perf_counter() - t


def memory_per_address() -> tuple[float, int]:
    """Bytes traced by tracemalloc per kept address after offering N_ADDRS."""
    r = random.Random(42)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    book = AddrMan(bytes(16), rng=random.Random(1))
    fill(book, r)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / len(book), len(book)


def main() -> dict[str, float]:
    per_addr, _ = memory_per_address()
    # Timings on a separate, untraced book (tracemalloc slows allocation a lot).
    r = random.Random(42)
    book = AddrMan(bytes(16), rng=random.Random(1))
    fill_s = fill(book, r)
    n = len(book)

    t = time.perf_counter()
    for _ in range(N_GOOD):
        rec = book.select(new_only=True, now=NOW)
        if rec is not None:
            book.good(rec.addr, NOW)
    good_us = (time.perf_counter() - t) / N_GOOD * 1e6

    later = NOW + 3600
    t = time.perf_counter()
    for _ in range(N_SELECTS):
        book.select(now=later)
    select_us = (time.perf_counter() - t) / N_SELECTS * 1e6

    t = time.perf_counter()
    for _ in range(N_SELECTS):
        book.select(new_only=True, now=later)
    select_new_us = (time.perf_counter() - t) / N_SELECTS * 1e6

    print(f"addrman fill: {N_ADDRS} offered, {n} kept ({book.new_count} new), {fill_s:.2f} s")
    print(f"addrman add: {fill_s / N_ADDRS * 1e6:.1f} µs per address")
    print(f"addrman memory: {per_addr:.0f} bytes per address (tracemalloc, {n} entries)")
    print(f"addrman good (select+move to tried): {good_us:.1f} µs")
    print(f"addrman select (100k addrs): {select_us:.1f} µs")
    print(f"addrman select new-only (100k addrs): {select_new_us:.1f} µs")
    return {
        "select_us": select_us,
        "select_new_us": select_new_us,
        "bytes_per_addr": per_addr,
        "add_us": fill_s / N_ADDRS * 1e6,
        "kept": float(n),
    }


if __name__ == "__main__":
    main()
