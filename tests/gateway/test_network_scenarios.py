"""Network scenarios of issue 5 on real loopback sockets (slow: seconds each).

* 50 gateways on 50 distinct /16s connect and gossip one transaction to everybody.
* One /16 announcing 10,000 addresses gets at most max_outbound_per_group slots.
* A peer that sends invalid data is banned, and still banned after SIGKILL + restart.
* Backoff grows ~2x per failure within the jitter bounds and resets after a good session.
* Inbound eviction drops an unprotected peer of the most crowded group and keeps the
  peers protected for latency and for recently relayed transactions and blocks.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from peerkit import SlowPong, fast_tuning, start_node, stop_node, wait_until

from loragate import control
from loragate.addrman import BUCKET_SIZE
from loragate.events import EventKind
from loragate.netgroup import group_of
from loragate.session import PRIO_BLOCK, PRIO_TX, HandshakeFailed, PeerSession
from loragate.transport import FrameStream
from lorawire import messages
from lorawire.identity import Identity
from lorawire.record import KIND_FULL, decode_record, encode_record
from tools import procs

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def record_for(ident: Identity, src: str, port: int = 1) -> bytes:
    host = bytes(int(x) for x in src.split("."))
    return encode_record({"kind": KIND_FULL, "seq": 1, "endpoints": [(host, port)]}, ident)


async def raw_client(
    addr: tuple[str, int], src: str, ident: Identity | None = None, cls: type = PeerSession
) -> PeerSession:
    ident = ident or Identity.generate()
    r, w = await asyncio.open_connection(*addr, local_addr=(src, 0))
    s = cls(FrameStream(r, w), ident, record_for(ident, src), outbound=True, handshake_timeout_s=5)
    await s.handshake()
    s.start()
    return s


async def test_fifty_gateways_connect_and_gossip(tmp_path) -> None:
    rng = random.Random(5)
    # 50 gateways share one event loop: under load its lag exceeds the usual 3 s handshake
    # timeout, every timed-out inbound handshake costs the dialler's address 10 points,
    # ten of them ban it for an hour, and the mesh never converges. Timeouts are not what
    # this test is about: make them longer than any lag.
    tuning = fast_tuning(
        outbound_interval_s=0.2, maintenance_interval_s=2.0, connect_timeout_s=60.0
    )
    nodes = []
    try:
        for i in range(1, 51):
            nodes.append(
                await start_node(
                    tmp_path,
                    f"127.{i}.0.1",
                    tuning=tuning,
                    outbound_target=4,
                    handshake_timeout_s=60.0,
                )
            )
        for n in nodes:  # a few bootstrap addresses each; PEX spreads the rest
            others = rng.sample([m for m in nodes if m is not n], 3)
            n.add_addresses([m.listen_addr for m in others])
        # 50 gateways share one event loop: on a loaded machine this takes minutes, and
        # the deadline only guards against never converging (not a speed goal).
        try:
            await wait_until(lambda: all(n.peer_count >= 4 for n in nodes), timeout=240)
        except AssertionError:
            short = {str(n.listen_addr): n.peer_count for n in nodes if n.peer_count < 4}
            bans = sum(len(n.banman) for n in nodes)
            raise AssertionError(f"below 4 peers: {short}; bans held: {bans}") from None
        for n in nodes:
            outs = [s for s in n.slots() if s.outbound]
            groups = [s.group for s in outs]
            assert len(set(groups)) == len(groups)  # one /16 each: no group twice
            assert len(outs) <= 4
        h = nodes[0].submit_local("tx", b"a transaction for everybody")
        await wait_until(lambda: all(n.relay.has(h) for n in nodes), timeout=120)
        # Gossip, not flooding: every node received the object exactly once.
        assert all(n.relay.received["tx"] == 1 for n in nodes[1:])
        # PEX taught nodes more than their three bootstrap addresses.
        assert sum(len(n.book) for n in nodes) / len(nodes) > 4
    finally:
        await asyncio.gather(*(stop_node(n) for n in nodes))


@pytest.mark.parametrize("sources", [1, 40])
async def test_outbound_stays_diverse_when_one_group_announces_10000(tmp_path, sources) -> None:
    honest = []
    attackers = []
    me = None
    try:
        for i in range(1, 13):
            honest.append(await start_node(tmp_path, f"127.{100 + i}.0.1", outbound_target=0))
        for i in range(1, 4):
            attackers.append(await start_node(tmp_path, f"127.200.0.{i}", outbound_target=0))
        me = await start_node(
            tmp_path, "127.99.0.1", outbound_target=8, tuning=fast_tuning(outbound_interval_s=0.05)
        )
        flood = [(f"127.200.{i // 250}.{i % 250 + 4}", 20000 + i % 1000) for i in range(10_000)]
        flood += [a.listen_addr for a in attackers]
        added = 0
        for k in range(sources):  # the flood told by one source, or relayed by 40 groups
            added += me.add_addresses(flood[k::sources], source=f"127.{k + 1}.9.9")
        # One address group announced by one source group maps to a single new bucket.
        assert 0 < added <= BUCKET_SIZE * sources
        if sources > 1:
            assert added > 1000
        me.add_addresses([h.listen_addr for h in honest], source=None)
        attacker_group = group_of("127.200.0.1")
        max_seen = 0
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            outs = [s for s in me.slots() if s.outbound]
            pending = [s for s in me.connector.pending_out.values() if not s.feeler]
            in_group = sum(1 for s in outs + pending if s.group == attacker_group)
            max_seen = max(max_seen, in_group)
            assert in_group <= me.cfg.max_outbound_per_group
            if len(outs) >= 8 and len({s.group for s in outs}) >= 8:
                break
            await asyncio.sleep(0.05)
        outs = [s for s in me.slots() if s.outbound]
        assert len(outs) == 8
        assert len({s.group for s in outs}) >= 7  # 8 slots, at most 2 share the flood's /16
        assert sum(1 for s in outs if s.group == attacker_group) <= 2
    finally:
        for n in [*honest, *attackers, *([me] if me else [])]:
            await stop_node(n)


RUNNER = """
import asyncio, sys
from pathlib import Path
from loragate.config import GatewayConfig
from loragate.runner import run_gateway
cfg = GatewayConfig(data_dir=Path(sys.argv[1]), listen_host=sys.argv[2],
                    listen_port=int(sys.argv[3]), handshake_timeout_s=5.0)
