"""`python -m tools.meshsim --topology FILE --port N --speed X [--seed S] [--frames LOG]`.

Prints one line `meshsim listening on HOST:PORT speed X` (flushed; with --port 0
the line tells which port was taken), runs until SIGINT/SIGTERM, then prints the
counters and exits 0. A bad topology or option prints one line (`Error: ...`)
and exits non-zero (1 for a bad file or a port in use, 2 for a bad option).
With --frames, every transmission is appended to LOG as one JSON line (the simulated
start, the sender, length, time on air, message type and hop count), so a run's airtime
can be split by time and purpose afterwards (tests/tools/test_dessim_fidelity.py).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import TextIO

import click

from lorawire.simproto import DEFAULT_HOST, DEFAULT_PORT

from .air import Transmission
from .medium import Medium, frame_record, serve
from .topology import load


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--topology", "topology_path", required=True, help="Topology JSON file.")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to bind.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Time acceleration: 10 means one simulated second takes 0.1 s.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the link losses.")
@click.option("--json", "as_json", is_flag=True, help="Print the final stats as JSON.")
@click.option(
    "--frames",
    "frames_path",
    default=None,
    help="Append one JSON line per transmission to this file (medium.frame_record).",
)
def main(
    topology_path: str,
    host: str,
    port: int,
    speed: float,
    seed: int,
    as_json: bool,
    frames_path: str | None,
) -> None:
    """Run the simulated LoRa medium."""
    try:
        topo = load(topology_path)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    log: TextIO | None = None
    if frames_path is not None:
        try:
            log = open(frames_path, "a", buffering=1)  # noqa: SIM115 - closed below
        except OSError as e:
            raise click.ClickException(f"cannot open {frames_path}: {e.strerror or e}") from None

    def on_transmit(tx: Transmission) -> None:
        if log is not None:
            log.write(json.dumps(frame_record(tx)) + "\n")

    async def run() -> Medium:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(addr: tuple[str, int]) -> None:
            print(f"meshsim listening on {addr[0]}:{addr[1]} speed {speed:g}", flush=True)

        return await serve(
            topo,
            host=host,
            port=port,
            speed=speed,
            seed=seed,
            ready=ready,
            stop=stop,
            on_transmit=on_transmit if log is not None else None,
        )

    try:
        medium = asyncio.run(run())
    except OSError as e:
        raise click.ClickException(f"cannot bind {host}:{port}: {e.strerror or e}") from None
    finally:
        if log is not None:
            log.close()
    if as_json:
        print(json.dumps(medium.stats(), sort_keys=True), flush=True)
    else:
        print(medium.summary(), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main(prog_name="python -m tools.meshsim")
