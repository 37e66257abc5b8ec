"""`python -m tools.demo` (`make run`): the whole network on this machine, live.

    python -m tools.demo [--nodes 8] [--speed 10] [--duration SECONDS] [--plain]
                         [--workdir DIR] [--seed N] [--tx-interval S]

Starts the simulated LoRa mesh, the bridge board on a pseudo-terminal, the gateway and
three internet peers (tools/demo/network.py), then shows the live view
(tools/demo/liveview.py) until Ctrl-C (or SIGTERM, or --duration). Every process it
started is stopped before it exits; exit status 0 (1 if the network could not start,
with one line saying why and where the logs are).
"""

from __future__ import annotations

import shutil
import signal
import sys
import threading
from types import FrameType

import click

from tools.demo.liveview import run_view
from tools.demo.network import Network


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--nodes", default=8, show_default=True, type=click.IntRange(2, 8))
@click.option(
    "--speed",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=1.0, max=50.0),
    help="Simulated radio time runs this many times faster than real time.",
)
@click.option("--duration", default=None, type=click.FloatRange(min=0), help="Stop after N s.")
@click.option("--plain", is_flag=True, help="Print snapshots instead of redrawing the screen.")
@click.option("--workdir", default=None, help="Keep every process's files and logs here.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--tx-interval",
    default=12.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between transactions made on the mesh and on the internet (0: none; "
    "the gateway offers at most 6 a minute per internet origin to the mesh).",
)
def main(
    nodes: int,
    speed: float,
    duration: float | None,
    plain: bool,
    workdir: str | None,
    seed: int,
    tx_interval: float,
) -> None:
    """Run the Lorachain demo network and show it live."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            stop.set()
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # Ctrl-C, kill, terminal closed
        signal.signal(sig, on_signal)
    plain = plain or not sys.stdout.isatty()
    net = Network(workdir, nodes=nodes, speed=speed, seed=seed, tx_every=tx_interval)
    status = 0
    try:
        click.echo(f"Lorachain demo: files and logs in {net.workdir}")
        net.start(step=lambda text: click.echo(f"  {text} ..."))
        click.echo("  everything is up; the live view follows (Ctrl-C stops everything)")
        size = shutil.get_terminal_size((120, 60))  # COLUMNS / LINES, else the terminal's
        run_view(
            net,
            duration=duration,
            plain=plain,
            tx_interval=tx_interval,
            width=max(80, size.columns),
            height=max(24, size.lines),
            should_stop=stop.is_set,
        )
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        click.echo(f"error: {str(exc).splitlines()[0]} (logs in {net.workdir})", err=True)
        status = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
        click.echo("stopping every process ...")
        net.stop()
        click.echo("stopped.")
    sys.exit(status)


if __name__ == "__main__":
    main(prog_name="python -m tools.demo")
