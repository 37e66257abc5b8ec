"""The CI budget of the fuzzer (tools/fuzz): every decoder entry point gets 20,000
seeded inputs on CPython, and the first 1,000 of them (300 where the unix port verifies
signatures in pure Python) on the PyPI port and on the board-shaped build; nothing but
the documented error may escape and both runtimes must agree. `make fuzz SECONDS=600`
runs the same loop for as long as asked."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.board import interpreters
from tools.board.__main__ import REQUIRE_ENV
from tools.fuzz import run
from tools.fuzz import wire_targets as wt

ROOT = Path(__file__).resolve().parents[2]
CI_INPUTS = 20_000
CI_UPY_INPUTS = 1_000


def ci_interpreters() -> list[str]:
    names = ["pypi"]
    if interpreters.missing("plain") is None:
        names.append("plain")
    elif os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{interpreters.missing('plain')} ({REQUIRE_ENV} is set)")
    return names


@pytest.fixture(scope="module")
def session() -> Iterator[run.Session]:
    with run.Session(ci_interpreters()) as s:
        yield s


@pytest.mark.slow
@pytest.mark.parametrize("name", run.target_names())
def test_ci_budget(session: run.Session, name: str, tmp_path: Path) -> None:
    rep = session.target(name, inputs=CI_INPUTS, upy_inputs=CI_UPY_INPUTS)
    print(rep.line())
    for f in rep.findings:
        print(f"  finding saved to {run.save(f, tmp_path)}: {f.line()}")
    assert rep.found == 0, "\n".join(f.line() for f in rep.findings)
    assert rep.inputs == CI_INPUTS
    if name not in run.host_targets.CPYTHON_ONLY:
        assert set(rep.upy) == set(ci_interpreters())
    # The inputs reach more than one way out of the decoder (a fuzzer stuck on one
    # refusal tests nothing); a clocked target's outcome says only that it returned.
    assert len(rep.outcomes) > 1 or wt.TARGETS[name].clocked, rep.outcomes


def test_a_planted_escape_is_found_and_replays() -> None:
    def planted(data: bytes) -> int:
        if len(data) > 3 and data[3] == 0x42:
            raise KeyError("planted")
        return len(data)

    wt.TARGETS["test.planted"] = wt.Target("test.planted", planted)
    run.seeds.SEEDS["test.planted"] = lambda: [bytes(8)]
    try:
        with run.Session(()) as s:
            first = s.target("test.planted", inputs=3000)
            again = s.target("test.planted", inputs=3000)
    finally:
        del wt.TARGETS["test.planted"], run.seeds.SEEDS["test.planted"]
    assert first.found > 0 and first.findings[0].outcome.startswith("X KeyError")
    assert first.findings[0].data[3] == 0x42
    assert [f.data for f in again.findings] == [f.data for f in first.findings]  # seeded


def test_a_difference_between_the_runtimes_is_a_finding() -> None:
    clock = wt.Target("t", len, clocked=True)
    plain = wt.Target("t", len)
    assert run._same(clock, "ok", "ok") and not run._same(clock, "ok", "E DecodeError")
    assert run._same(plain, "ok 00ff", "ok 00ff") and not run._same(plain, "ok 00ff", "ok 00fe")


def test_the_known_difference_still_holds_else_remove_it() -> None:
    """KNOWN_DIFFERENCES lists a behaviour of MicroPython, not ours; once its json is
    strict this fails, the entry goes and the fuzzer compares those inputs again."""
    from upy import run_upy

    lenient = run_upy('import json\nprint(json.loads(\'{"a": 1 "b": 2}\'))').stdout
    assert "'a'" in lenient, "MicroPython's json is strict now: drop the KNOWN_DIFFERENCES entry"
    assert set(run.KNOWN_DIFFERENCES) <= set(wt.TARGETS)


@pytest.mark.slow
def test_make_fuzz_runs_for_the_time_asked() -> None:
    argv = [sys.executable, "-m", "tools.fuzz", "--seconds", "4", "--interpreter", "pypi"]
    argv += ["--target", "codec.unpackb", "--target", "frame.decode"]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if "/s" in line]
    assert [line.split()[0] for line in lines] == ["codec.unpackb", "frame.decode"]
    assert all("pypi" in line for line in lines)
    assert "2 targets" in out.stdout and "0 findings" in out.stdout
