"""The gateway process: the one place where the parts are built and wired together.

`run_gateway(cfg)`: the data dir's lock (`datadir.DataDirLock`, held from before the
database is opened until after it is closed, so an offline `loragate ban` can never fall
between the read of the bans at start and the opening of the control socket), the node
key, the store, the metrics and the event bus, the peer
manager, discovery, with a serial port the mesh wing (`start_mesh`: serial link, link
session, `mesh.side.MeshSide` on the manager as its `MeshHost`), the control socket
over `liveview.RunningGatewayView`, and the metrics endpoint; until SIGINT/SIGTERM,
then everything is stopped in reverse order and the store flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from loragate import keys
from loragate.config import GatewayConfig
from loragate.control import ControlError, ControlServer, is_running
from loragate.datadir import DataDirLock
from loragate.discovery import Discovery
from loragate.eventlog import EventLog
from loragate.events import EventBus
from loragate.liveview import RunningGatewayView
from loragate.manager import PeerManager
from loragate.mesh.link import MeshLink
from loragate.mesh.serial import SerialLink
from loragate.mesh.side import MeshSide
from loragate.mesh.tuning import MeshTuning
from loragate.metrics import GatewayMetrics
from loragate.peertable import join_addr
from loragate.store import AsyncStore
from loragate.view import version

log = logging.getLogger(__name__)

# Another holder of the data dir's lock that is not a running gateway is a CLI command
# (milliseconds) or a gateway starting or stopping: wait this long for it, then refuse.
LOCK_WAIT_S = 15.0
LOCK_POLL_S = 0.05


async def start_mesh(
    cfg: GatewayConfig, manager: PeerManager, *, tuning: MeshTuning | None = None
) -> MeshSide | None:
    """The mesh wing for `cfg.serial_port` (None when no port is configured): serial
    link, link session and MeshSide, started after `manager.start()`. `close()` on the
    result stops all three. The port may be absent at start: SerialLink keeps trying."""
    if not cfg.serial_port:
        return None
    serial = SerialLink(cfg.serial_port, cfg.serial_baud)
    link = MeshLink(serial, node_id=manager.identity.id)
    side = MeshSide(cfg, manager, link, tuning=tuning, own_link=True)
    await side.start()  # listeners in place before the first frame arrives
    await link.start()
    return side


async def lock_data_dir(cfg: GatewayConfig, wait_s: float = LOCK_WAIT_S) -> DataDirLock:
    """The data dir's lock, held; `ControlError` if a gateway is running there or the
    lock stays held by someone else for `wait_s` seconds."""
    lock = DataDirLock(cfg.data_dir)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while not lock.try_acquire():
        if await is_running(cfg.control_path):
            raise ControlError(
                f"a gateway is already running with data dir {cfg.data_dir} "
                f"(control socket {cfg.control_path})"
            )
        if loop.time() >= deadline:
            raise ControlError(
                f"data dir {cfg.data_dir} stays locked by {lock.describe_holder()} "
                f"({lock.path}; another gateway starting or stopping?)"
            )
        await asyncio.sleep(LOCK_POLL_S)
    return lock


async def run_gateway(cfg: GatewayConfig, *, stop: asyncio.Event | None = None) -> None:
    """The gateway process: lock the data dir, load or create the key, open the store,
    run the manager, the control socket and (if `metrics_port`) the metrics endpoint
    until SIGINT/SIGTERM (or `stop` is set), then shut down cleanly, flush the store and
    let go of the lock."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = await lock_data_dir(cfg)
    try:
        await _run_locked(cfg, stop)
    finally:
        lock.release()  # after the store is closed: the database is the CLI's now


async def _run_locked(cfg: GatewayConfig, stop: asyncio.Event | None) -> None:
    if cfg.key_path.exists():
        identity = keys.load_identity(cfg.key_path)
    else:
        identity = keys.create_identity(cfg.key_path)
    cfg.require_network_key()  # a bad key file is a config error now, not later
    store = await AsyncStore.open(cfg.db_path)
    bus = EventBus()
    EventLog(bus)  # the life-cycle lines of the journal
    metrics: GatewayMetrics | None = None
    try:
        metrics = GatewayMetrics(version=version())
        metrics.attach(bus)
    except Exception:  # metrics are optional
        log.warning("metrics unavailable", exc_info=True)
        metrics = None
    manager = PeerManager(cfg, identity, store, metrics, bus)
    mesh: MeshSide | None = None

    def bridge() -> dict[str, Any] | None:
        return None if mesh is None else mesh.bridge_info()

    metrics_url = None
    if metrics is not None and cfg.metrics_port:
        metrics_url = f"http://{join_addr((cfg.metrics_host, cfg.metrics_port))}/metrics"
    view = RunningGatewayView(manager, bridge=bridge, metrics_url=metrics_url)
    control = ControlServer(view, cfg.control_path)
    done = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, done.set)
            handled.append(sig)

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
        mesh = await start_mesh(cfg, manager)
        await control.start()
        if metrics is not None and cfg.metrics_port:
            metrics.start_http(cfg.metrics_host, cfg.metrics_port)
            log.info("metrics on %s", metrics_url)
        await done.wait()
        log.info("shutting down")
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await control.close()
        await discovery.stop()
        if mesh is not None:
            side, mesh = mesh, None
            with contextlib.suppress(Exception):
                await side.close()
        await manager.stop()
        if metrics is not None:
            with contextlib.suppress(Exception):
                metrics.stop_http()
        await store.close()
