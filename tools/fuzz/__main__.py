"""`python -m tools.fuzz`: every target for a number of inputs or seconds; one line per
target with inputs per second on CPython and on each unix port, then the findings.
Exit status 1 when anything escaped or differed (inputs in build/fuzz/findings/)."""

from __future__ import annotations

import sys
import time

import click

from tools.board import interpreters
from tools.fuzz import run

FINDINGS = run.ROOT / "build" / "fuzz" / "findings"


@click.command()
@click.option("--seconds", type=float, help="Total time to spend, shared by the targets.")
@click.option("--inputs", type=int, help="Inputs per target on CPython (default 20,000).")
@click.option(
    "--upy-inputs",
    type=int,
    default=1000,
    show_default=True,
    help="Of those, how many each unix port runs as well (with --inputs).",
)
@click.option(
    "--interpreter",
    "interps",
    multiple=True,
    help="Unix ports to compare with (default: pypi, and plain when built).",
)
@click.option("--target", "targets", multiple=True, help="Only these targets (repeatable).")
@click.option("--seed", type=int, default=1, show_default=True)
def main(
    seconds: float | None,
    inputs: int | None,
    upy_inputs: int,
    interps: tuple[str, ...],
    targets: tuple[str, ...],
    seed: int,
) -> None:
    names = list(targets) or run.target_names()
    unknown = [n for n in names if n not in run.wt.TARGETS]
    if unknown:
        raise click.UsageError(f"unknown target {unknown[0]!r} (see --help of tools.fuzz)")
    chosen = list(interps) or [n for n in ("pypi", "plain") if interpreters.missing(n) is None]
    for name in chosen:
        why = interpreters.missing(name)
        if why is not None:
            raise click.UsageError(why)
    share = None
    if seconds is not None:  # half on CPython, the other half shared by the unix ports
        share = seconds / len(names)
        inputs = None
    elif inputs is None:
        inputs = 20_000
    started = time.monotonic()
    reports = run.fuzz(
        names,
        inputs=inputs,
        seconds=None if share is None else share / 2,
        upy_inputs=upy_inputs if share is None else 10**9,
        upy_seconds=None if share is None else share / 2 / max(1, len(chosen)),
        interpreter_names=chosen,
        seed=seed,
        findings_dir=FINDINGS,
    )
    total = sum(r.inputs for r in reports)
    upy_total = sum(n for r in reports for n, _ in r.upy.values())
    found = sum(r.found for r in reports)
    click.echo(
        f"{len(reports)} targets, {total:,} inputs on CPython, {upy_total:,} on "
        f"{', '.join(chosen) or 'no unix port'} in {time.monotonic() - started:.1f} s: "
        f"{found} findings"
    )
    for r in reports:
        if r.known:
            click.echo(f"known ({r.target}, {r.known} inputs): {run.known_why(r.target)}")
    if found:
        click.echo(f"findings written to {FINDINGS}", err=True)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
