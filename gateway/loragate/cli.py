"""The `loragate` command line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from loragate import keys

F = TypeVar("F", bound=Callable[..., Any])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lorachain-peers")
def cli() -> None:
    """Lorachain gateway: bridges a LoRa mesh to internet peers and manages who to talk to."""


def data_dir_option(func: F) -> F:
    """`--data-dir`, also from $LORAGATE_DATA_DIR; None means the platform default."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=keys.DATA_DIR_ENV,
        default=None,
        help="Directory for the key, database and control socket "
        "(default: the user data directory; env LORAGATE_DATA_DIR).",
    )(func)


@cli.command()
@data_dir_option
@click.option("--force", is_flag=True, help="Replace an existing key (the node id changes).")
def keygen(data_dir: Path | None, force: bool) -> None:
    """Create this gateway's node key and print its node id."""
    path = keys.key_path(data_dir)
    try:
        identity = keys.create_identity(path, force=force)
    except keys.KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {path}", err=True)
    click.echo(identity.hex_id())


@cli.command("id")
@data_dir_option
def show_id(data_dir: Path | None) -> None:
    """Print the node id of the existing key."""
    try:
        identity = keys.load_identity(keys.key_path(data_dir))
    except keys.KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(identity.hex_id())


def main() -> None:
    cli()
