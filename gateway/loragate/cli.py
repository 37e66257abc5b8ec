"""The `loragate` command line."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lorachain-peers")
def cli() -> None:
    """Lorachain gateway: bridges a LoRa mesh to internet peers and manages who to talk to."""


def main() -> None:
    cli()
