"""A well-behaved internet peer that also makes transactions (demo and e2e tests).

    python -m tools.demo.peer --data-dir DIR --host 127.12.0.1 --connect HOST:PORT
                              [--tx-every SECONDS]

It is the real gateway peer manager (`loragate.manager.PeerManager`, SQLite store,
control socket in DIR) with no bridge, plus two things `loragate run` has no command for:
  * every `--tx-every` seconds (0: never) it creates a transaction of random bytes and
    relays it (`submit_local`), printing `TXNEW <sha256 hex>`;
  * stdin `tx <hex>` creates one with those bytes now;
  * every new valid object it receives prints `OBJ <kind> <sha256 hex> <sender id>`.
Exits 0 on SIGINT/SIGTERM after a clean shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import click

from loragate import keys
from loragate.config import GatewayConfig
from loragate.control import ControlServer
from loragate.liveview import RunningGatewayView
from loragate.manager import PeerManager
from loragate.relay import RelayPeer, object_hash
from loragate.store import AsyncStore

TX_BYTES = 48


def say(text: str) -> None:
    print(text, flush=True)


async def run(data_dir: Path, host: str, connect: list[str], tx_every: float) -> None:
    cfg = GatewayConfig(data_dir=data_dir, listen_host=host, listen_port=0, connect=connect)
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if cfg.key_path.exists():
        identity = keys.load_identity(cfg.key_path)
    else:
        identity = keys.create_identity(cfg.key_path)
    store = await AsyncStore.open(cfg.db_path)
    manager = PeerManager(cfg, identity, store)

    def on_object(kind: str, payload: bytes, source: RelayPeer | None) -> None:
        nid = None if source is None else source.node_id
        who = nid.hex() if isinstance(nid, bytes) else "local"
        say(f"OBJ {kind} {object_hash(payload).hex()} {who}")

    manager.relay.on_object.add(on_object)
    control = ControlServer(RunningGatewayView(manager), cfg.control_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def make_tx(raw: bytes) -> None:
        h = manager.submit_local("tx", raw)
        say(f"TXNEW {h.hex()}")

    def on_stdin() -> None:
        line = sys.stdin.readline()
        if not line:
            loop.remove_reader(sys.stdin.fileno())
            return
        cmd = line.strip()
        if cmd.startswith("tx "):
            with contextlib.suppress(ValueError):
                make_tx(bytes.fromhex(cmd[3:].strip()))
        elif cmd == "quit":
            stop.set()

    try:
        await manager.start()
        await control.start()
        say(
            f"PEER {identity.hex_id()} listening on {manager.listen_addr[0]}:"
            f"{manager.listen_addr[1]}"
        )
        with contextlib.suppress(OSError, ValueError, PermissionError):
            loop.add_reader(sys.stdin.fileno(), on_stdin)
        while not stop.is_set():
            wait = tx_every if tx_every > 0 else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if not stop.is_set() and tx_every > 0:
                make_tx(os.urandom(TX_BYTES))
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(sys.stdin.fileno())
        await control.close()
        await manager.stop()
        await store.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.12.0.1", show_default=True, help="Listen address.")
@click.option("--connect", multiple=True, help="HOST:PORT to keep connected. Repeatable.")
@click.option("--tx-every", default=0.0, show_default=True, type=click.FloatRange(min=0))
def main(data_dir: Path, host: str, connect: tuple[str, ...], tx_every: float) -> None:
    """An internet peer that makes transactions and prints what it receives."""
    asyncio.run(run(data_dir, host, list(connect), tx_every))
    sys.exit(0)


if __name__ == "__main__":
    main(prog_name="python -m tools.demo.peer")
