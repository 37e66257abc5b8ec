"""The gateway process: `run_gateway(cfg)` wires key, store, manager, discovery, mesh,
control socket and metrics together and runs them until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from loragate import keys
from loragate.config import GatewayConfig
from loragate.events import EventBus
from loragate.store import AsyncStore
from loragate.view import version

# One logger for the whole peer manager: log lines keep naming "loragate.manager".
log = logging.getLogger("loragate.manager")


async def run_gateway(cfg: GatewayConfig, *, stop: asyncio.Event | None = None) -> None:
    """The gateway process: load or create the key, open the store, run the manager,
    the control socket and (if `metrics_port`) the metrics endpoint until SIGINT/SIGTERM
    (or `stop` is set), then shut down cleanly and flush the store."""
    from loragate.control import ControlServer
    from loragate.manager import PeerManager  # the manager re-exports run_gateway

    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if cfg.key_path.exists():
        identity = keys.load_identity(cfg.key_path)
    else:
        identity = keys.create_identity(cfg.key_path)
    cfg.network_key_bytes()  # a bad key file is a config error now, not later
    store = await AsyncStore.open(cfg.db_path)
    metrics: Any = None
    bus = EventBus()
    try:
        from loragate.metrics import GatewayMetrics

        metrics = GatewayMetrics(version=version())
        metrics.attach(bus)
    except Exception:  # metrics are optional
        log.warning("metrics unavailable", exc_info=True)
        metrics = None
    manager = PeerManager(cfg, identity, store, metrics, bus)
    control = ControlServer(manager, cfg.control_path)
    done = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, done.set)
            handled.append(sig)
    mesh: Any = None
    from loragate.discovery import Discovery

    def discovered(addrs: list[tuple[str, int]], source: str | None, kind: str) -> None:
        manager.add_addresses(addrs, source, kind)

    discovery = Discovery(
        cfg,
        discovered,
        identity.hex_id(),
        cfg.listen_port,
        book_size=lambda: len(manager.book),
    )
    try:
        await manager.start()
        await discovery.start()
        if cfg.serial_port:
            from loragate.mesh import start_mesh  # mesh imports loragate.manager

            mesh = manager.mesh_side = await start_mesh(cfg, manager)
        await control.start()
        if metrics is not None and cfg.metrics_port:
            port = metrics.start_http(cfg.metrics_host, cfg.metrics_port)
            log.info("metrics on http://%s:%d/metrics", cfg.metrics_host, port)
        await done.wait()
        log.info("shutting down")
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await control.close()
        await discovery.stop()
        if mesh is not None:
            manager.mesh_side = None
            with contextlib.suppress(Exception):
                await mesh.close()
        await manager.stop()
        if metrics is not None:
            with contextlib.suppress(Exception):
                metrics.stop_http()
        await store.close()
