"""A running-gateway view for the control socket's and the CLI's tests.

`LiveView` is a real `view.GatewayView` without connections: bans go through a
BanManager to memory and to the SQLite file at once (as the running gateway's do), the
peers are a fixed list, so a test can compare what a command prints with what the view
holds. The `live_view` fixture (tests/gateway/conftest.py) opens and closes them.
"""

from __future__ import annotations

import time
from pathlib import Path

from loragate.bans import BanManager, parse_target
from loragate.store import AsyncStore
from loragate.view import (
    BanInfo,
    PeerInfo,
    StatusInfo,
    UnbanInfo,
    ban_info,
    check_target,
)


def peer(node: str, address: str | None, kind: str, direction: str, score: float) -> PeerInfo:
    return PeerInfo(
        node_id=node,
        address=address,
        kind=kind,
        state="connected" if address else "heard",
        direction=direction,
        score=score,
        points=20.0 if address else 0.0,
        ban_threshold=100,
        manual=False,
        latency_ms=12.5 if address else None,
        rssi=None if address else -97.0,
        snr=None if address else 6.5,
        hops=None if address else 2,
        connected_since=time.time() - 300,
        last_seen=time.time(),
        bytes_in=1234,
        bytes_out=5678,
        group="ipv4 127.2.0.0/16" if address else "mesh 0102030405060708",
    )


# What mesh.side.MeshSide.bridge_info gives for a bridge that is up.
BRIDGE = {
    "state": "up",
    "since": time.time() - 600,
    "serial": "connected",
    "port": "/dev/ttyUSB0",
    "last_error": None,
    "last_hello": time.time() - 590,
    "board_id": "0102030405060708",
    "firmware": "loranode-test",
    "region": "EU868",
    "frequency_hz": 868100000,
    "tx_power_dbm": 14,
    "sf": 9,
    "bandwidth_hz": 125000,
    "coding_rate": 5,
    "airtime_used_ms": 1200,
    "airtime_budget_ms": 36000,
    "budget_left_ms": 34800,
    "budget_exhausted": False,
    "downlink": {"queued": 2, "sent": 40, "inv_items_offered": 12, "refused": 3},
}


class LiveView:
    """A real running-gateway view for tests: a BanManager persisted through AsyncStore.

    It is what the peer manager will do, minus connections: bans go to memory and to the
    SQLite file at once, peers are a fixed list.
    """

    def __init__(self, store: AsyncStore, bm: BanManager, db: Path) -> None:
        self.store = store
        self.bm = bm
        self.db = db
        self.started = time.time()
        self.calls = 0
        self.peer_list = [
            peer("b1b2b3b4b5b6b7b8", "127.2.0.5:8333", "full", "out", 71.5),
            peer("c1c2c3c4c5c6c7c8", "127.3.0.9:40211", "light", "in", 48.0),
            peer("d1d2d3d4d5d6d7d8", None, "mesh", "mesh", 55.25),
        ]

    @classmethod
    async def open(cls, db: Path) -> LiveView:
        store = await AsyncStore.open(db)
        bans, counts = await store.load_bans()
        bm = BanManager(sink=store)
        bm.restore(bans, counts)
        return cls(store, bm, db)

    async def close(self) -> None:
        await self.store.close()

    async def peers(self) -> list[PeerInfo]:
        self.calls += 1
        return list(self.peer_list)

    async def bans(self) -> list[BanInfo]:
        self.calls += 1
        now = time.time()
        return [
            ban_info(b, list(reversed(self.bm.evidence(b.target))))
            for b in self.bm.bans()
            if b.active(now)
        ]

    async def status(self) -> StatusInfo:
        self.calls += 1
        return StatusInfo(
            state="running",
            node_id="e1e2e3e4e5e6e7e8",
            version="test",
            uptime_s=time.time() - self.started + 3725,
            listen="127.0.0.1:18333",
            peers_total=3,
            peers_by_kind={"full": 1, "light": 1, "mesh": 1},
            peers_by_direction={"in": 1, "out": 1, "mesh": 1},
            addrman_new=120,
            addrman_tried=7,
            bans_active=len(self.bm),
            relayed={"tx": 10, "block": 2, "inv": 40},
            airtime={"used_ms": 1200.0, "budget_ms": 36000.0, "window_s": 3600.0},
            database=str(self.db),
            outbound=1,
            outbound_target=8,
            inbound=1,
            inbound_cap=32,
            bridge=BRIDGE,
            metrics_url="http://127.0.0.1:9464/metrics",
        )

    async def ban(self, target: str, duration_s: float | None, reason: str) -> BanInfo:
        t = parse_target(check_target(target))
        b = self.bm.ban(t, duration_s=duration_s, permanent=duration_s is None, reason=reason)
        return ban_info(b, self.bm.evidence(t))

    async def unban(self, target: str) -> UnbanInfo:
        t = parse_target(check_target(target))
        return UnbanInfo(target=str(t), removed=self.bm.unban(t))
