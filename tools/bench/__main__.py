"""`make bench`: every benchmark of the project, one after another, printing figures.

Each module's `main()` prints lines of the form `what: figure unit`.
"""

from __future__ import annotations

import importlib
import sys

BENCHES = [
    "tools.bench.bench_codec",
    "tools.bench.bench_crypto",
    "tools.bench.bench_footprint",
    "tools.bench.bench_addrman",
    "tools.bench.bench_relay",
    "tools.bench.bench_mesh",
    "tools.bench.bench_scale",
]


def main(names: list[str]) -> int:
    selected = [b for b in BENCHES if not names or any(n in b for n in names)]
    for name in selected:
        print(f"== {name.rsplit('.', 1)[-1]}", flush=True)
        importlib.import_module(name).main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
