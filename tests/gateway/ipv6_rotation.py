"""An IPv6 peer rotating through its /64 against a real gateway (issue 15, finding 5).

Runs inside a network namespace of its own (tests/gateway/test_ipv6_rotation.py starts
it with `unshare -rn`): it brings `lo` up, adds fd15::1-40, fd16::2 and fd17::1-21
(each block a /64) to it, starts a gateway listening on `::` and then

* rate: 40 inbound handshakes, one from each fd15:: address, each a new node id, far
  above the per-address connection rate (burst 5, almost no refill);
* ban: a manual ban of fd17::1 through the gateway's control view, then 20 handshakes
  from fd17::2-21;
* honest: one handshake from ::1 and one from fd16::2 after both.

It prints one JSON line with how many of each were accepted and what the gateway
counted; the test asserts on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from peerkit import fast_tuning, start_node, stop_node, wait_until

from loragate.bans import net_target
from loragate.manager import PeerManager
from loragate.session import HandshakeFailed, PeerSession
from loragate.transport import FrameStream
from lorawire.identity import Identity
from lorawire.record import KIND_FULL, encode_record

ATTACK = [f"fd15::{i:x}" for i in range(1, 41)]
BANNED = [f"fd17::{i:x}" for i in range(1, 22)]
HONEST = ["::1", "fd16::2"]
BURST = 5


def add_addresses() -> None:
    cmds = [["ip", "link", "set", "lo", "up"]]
    for a in ATTACK + BANNED + HONEST[1:]:
        cmds.append(["ip", "-6", "addr", "add", f"{a}/64", "dev", "lo", "nodad"])
    for cmd in cmds:
        subprocess.run(cmd, check=True, capture_output=True)


async def handshake_from(gw: PeerManager, src: str) -> bool:
    """A new node id completes a handshake from `src`; False if the gateway refuses."""
    ident = Identity.generate()
    packed = ipaddress.ip_address(src).packed
    record = encode_record({"kind": KIND_FULL, "seq": 1, "endpoints": [(packed, 1)]}, ident)
    r, w = await asyncio.open_connection("::1", gw.listen_addr[1], local_addr=(src, 0))
    s = PeerSession(FrameStream(r, w), ident, record, outbound=True, handshake_timeout_s=5)
    try:
        await s.handshake()
    except HandshakeFailed:
        return False
    s.start()
    return True


async def scenario(tmp: Path) -> dict[str, object]:
    tuning = fast_tuning(conn_rate=0.001, conn_burst=float(BURST))
    gw = await start_node(tmp, "::", outbound_target=0, inbound_cap=128, tuning=tuning)
    try:
        rate = [await handshake_from(gw, a) for a in ATTACK]
        ban = await gw.ban(net_target(BANNED[0]), None, "test")
        refused_before = gw.stats["refused_banned"]
        banned = [await handshake_from(gw, a) for a in BANNED[1:]]
        honest = [await handshake_from(gw, a) for a in HONEST]
        honest_hosts = {ipaddress.ip_address(h) for h in HONEST}

        def connected() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
            return {ipaddress.ip_address(s.host) for s in gw.sessions()}

        await wait_until(lambda: honest_hosts <= connected())
        return {
            "rate_accepted": sum(rate),
            "rate_attempts": len(rate),
            "refused_rate": gw.stats["refused_rate"],
            "rate_ban": [str(b.target) for b in gw.banman.bans() if "fd15" in str(b.target)],
            "ban_target": str(ban.target),
            "banned_accepted": sum(banned),
            "banned_attempts": len(banned),
            "refused_banned_after_ban": gw.stats["refused_banned"] - refused_before,
            "honest_accepted": sum(honest),
            "connected": sorted(str(h) for h in connected()),
        }
    finally:
        await stop_node(gw)


def main() -> None:
    add_addresses()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(scenario(Path(tmp)))
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
