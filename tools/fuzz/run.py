"""The fuzzing loop: seeded inputs through every target on CPython, the same inputs
through the unix ports, and what did not hold.

Per target: a Mutator over its seeds (tools/fuzz/seeds.py), seeded by the run's seed
and the target's name, so a run replays exactly. On CPython every input must end in a
result or the target's documented error; a share of them then goes through each
interpreter's worker (tools/fuzz/upy_worker.py), and every outcome must equal
CPython's (the error's type, or the fingerprint of the result; for targets that read
the clock, whether it raised). Findings are written to `findings_dir`.
"""

from __future__ import annotations

import atexit
import binascii
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tools import procs
from tools.board import interpreters, mpytree

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORKER_HEAP = "4M"
KEEP_FINDINGS = 5
OUTCOMES_KEPT = 100
ANSWER = "@@ "  # the prefix of the worker's answers
SLOW_SHARE_PERCENT = 30  # of upy_inputs, for targets that verify signatures on the unix port


def _path_setup() -> None:
    for p in (ROOT / "firmware", ROOT / "shared"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))


_path_setup()

from tools.fuzz import host_targets, seeds  # noqa: E402 - after firmware/ is on the path
from tools.fuzz import wire_targets as wt  # noqa: E402
from tools.fuzz.mutate import Mutator  # noqa: E402


@dataclass
class Finding:
    target: str
    where: str  # "cpython" or an interpreter name
    data: bytes
    outcome: str
    expected: str | None = None  # CPython's outcome, for a difference between runtimes

    def line(self) -> str:
        what = (
            self.outcome if self.expected is None else f"{self.outcome} (CPython: {self.expected})"
        )
        return f"{self.target} on {self.where}: {what}; input {self.data.hex()[:160]}"


@dataclass
class Report:
    target: str
    inputs: int = 0
    seconds: float = 0.0
    errors: int = 0  # inputs that ended in the documented error
    outcomes: set[str] = field(default_factory=set)  # distinct ones, up to OUTCOMES_KEPT
    known: int = 0  # differences between the runtimes listed in KNOWN_DIFFERENCES
    findings: list[Finding] = field(default_factory=list)
    found: int = 0
    upy: dict[str, tuple[int, float]] = field(default_factory=dict)

    def rate(self, n: int, s: float) -> str:
        return f"{n / s:,.0f}/s" if s > 0 else "-"

    def line(self) -> str:
        rate = self.rate(self.inputs, self.seconds)
        out = f"{self.target:34} {self.inputs:7,} in {self.seconds:6.2f} s {rate:>10}"
        for name, (n, s) in self.upy.items():
            out += f" | {name} {n:,} {self.rate(n, s):>8}"
        if self.known:
            out += f" | known {self.known}"
        return out + f" | findings {self.found}"


def target_names(upy_only: bool = False) -> list[str]:
    names = list(wt.TARGETS)
    return [n for n in names if n not in host_targets.CPYTHON_ONLY] if upy_only else names


