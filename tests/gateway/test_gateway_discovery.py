"""A running gateway seeds its address book from DNS: run_gateway wires Discovery in."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from dns_server import DnsServer

from loragate.config import load
from loragate.control import call
from loragate.runner import run_gateway

ZONE = {"seed.lorachain.test.": ["127.41.0.1", "127.42.0.1", "127.43.0.1"]}


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def test_dns_seed_addresses_reach_the_running_gateways_book(tmp_path: Path) -> None:
    # Seeds give bare IPs; they are paired with the network's port, our listen port.
    listen_port = _free_port("127.40.0.1")
    async with DnsServer(ZONE) as dns:
        host, port = dns.endpoint
        cfg = load(
            overrides={
                "data_dir": str(tmp_path / "gw"),
                "listen_host": "127.40.0.1",
                "listen_port": listen_port,
                "dns_seeds": ["seed.lorachain.test."],
                "dns_resolver": f"{host}:{port}",
                "outbound_target": 0,
            }
        )
        stop = asyncio.Event()
        gateway = asyncio.create_task(run_gateway(cfg, stop=stop))
        try:
            status: dict[str, int] = {}
            for _ in range(100):
                await asyncio.sleep(0.1)
                if cfg.control_path.exists():
                    status = await call(cfg.control_path, "status")
                    if status["addrman_new"] + status["addrman_tried"] >= 3:
                        break
            assert status["addrman_new"] + status["addrman_tried"] == 3
        finally:
            stop.set()
            await asyncio.wait_for(gateway, 20)