asyncio.run(run_gateway(cfg))
"""


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def spawn_gateway(data_dir: Path, host: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "shared"), str(ROOT / "gateway"), env.get("PYTHONPATH", "")]
    )
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(data_dir), host, str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **procs.child_options(new_session=False),
    )


async def wait_running(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "exited")
        try:
            await control.call(path, "status")
            return
        except (control.ControlError, OSError):
            await asyncio.sleep(0.1)
    raise AssertionError("gateway did not start")


async def test_ban_survives_sigkill_and_restart(tmp_path) -> None:
    host, port = "127.150.0.1", free_port("127.150.0.1")
    data = tmp_path / "gw"
    sock = data / "control.sock"
    proc = spawn_gateway(data, host, port)
    bad = Identity.generate()
    try:
        await wait_running(sock, proc)
        s = await raw_client((host, port), "127.151.0.1", bad)
        forged = dict(decode_record(record_for(Identity.generate(), "127.152.0.9")).value)
        forged[6] = bytes(64)  # a record with a signature that cannot verify
        s.send(messages.ANNOUNCE, forged, PRIO_TX)
        await wait_until(lambda: s.closed, timeout=10)
        bans = await control.call(sock, "bans")
        targets = {b["target"] for b in bans}
        assert targets == {f"node:{bad.hex_id()}", "127.151.0.1"}
        assert bans[0]["evidence"][0]["misbehaviour"] == "bad_signature"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        proc = spawn_gateway(data, host, port)  # the stale control socket is replaced
        await wait_running(sock, proc)
        bans = await control.call(sock, "bans")
        assert {b["target"] for b in bans} == targets
        # The banned address is refused before the handshake ...
        with pytest.raises(HandshakeFailed):
            await raw_client((host, port), "127.151.0.1", bad)
        # ... and the banned node id from any address right after it.
        s2 = await raw_client((host, port), "127.153.0.1", bad)
        await wait_until(lambda: s2.closed, timeout=10)
        peers = await control.call(sock, "peers")
        assert all(p["node_id"] != bad.hex_id() for p in peers)
        # An innocent peer is still welcome.
        ok = await raw_client((host, port), "127.154.0.1")
        await asyncio.sleep(0.3)
        assert not ok.closed
        await ok.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()


async def test_backoff_grows_and_resets(tmp_path) -> None:
    host = "127.160.0.1"
    port = free_port(host)
    accepted: list[float] = []

    async def refuse(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(time.monotonic())  # accept, then hang up: the handshake fails
        w.close()

    dead = await asyncio.start_server(refuse, host, port)
    base, jitter = 0.15, 0.25
    me = await start_node(
        tmp_path,
        "127.161.0.1",
        connect=[f"{host}:{port}"],
        outbound_target=0,
        ban_threshold=10_000,
        tuning=fast_tuning(
            outbound_interval_s=0.02, backoff_base_s=base, backoff_max_s=60.0, good_session_s=0.5
        ),
    )
    peer = None
    try:
        await wait_until(lambda: len(accepted) >= 5, timeout=20)
        gaps = [b - a for a, b in zip(accepted, accepted[1:], strict=False)][:4]
        for n, gap in enumerate(gaps):
            nominal = base * 2**n
            # never early; late only by the loop's tick and scheduling delays
            assert nominal * (1 - jitter) - 0.02 <= gap <= nominal * (1 + jitter) + 0.3, gaps
        assert me.backoff.failures((host, port)) >= 4
        # The address comes alive: the next dial succeeds and resets the backoff.
        dead.close()
        await dead.wait_closed()
        peer = await start_node(tmp_path, host, name="peer", outbound_target=0, listen_port=port)
        await wait_until(lambda: me.peer_count == 1, timeout=20)
        assert me.backoff.failures((host, port)) == 0
        await asyncio.sleep(0.8)  # a good session: longer than good_session_s
        await stop_node(peer)
        peer = None
        await wait_until(lambda: me.peer_count == 0)
        # Dead again: the delays start from the base once more.
        t_down = time.monotonic()
        await wait_until(lambda: me.backoff.failures((host, port)) >= 1, timeout=5)
        assert me.backoff.delay((host, port)) == base
        assert time.monotonic() - t_down < 2.0
    finally:
        if peer is not None:
            await stop_node(peer)
        await stop_node(me)
        dead.close()


async def test_eviction_protects_the_documented_peers(tmp_path) -> None:
    cap = 24
    g = await start_node(tmp_path, "127.170.0.1", inbound_cap=cap, outbound_target=0)
    sub = g.bus.subscribe()
    clients: dict[str, list[PeerSession]] = {"fast": [], "tx": [], "block": [], "plain": []}
    try:
        for i in range(8):
            clients["fast"].append(await raw_client(g.listen_addr, f"127.{171 + i}.0.1"))
        for i in range(4):
            s = await raw_client(g.listen_addr, f"127.{180 + i}.0.1", cls=SlowPong)
            s.send(messages.TX, {0: b"tx from %d" % i}, PRIO_TX)
            clients["tx"].append(s)
        for i in range(4):
            s = await raw_client(g.listen_addr, f"127.{185 + i}.0.1", cls=SlowPong)
            s.send(messages.BLOCK, {0: b"block from %d" % i}, PRIO_BLOCK)
            clients["block"].append(s)
        for i in range(8):  # one crowded /16, connected last
            clients["plain"].append(
                await raw_client(g.listen_addr, f"127.200.0.{i + 1}", cls=SlowPong)
            )
        await wait_until(lambda: g.peer_count == cap)
        await wait_until(lambda: g.relay.received["tx"] == 4 and g.relay.received["block"] == 4)
        await wait_until(lambda: all(p.session.min_ping_ms is not None for p in g.table))
        for p in g.table:
            p.slot.min_ping_ms = p.session.min_ping_ms
        newcomer = await raw_client(g.listen_addr, "127.201.0.1")
        await wait_until(lambda: newcomer.node_id is not None and g.peer_count == cap)
        await wait_until(lambda: sum(s.closed for s in clients["plain"]) == 1)
        ev = [e for e in iter(lambda: None if sub.queue.empty() else sub.get_nowait(), None)]
        evicted = [e for e in ev if e.kind == EventKind.EVICTED]
        assert len(evicted) == 1 and evicted[0].details["address"].startswith("127.200.0.")
        # The newest plain peer of the crowded group went; every protected peer stayed.
        assert clients["plain"][-1].closed or sum(s.closed for s in clients["plain"]) == 1
        for name in ("fast", "tx", "block"):
            assert not any(s.closed for s in clients[name]), name
        ids = g.connected_ids()
        assert newcomer.identity.id in ids
        assert sum(1 for s in g.slots() if not s.outbound) == cap
    finally:
        for group in clients.values():
            for s in group:
                await s.close()
        await stop_node(g)