class Worker:
    """One unix-port interpreter running upy_worker.py, fed inputs line by line."""

    def __init__(self, interp: interpreters.Interpreter, state: Path, pty: str | None) -> None:
        self.name = interp.name
        extra = [str(HERE)]
        if interp.board_shaped:  # compiling a source of this size needs more C stack
            extra = [str(_compiled_targets())]
        env = dict(os.environ)
        env["MICROPYPATH"] = interpreters.module_path(interp, *extra)
        argv = [str(interp.path), "-X", f"heapsize={WORKER_HEAP}", str(HERE / "upy_worker.py")]
        argv += [str(state), pty or "-"]
        self.proc = procs.spawn(argv, cwd=ROOT, env=env)
        first = self._line()
        if first != "ready":
            raise RuntimeError(f"{self.name} worker did not start: {first}")

    def _line(self) -> str:
        """The next answer; lines without the prefix (interpreter warnings) are skipped."""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} worker ended (exit {self.proc.wait()})")
            if line.startswith(ANSWER):
                return line[len(ANSWER) :].rstrip("\n")

    def run(self, name: str, inputs: list[bytes]) -> list[str]:
        assert self.proc.stdin is not None
        text = "".join(f"{name} {binascii.hexlify(d).decode()}\n" for d in inputs)
        writer = threading.Thread(target=self._write, args=(text,), daemon=True)
        writer.start()
        out = [self._line() for _ in inputs]
        writer.join()
        return out

    def _write(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def stop(self) -> None:
        """EOF on its stdin ends the worker; one that does not within 5 s is killed."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            procs.kill(self.proc)


_COMPILED: Path | None = None


def _compiled_targets() -> Path:
    """wire_targets.py as .mpy, for the board-shaped interpreters."""
    global _COMPILED
    if _COMPILED is None:
        out = Path(tempfile.mkdtemp(prefix="fuzz-mpy-"))
        atexit.register(shutil.rmtree, out, True)
        subprocess.run(
            [
                mpytree.mpy_cross(),
                "-o",
                str(out / "wire_targets.mpy"),
                str(HERE / "wire_targets.py"),
            ],
            check=True,
            capture_output=True,
        )
        _COMPILED = out
    return _COMPILED


class _Pty:
    """A pseudo-terminal for a bridge target: the bridge writes its answers to the
    slave; a thread reads them off the master so it never blocks."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        try:
            while os.read(self.master, 4096):
                pass
        except OSError:  # closed
            pass

    def close(self) -> None:
        os.close(self.slave)
        os.close(self.master)


def _strict_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


# Differences between the runtimes that are not ours to fix: per target, a test of
# (input, CPython's outcome, the unix port's) and why.
KNOWN_DIFFERENCES: dict[str, tuple[Callable[[bytes, str, str], bool], str]] = {
    "firmware.start.load": (
        lambda data, mine, theirs: mine.startswith("E ") and not _strict_json(data),
        "MicroPython's json.loads accepts some text CPython refuses as JSON (a missing "
        "comma between members, a doubled colon), so a board reads a config.json the "
        "deploy tool would refuse",
    ),
}


def known_why(name: str) -> str:
    """Why a target's differences counted as known are not findings."""
    return KNOWN_DIFFERENCES[name][1] if name in KNOWN_DIFFERENCES else ""


def _known_difference(name: str, data: bytes, mine: str, theirs: str) -> bool:
    diff = KNOWN_DIFFERENCES.get(name)
    return diff is not None and not theirs.startswith("X ") and diff[0](data, mine, theirs)


def _same(target: wt.Target, mine: str, theirs: str) -> bool:
    if target.clocked:
        return mine.split(" ")[0] == theirs.split(" ")[0]
    return mine == theirs


class Session:
    """The processes and files one fuzzing run needs: a state directory (in memory where
    /dev/shm exists: file targets write a file per input), a pseudo-terminal per bridge,
    a worker per interpreter. A context manager; `close()` ends and removes them."""

    def __init__(self, interpreter_names: Iterable[str] = ("pypi",)) -> None:
        shm = Path("/dev/shm")
        self.state = Path(tempfile.mkdtemp(prefix="fuzz-", dir=shm if shm.is_dir() else None))
        for name in ("cpython", *interpreter_names):
            (self.state / name).mkdir()
            for role, cfg in host_targets.board_configs().items():
                (self.state / name / f"{role}.json").write_text(json.dumps(cfg))
        wt.STATE["dir"] = str(self.state / "cpython")
        self.ptys = [_Pty()]
        wt.STATE["pty"] = self.ptys[0].path
        self.workers: list[Worker] = []
        try:
            for name in interpreter_names:
                self.ptys.append(_Pty())
                self.workers.append(
                    Worker(interpreters.get(name), self.state / name, self.ptys[-1].path)
                )
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        for p in self.ptys:
            p.close()
        wt._cache.clear()  # fixtures hold files and the pty of this session
        shutil.rmtree(self.state, ignore_errors=True)

    def target(
        self,
        name: str,
        *,
        inputs: int | None = None,
        seconds: float | None = None,
        upy_inputs: int = 1000,
        upy_seconds: float | None = None,
        seed: int = 1,
    ) -> Report:
        """Fuzz one target with `inputs` inputs (or for `seconds`) on CPython, then the
        first `upy_inputs` of them (or as many as fit in `upy_seconds`) on each worker."""
        return _fuzz_one(name, inputs, seconds, upy_inputs, upy_seconds, self.workers, seed)


def fuzz(
    names: Iterable[str],
    *,
    inputs: int | None = None,
    seconds: float | None = None,
    upy_inputs: int = 1000,
    upy_seconds: float | None = None,
    interpreter_names: Iterable[str] = ("pypi",),
    seed: int = 1,
    findings_dir: Path | None = None,
    say: Callable[[str], None] = print,
) -> list[Report]:
    """Session.target for each of `names`, one line each through `say`."""
    reports = []
    with Session(interpreter_names) as session:
        for name in names:
            rep = session.target(
                name,
                inputs=inputs,
                seconds=seconds,
                upy_inputs=upy_inputs,
                upy_seconds=upy_seconds,
                seed=seed,
            )
            reports.append(rep)
            say(rep.line())
            for f in rep.findings:
                say("  FINDING " + f.line())
                if findings_dir is not None:
                    save(f, findings_dir)
    return reports


def save(f: Finding, findings_dir: Path) -> Path:
    findings_dir.mkdir(parents=True, exist_ok=True)
    path = findings_dir / f"{f.target}-{f.where}-{zlib.crc32(f.data):08x}.bin"
    path.write_bytes(f.data)
    return path


def _fuzz_one(
    name: str,
    inputs: int | None,
    seconds: float | None,
    upy_inputs: int,
    upy_seconds: float | None,
    workers: list[Worker],
    seed: int,
) -> Report:
    t = wt.TARGETS[name]
    rep = Report(name)
    mutator = Mutator(seeds.SEEDS[name](), seed * 1_000_003 + zlib.crc32(name.encode()), t.max_len)
    kept: list[tuple[bytes, str]] = []
    keep = upy_inputs if name not in host_targets.CPYTHON_ONLY and workers else 0
    if seconds is not None and upy_seconds is not None and not keep:
        seconds += upy_seconds * len(workers)  # no unix port runs it: CPython gets its time
    if t.slow and upy_seconds is None:
        keep = min(keep, max(1, upy_inputs * SLOW_SHARE_PERCENT // 100))
    start = time.perf_counter()
    deadline = None if seconds is None else start + seconds
    while (inputs is None or rep.inputs < inputs) and (
        deadline is None or time.perf_counter() < deadline
    ):
        data = mutator.next()
        got = wt.outcome(name, data)
        rep.inputs += 1
        if len(rep.outcomes) < OUTCOMES_KEPT:
            rep.outcomes.add(got)
        if got.startswith("E "):
            rep.errors += 1
        elif got.startswith("X "):
            rep.found += 1
            if len(rep.findings) < KEEP_FINDINGS:
                rep.findings.append(Finding(name, "cpython", data, got))
        if len(kept) < keep:
            kept.append((data, got))
    rep.seconds = time.perf_counter() - start
    for w in workers:
        if not kept:
            break
        batch = kept
        if upy_seconds is not None:  # as many as fit: measure on a small batch first
            probe = kept[: min(50, len(kept))]
            t0 = time.perf_counter()
            w.run(name, [d for d, _ in probe])
            per = (time.perf_counter() - t0) / len(probe)
            batch = kept[: max(len(probe), min(len(kept), int(upy_seconds / max(per, 1e-6))))]
        t0 = time.perf_counter()
        theirs = w.run(name, [d for d, _ in batch])
        rep.upy[w.name] = (len(batch), time.perf_counter() - t0)
        for (data, mine), other in zip(batch, theirs, strict=True):
            if _known_difference(name, data, mine, other):
                rep.known += 1
                continue
            if not _same(t, mine, other) or other.startswith("X "):
                rep.found += 1
                if len(rep.findings) < KEEP_FINDINGS:
                    rep.findings.append(Finding(name, w.name, data, other, mine))
    return rep
