"""Every `make bench` module runs (issue 2): each one's entry point with tiny settings.

The figures are not judged (benchmarks print them, tests do not time things); what is
checked is that every expected label is printed with a number, so a broken bench module
fails here rather than at the next `make bench`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tools.bench import __main__ as runner
from tools.bench import (
    bench_addrman,
    bench_codec,
    bench_crypto,
    bench_footprint,
    bench_mesh,
    bench_relay,
    bench_scale,
)
from tools.board import interpreters
from tools.board.__main__ import REQUIRE_ENV

BENCH_DIR = Path(bench_codec.__file__).resolve().parent
NUM = r"-?[0-9][0-9,]*(?:\.[0-9]+)?"


def figures(out: str) -> dict[str, str]:
    """`label: rest` per printed line."""
    pairs = (line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return {label: rest for label, rest in pairs}


def number(rest: str, unit: str) -> float:
    m = re.fullmatch(rf"({NUM}) {re.escape(unit)}(?: .*)?", rest)
    assert m, f"{rest!r} is not '<number> {unit}'"
    return float(m.group(1).replace(",", ""))


def test_runner_lists_every_bench_module() -> None:
    found = {f"tools.bench.{p.stem}" for p in BENCH_DIR.glob("bench_*.py")}
    assert set(runner.BENCHES) == found


@pytest.mark.upy
def test_bench_codec(capsys: pytest.CaptureFixture[str]) -> None:
    bench_codec.main(seconds=0.05)
    got = figures(capsys.readouterr().out)
    assert number(got["codec record size"], "bytes") == len(bench_codec.RECORD_BYTES)
    for path in ("pure path on CPython", "msgpack C path on CPython", "pure path on the unix port"):
        assert number(got[f"codec encode+decode, {path}"], "records/s") > 0


@pytest.mark.upy
@pytest.mark.slow
def test_bench_crypto(capsys: pytest.CaptureFixture[str]) -> None:
    bench_crypto.main(n=1, rounds=1, cpu_ops=2, cpu_pairs=1)
    got = figures(capsys.readouterr().out)
    up = "pure, unix port"
    ms = [
        f"ed25519 verify ({up}, CPU time)",
        f"ed25519 sign, key cached ({up}, 64K heap, CPU time)",
        f"ed25519 verify ({up})",
        f"ed25519 sign, new key ({up})",
        f"sha512 of {bench_crypto.MSG_LEN + 64} bytes ({up})",
        f"x25519 ({up})",
        f"ed25519 verify ({up}, 64K heap)",
        "ed25519 verify (pure, CPython)",
        "ed25519 sign (cryptography)",
    ]
    for label in ms:
        number(got[label], "ms")
    for label in ("ed25519 verify/s (cryptography)", f"ed25519 verify/s ({up})"):
        assert number(got[label], "1/s") > 0
    heap = [
        f"ed25519 bytes allocated by one verify, GC paused ({up})",
        "smallest heap in which import + first verify run",
        "heap peak of a first verify",
        "heap free after import + first sign/verify, 64K heap",
    ]
    for label in heap:
        assert number(got[label], "B") > 0
    assert number(got[heap[1]], "B") <= 128 * 1024  # the search's upper bound


def test_bench_addrman(capsys: pytest.CaptureFixture[str]) -> None:
    res = bench_addrman.main(n_addrs=2000, n_selects=200, n_good=50)
    got = figures(capsys.readouterr().out)
    assert re.fullmatch(
        rf"2000 offered, ({NUM}) kept \(({NUM}) new\), {NUM} s", got["addrman fill"]
    )
    assert 0 < res["kept"] <= 2000
    assert number(got["addrman add"], "µs") >= 0
    assert number(got["addrman memory"], "bytes") > 0
    assert number(got["addrman good (select+move to tried)"], "µs") >= 0
    assert number(got["addrman select (2k addrs)"], "µs") >= 0
    assert number(got["addrman select new-only (2k addrs)"], "µs") >= 0


def test_bench_relay(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    bench_relay.main(n_tx=200)
    got = figures(capsys.readouterr().out)
    m = re.fullmatch(
        rf"({NUM}) frames/s on one core over loopback \(({NUM}) tx frames relayed by B in "
        rf"{NUM} CPU s, {NUM} s wall; A, B and C share the core\)",
        got["relay"],
    )
    assert m, got["relay"]
    assert float(m.group(1)) > 0 and int(m.group(2)) >= 200
    assert logging.root.manager.disable == logging.NOTSET  # the bench gave logging back


@pytest.mark.upy
@pytest.mark.slow
def test_bench_mesh(capsys: pytest.CaptureFixture[str]) -> None:
    bench_mesh.main(runs=((3, 30.0),))
    got = figures(capsys.readouterr().out)
    head = rf"mesh 3 nodes grid \(diameter \d+ hops, speed {bench_mesh.SPEED:g}\)"
    found = [re.match(head, k) for k in got if k.startswith("mesh ")]
    assert len(found) == 3 and all(found)
    (label,) = {m.group(0) for m in found if m}
    assert number(got[f"{label} convergence"], "simulated s") > 0
    mean = re.fullmatch(
        rf"mean ({NUM}) ms, max ({NUM}) ms \(EU868 1 % budget: 36000 ms per hour\)",
        got[f"{label} airtime per node"],
    )
    assert mean, got[f"{label} airtime per node"]
    air = re.fullmatch(r"\[(\d+), (\d+), (\d+)\] ms", got[f"{label} airtime list"])
    assert air and all(int(x) > 0 for x in air.groups())


@pytest.mark.slow
def test_bench_scale(capsys: pytest.CaptureFixture[str]) -> None:
    rows = bench_scale.main(sizes=(12,), kinds=("grid",), sfs=(7,))
    got = figures(capsys.readouterr().out)
    lab = "scale grid 12 SF7"
    disc = got[f"{lab} discovery"]
    assert re.fullmatch(
        rf"(?:({NUM}) simulated s|not reached) \(goal <= 600 s: (?:met|NOT met); routed "
        rf"{NUM} %, gateways know {NUM} %; managed flooding: routed {NUM} %, known {NUM} %\)",
        disc,
    ), disc
    air = got[f"{lab} discovery airtime"]
    m = re.fullmatch(
        rf"({NUM}) s \(naive x{NUM}, managed x{NUM}, flood bound x{NUM}, "
        rf"discovery bound x{NUM}; \|CDS\| (\d+)\)",
        air,
    )
    assert m, air
    assert float(m.group(1)) > 0 and int(m.group(2)) >= 1
    steady = got[f"{lab} steady background"]
    assert number(steady, "s per node per hour") >= 0
    ld = got[f"{lab} load"]
    m = re.fullmatch(
        rf"({NUM}) % of (\d+) txs at a gateway within 5 min, worst of (\d+) blocks reached "
        rf"({NUM}) % of the nodes, busiest node ({NUM}) % of its duty cycle \((?:met|NOT met); "
        rf"60 min\)",
        ld,
    )
    assert m, ld
    assert int(m.group(2)) > 0 and int(m.group(3)) > 0
    assert float(m.group(5)) <= 100.0  # the duty cycle holds
    assert "scale table" in got
    (row,) = rows
    assert row["fw"]["errors"] == {} and row["load"]["errors"] == {}


@pytest.mark.slow
def test_bench_footprint_fills_every_table(capsys: pytest.CaptureFixture[str]) -> None:
    """The footprint rows describe a node whose every table is at capacity (both
    board-shaped builds, which the bench runs itself; one driver's row stands for both:
    the fill is the same)."""
    for name in interpreters.BOARD_NAMES:
        reason = interpreters.missing(name)
        if reason is not None:
            if os.environ.get(REQUIRE_ENV):
                pytest.fail(f"{reason} ({REQUIRE_ENV} is set)")
            pytest.skip(reason)
    bench_footprint.main(roles=("node",), search=False, chips=("sx1262",))
    rows = [x for x in capsys.readouterr().out.splitlines() if x.startswith("footprint ")]
    assert any(x.startswith("footprint frozen node (no driver): code ") for x in rows), rows
    assert any(x.startswith("footprint plain node + sx1262 driver (heltec-v3") for x in rows), rows
    for row in rows:
        assert "(peers/bans/seen/keys/reassembly 32/16/64/16/4)" in row, row
        assert float(row.split("every table full ")[1].split(" KB")[0]) > 0
