"""Helpers for tests that run real PeerManagers on distinct 127.x.y.z addresses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loragate.config import GatewayConfig
from loragate.liveview import RunningGatewayView
from loragate.manager import PeerManager
from loragate.metrics import GatewayMetrics
from loragate.session import PeerSession
from loragate.store import AsyncStore
from loragate.tuning import ManagerTuning
from lorawire import messages
from lorawire.identity import Identity


def fast_tuning(**kw: Any) -> ManagerTuning:
    base: dict[str, Any] = dict(
        outbound_interval_s=0.1,
        feeler_interval_s=3600.0,
        maintenance_interval_s=0.5,
        persist_interval_s=5.0,
        connect_timeout_s=2.0,
        backoff_base_s=0.2,
        backoff_max_s=2.0,
        good_session_s=0.5,
    )
    base.update(kw)
    return ManagerTuning(**base)


def make_cfg(tmp_path: Path, name: str, host: str, **kw: Any) -> GatewayConfig:
    cfg = GatewayConfig(data_dir=tmp_path / name, listen_host=host, listen_port=0)
    bans = kw.pop("ban_threshold", None)
    if bans is not None:
        cfg.bans.threshold = bans
    for key, value in kw.items():
        setattr(cfg, key, value)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    cfg.handshake_timeout_s = kw.get("handshake_timeout_s", 3.0)
    return cfg


async def start_node(
    tmp_path: Path,
    host: str,
    *,
    name: str | None = None,
    validator: Callable[[str, bytes], bool | None] | None = None,
    tuning: ManagerTuning | None = None,
    identity: Identity | None = None,
    metrics: GatewayMetrics | None = None,
    **cfg_kw: Any,
) -> PeerManager:
    cfg = make_cfg(tmp_path, name or host, host, **cfg_kw)
    store = await AsyncStore.open(cfg.db_path)
    m = PeerManager(
        cfg,
        identity or Identity.generate(),
        store,
        metrics,
        validator=validator,
        tuning=tuning or fast_tuning(),
    )
    await m.start()
    return m


async def stop_node(m: PeerManager) -> None:
    await m.stop()
    await m.store.close()


def view(m: PeerManager) -> RunningGatewayView:
    """What the control socket of a gateway running `m` answers."""
    return RunningGatewayView(m)


def objects_of(m: PeerManager) -> list[tuple[str, bytes]]:
    """(kind, payload) of every new valid object `m`'s relay accepts from now on."""
    got: list[tuple[str, bytes]] = []
    m.relay.on_object.add(lambda kind, payload, source: got.append((kind, payload)))
    return got


def endpoint(m: PeerManager) -> str:
    return f"{m.listen_addr[0]}:{m.listen_addr[1]}"


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout:.1f}s")
        await asyncio.sleep(step)


def drain(sub: Any) -> list[Any]:
    """Every event an event-bus subscription holds now."""
    out = []
    while not sub.queue.empty():
        out.append(sub.get_nowait())
    return out


class SlowPong(PeerSession):
    """A client that answers pings 150 ms late (a distant peer: no low-latency protection)."""

    def send(self, msg_type: int, fields: object, prio: int = 0) -> bool:
        if msg_type == messages.PONG:
            loop = asyncio.get_running_loop()
            loop.call_later(0.15, lambda: PeerSession.send(self, msg_type, fields, prio))
            return True
        return super().send(msg_type, fields, prio)
