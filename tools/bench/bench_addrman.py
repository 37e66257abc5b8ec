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


def memory_per_address(n: int = N_ADDRS) -> tuple[float, int]:
    """Bytes traced by tracemalloc per kept address after offering n addresses."""
    r = random.Random(42)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    book = AddrMan(bytes(16), rng=random.Random(1))
    fill(book, r, n)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / len(book), len(book)


def main(
    n_addrs: int = N_ADDRS, n_selects: int = N_SELECTS, n_good: int = N_GOOD
) -> dict[str, float]:
    """Print and return the figures for n_addrs offered addresses (smaller: a smoke run)."""
    per_addr, _ = memory_per_address(n_addrs)
    # Timings on a separate, untraced book (tracemalloc slows allocation a lot).
    r = random.Random(42)
    book = AddrMan(bytes(16), rng=random.Random(1))
    fill_s = fill(book, r, n_addrs)
    n = len(book)
    size = f"{n_addrs / 1000:g}k addrs"

    t = time.perf_counter()
    for _ in range(n_good):
        rec = book.select(new_only=True, now=NOW)
        if rec is not None:
            book.good(rec.addr, NOW)
    good_us = (time.perf_counter() - t) / n_good * 1e6

    later = NOW + 3600
    t = time.perf_counter()
    for _ in range(n_selects):
        book.select(now=later)
    select_us = (time.perf_counter() - t) / n_selects * 1e6

    t = time.perf_counter()
    for _ in range(n_selects):
        book.select(new_only=True, now=later)
    select_new_us = (time.perf_counter() - t) / n_selects * 1e6

    print(f"addrman fill: {n_addrs} offered, {n} kept ({book.new_count} new), {fill_s:.2f} s")
    print(f"addrman add: {fill_s / n_addrs * 1e6:.1f} µs per address")
    print(f"addrman memory: {per_addr:.0f} bytes per address (tracemalloc, {n} entries)")
    print(f"addrman good (select+move to tried): {good_us:.1f} µs")
    print(f"addrman select ({size}): {select_us:.1f} µs")
    print(f"addrman select new-only ({size}): {select_new_us:.1f} µs")
    return {
        "select_us": select_us,
        "select_new_us": select_new_us,
        "bytes_per_addr": per_addr,
        "add_us": fill_s / n_addrs * 1e6,
        "kept": float(n),
    }


if __name__ == "__main__":
    main()
