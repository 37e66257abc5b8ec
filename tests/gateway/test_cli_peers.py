"""The operator's commands against a running gateway (Bitcoin Core's getpeerinfo for one
peer, disconnectnode, addnode, clearbanned), through the installed `loragate` script.

Real parts: two PeerManagers on loopback TCP (the gateway under test and a peer that
dials it), the gateway's real control socket over its real `RunningGatewayView`, the
CLI as a subprocess. The gateway's event loop is this test's, so the subprocess is
awaited without blocking it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import pytest
from peerkit import endpoint, start_node, stop_node, view, wait_until

from loragate.bans import Misbehaviour, net_target
from loragate.control import ControlServer
from loragate.eventlog import EventLog
from loragate.manager import PeerManager

LORAGATE = str(Path(sys.executable).with_name("loragate"))


async def cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LORAGATE_DATA_DIR"}
    proc = await asyncio.create_subprocess_exec(
        LORAGATE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def pair(tmp_path: Path):  # noqa: ANN201
    gw = await start_node(tmp_path, "127.71.0.1", name="gw", outbound_target=0)
    server = ControlServer(view(gw), gw.cfg.control_path)
    await server.start()
    peer = await start_node(tmp_path, "127.72.0.1", name="peer", connect=[endpoint(gw)])
    await wait_until(lambda: gw.peer_count == 1)
    made: list[PeerManager] = []
    yield gw, peer, made
    await server.close()
    for m in (*made, peer, gw):
        await stop_node(m)


async def test_one_peer_in_full_by_node_id_or_address(pair) -> None:
    gw, peer, _ = pair
    d = ("--data-dir", str(gw.cfg.data_dir))
    nid = peer.identity.hex_id()
    code, out, err = await cli("peer", nid, *d)
    assert code == 0 and err == "", err
    fields = dict(line.split(":", 1) for line in out.splitlines())
    assert fields["node id"].strip() == nid
    assert fields["state"].strip() == "connected" and fields["direction"].strip() == "in"
    assert fields["misbehaviour"].strip().startswith("0/100 points")
    assert fields["connected"].strip() == "now" or fields["connected"].strip().endswith(" ago")
    addr = json.loads((await cli("peers", "--json", *d))[1])[0]["address"]
    code, out, _ = await cli("peer", addr, "--json", *d)
    assert code == 0 and json.loads(out)["node_id"] == nid
    code, out, err = await cli("peer", "0123456789abcdef", *d)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "no peer 0123456789abcdef connected or heard" in err


async def test_points_show_how_close_a_peer_is_to_a_ban(pair) -> None:
    gw, peer, _ = pair
    d = ("--data-dir", str(gw.cfg.data_dir))
    gw.misbehaving(Misbehaviour.BAD_TAG, peer.identity.id, None, "test")
    code, out, err = await cli("peers", *d)
    assert code == 0, err
    assert " 20/100 " in out.splitlines()[1]


async def test_disconnect_drops_the_connection_and_says_so(pair, caplog) -> None:
    gw, peer, _ = pair
    EventLog(gw.bus)
    caplog.set_level(logging.INFO, logger="loragate.events")
    d = ("--data-dir", str(gw.cfg.data_dir))
    code, out, err = await cli("disconnect", peer.identity.hex_id(), *d)
    assert code == 0 and out.strip() == f"disconnected {peer.identity.hex_id()}", err
    assert gw.peer(peer.identity.id) is None or gw.peer_count <= 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("disconnected ")]
    assert lines and 'reason="disconnected by the operator"' in lines[0]
    code, out, err = await cli("disconnect", "127.99.0.9:1", *d)
    assert code == 1 and err.strip() == "loragate: error: no connection to 127.99.0.9:1"
    code, out, err = await cli("disconnect", "not-a-peer", *d)
    assert code == 1 and "not a node id (16 hex digits) or an address (IP:PORT)" in err


async def test_connect_at_run_time_keeps_a_peer_connected(pair, tmp_path: Path) -> None:
    gw, _, made = pair
    d = ("--data-dir", str(gw.cfg.data_dir))
    other = await start_node(tmp_path, "127.73.0.1", name="other", outbound_target=0)
    made.append(other)
    code, out, err = await cli("connect", endpoint(other), *d)
    assert code == 0 and "will be kept connected" in out, err
    await wait_until(lambda: gw.peer(other.identity.id) is not None)
    st = json.loads((await cli("status", "--json", *d))[1])
    assert st["manual_peers"] == [endpoint(other)]
    assert (st["outbound"], st["outbound_target"]) == (0, 0)  # a manual peer is no slot
    code, out, _ = await cli("addnode", endpoint(other), *d)
    assert code == 0 and "is a manual peer already" in out
    # dropped, it is dialled again
    gw.disconnect(node_id=other.identity.id)
    await wait_until(lambda: gw.peer(other.identity.id) is not None)
    code, out, _ = await cli("connect", "--remove", endpoint(other), *d)
    assert code == 0 and "no longer kept connected" in out
    assert gw.manual_peers() == []
    code, out, err = await cli("connect", "nowhere", *d)
    assert code == 1 and "must be IP:PORT" in err and err.count("\n") == 1


async def test_clearbanned_and_unban_all_lift_every_ban(pair, tmp_path: Path) -> None:
    gw, _, _ = pair
    d = ("--data-dir", str(gw.cfg.data_dir))
    for i in range(3):
        await gw.ban(net_target(f"127.90.0.{i + 1}"), 3600, "test")
    code, out, err = await cli("clearbanned", *d)
    assert code == 0 and out.strip() == "lifted 3 bans", err
    assert len(gw.banman) == 0
    await gw.ban(net_target("127.90.0.9"), 3600, "test")
    code, out, err = await cli("unban", "--all", *d)
    assert code == 0 and out.strip() == "lifted 1 ban", err
    code, out, err = await cli("unban", *d)
    assert code == 2 and "give a TARGET or --all" in err


async def test_stopped_gateway_commands(tmp_path: Path) -> None:
    gw = await start_node(tmp_path, "127.74.0.1", name="gw", outbound_target=0)
    await gw.ban(net_target("127.91.0.1"), 3600, "test")
    await stop_node(gw)
    d = ("--data-dir", str(gw.cfg.data_dir))
    code, out, err = await cli("unban", "--all", *d)
    assert code == 0 and out.strip() == "lifted 1 ban" and "gateway stopped" in err
    code, out, err = await cli("disconnect", "127.91.0.1:8333", *d)
    assert code == 1 and "the gateway is not running" in err and err.count("\n") == 1
    code, out, err = await cli("connect", "127.91.0.1:8333", *d)
    assert code == 1 and "add the peer to the `connect` setting" in err
