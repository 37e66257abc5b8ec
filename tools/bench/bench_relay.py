"""Relay benchmark: transaction frames relayed per second by the middle of a chain.

Three gateways A -> B -> C run in this process on one event loop (so on one core, and
the three share it: the figure is a lower bound for a gateway with a core to itself),
connected over real loopback TCP with authenticated sessions. A creates N
transactions; they travel A -INV-> B -GETDATA-> A -TX-> B -INV-> C -GETDATA-> B -TX-> C.
The figure is the TX frames B sent to C per CPU second of the process (robust to a
busy machine; wall time is printed too) until C had them all.
Rate limits are lifted for the run (the defaults cap a peer at 500 frames/s).

Run: ``.venv/bin/python -m tools.bench.bench_relay`` (or call ``main()``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
for _p in (str(_ROOT / "gateway"), str(_ROOT / "shared")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from loragate.config import GatewayConfig  # noqa: E402
from loragate.manager import PeerManager  # noqa: E402
from loragate.relay import RelayLimits  # noqa: E402
from loragate.session import SessionLimits  # noqa: E402
from loragate.store import AsyncStore  # noqa: E402
from loragate.tuning import ManagerTuning  # noqa: E402
from lorawire.identity import Identity  # noqa: E402

N_TX = 20_000
TX_SIZE = 200
BIG = 1e12


def _tuning() -> ManagerTuning:
    return ManagerTuning(
        outbound_interval_s=0.05,
        feeler_interval_s=1e6,
        maintenance_interval_s=1e6,
        persist_interval_s=1e6,
        session=SessionLimits(frame_rate=BIG, frame_burst=BIG, queue_max=10 * N_TX),
        relay=RelayLimits(
            inv_item_rate=BIG,
            inv_item_burst=BIG,
            object_rate=BIG,
            object_burst=BIG,
            inflight_max=10 * N_TX,
            store_max_objects=10 * N_TX,
        ),
    )


async def _node(tmp: Path, host: str, connect: list[str]) -> PeerManager:
    cfg = GatewayConfig(
        data_dir=tmp / host, listen_host=host, listen_port=0, outbound_target=0, connect=connect
    )
    cfg.data_dir.mkdir(parents=True)
    store = await AsyncStore.open(cfg.db_path)
    m = PeerManager(cfg, Identity.generate(), store, tuning=_tuning())
    await m.start()
    return m


async def _wait(pred: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError("bench timed out")
        await asyncio.sleep(0.005)


async def run(n_tx: int = N_TX) -> tuple[float, int, float, float]:
    """(frames/s relayed by B per CPU second, frames, wall seconds, CPU seconds)."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        c = await _node(tmp, "127.77.0.3", [])
        b = await _node(tmp, "127.77.1.2", [f"127.77.0.3:{c.listen_addr[1]}"])
        a = await _node(tmp, "127.77.2.1", [f"127.77.1.2:{b.listen_addr[1]}"])
        nodes = (a, b, c)
        try:
            await _wait(lambda: a.peer_count == 1 and c.peer_count == 1, 10)
            payloads = [os.urandom(TX_SIZE) for _ in range(n_tx)]
            t0 = time.perf_counter()
            c0 = time.process_time()
            for i in range(0, n_tx, 256):
                for p in payloads[i : i + 256]:
                    a.submit_local("tx", p)
                await asyncio.sleep(0)
            await _wait(lambda: c.relay.received["tx"] >= n_tx, 300)
            dt = time.perf_counter() - t0
            cpu = time.process_time() - c0
            sent = b.relay.relayed["tx"]
            return sent / cpu, sent, dt, cpu
        finally:
            for m in nodes:
                await m.stop()
                await m.store.close()


def main(n_tx: int = N_TX) -> None:
    """Print the figure for n_tx transactions (fewer: a smoke run)."""
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        rate, frames, wall, cpu = asyncio.run(run(n_tx))
    finally:
        logging.disable(before)  # the caller's logging as it was
    print(
        f"relay: {rate:.0f} frames/s on one core over loopback "
        f"({frames} tx frames relayed by B in {cpu:.2f} CPU s, {wall:.2f} s wall; "
        "A, B and C share the core)"
    )


if __name__ == "__main__":
    main()
