"""The gateway's mesh wing (loragate.mesh) end to end on real parts.

Topology per test: a PeerManager (real SQLite, real TCP on 127.61.x.y) with a MeshSide
on a MeshLink over SerialLink (pyserial) -> pty cable (tools/ptycable.py) ->
board_sim.py (a real process speaking the UART link protocol as the bridge board).
Mesh nodes are real identities whose frames are built and tagged by lorawire and put
on the "radio" of the board (board_sim `up`); frames the gateway sends down appear as
the board's `tx` events and are parsed back with lorawire. Internet peers are other
PeerManagers connected over loopback TCP.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from boardproc import BoardProc
from bridgekit import ready
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from meshkit import NETKEY, MeshNode
from peerkit import endpoint, objects_of, start_node, stop_node, view, wait_until

from loragate.bans import node_target
from loragate.eventlog import EventLog
from loragate.manager import PeerManager
from loragate.mesh.counters import MeshCounters
from loragate.mesh.frames import MeshFramer, object_fits
from loragate.mesh.link import INFO_KEYS, MeshLink
from loragate.mesh.offers import MeshOffers
from loragate.mesh.relay import MeshRelay
from loragate.mesh.serial import SerialLink
from loragate.mesh.shaper import MeshShaper
from loragate.mesh.side import MeshSide
from loragate.mesh.tuning import MeshTuning
from loragate.metrics import GatewayMetrics
from loragate.relay import Relay, object_hash
from loragate.runner import start_mesh
from loragate.scoring import node_key
from loragate.telemetry import Telemetry
from lorawire import auth, compose, fragment, messages
from lorawire import frame as wframe
from lorawire import record as wrecord
from lorawire.codec import packb
from lorawire.identity import Identity
from tools.ptycable import PtyCable

BRIDGE_ID = bytes.fromhex("b0a4d00000000001")
_hosts = iter(range(1, 250))


def _host() -> str:
    return f"127.61.{next(_hosts)}.1"


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.cable = PtyCable(tmp_path / "ttyBRIDGE")
        self.board: BoardProc | None = None
        self.gw: PeerManager | None = None
        self.link: MeshLink | None = None
        self.side: MeshSide | None = None
        self.peers: list[PeerManager] = []
        self.metrics = GatewayMetrics()

    async def start(
        self,
        *,
        validator: Callable[[str, bytes], bool | None] | None = None,
        tuning: MeshTuning | None = None,
        board: dict[str, Any] | None = None,
    ) -> None:
        self.gw = await start_node(
            self.tmp_path,
            _host(),
            name="gw",
            validator=validator,
            outbound_target=0,
            network_key=NETKEY.hex(),
            metrics=self.metrics,
        )
        self.cable.start()
        self.board = BoardProc(self.cable.board_path, {"node_id": BRIDGE_ID.hex(), **(board or {})})
        await self.board.start()
        self.gw.cfg.serial_port = str(self.cable.link_path)
        side = await start_mesh(
            self.gw.cfg,
            self.gw,
            tuning=tuning
            or MeshTuning(announce_first_s=0.05, inv_delay_s=0.05, announce_interval_s=3600),
        )
        assert side is not None
        self.side, self.link = side, side.link
        await ready(self.link, self.cable)

    async def internet_peer(self) -> PeerManager:
        assert self.gw is not None
        p = await start_node(self.tmp_path, _host(), outbound_target=0, connect=[endpoint(self.gw)])
        self.peers.append(p)
        n = len(self.peers)
        await wait_until(lambda: self.gw is not None and self.gw.peer_count == n)
        return p

    def drops(self, reason: str) -> float:
        v = self.metrics.registry.get_sample_value(
            "loragate_relay_dropped_total", {"reason": reason}
        )
        return v or 0.0

    async def close(self) -> None:
        if self.side is not None:
            await self.side.close()  # and the link it opened
        if self.board is not None:
            await self.board.stop()
        self.cable.close()
        for p in self.peers:
            await stop_node(p)
        if self.gw is not None:
            await stop_node(self.gw)


@pytest.fixture
async def rig(tmp_path: Path):  # noqa: ANN201
    made: list[Rig] = []

    async def make(**kw: Any) -> Rig:
        r = Rig(tmp_path)
        made.append(r)
        await r.start(**kw)
        return r

    yield make
    for r in made:
        await r.close()


def _open(data: bytes, link_key: bytes | None = None) -> auth.Verdict:
    return auth.open_frame(data, NETKEY, link_key)


async def _mesh_peer(gw: PeerManager, node_id: bytes) -> Any:
    for p in await view(gw).peers():
        if p["node_id"] == node_id.hex():
            return p
    return None


# ---- discovery ------------------------------------------------------------------------------


async def test_announce_creates_a_mesh_peer_and_the_gateway_announces_itself(rig: Any) -> None:
    r = await rig()
    gw, board = r.gw, r.board
    node, far = MeshNode(), MeshNode()
    await board.up([node.announce(), far.announce(hop=2)], rssi=-97, snr_q4=22)
    await wait_until(lambda: r.side.peers.has_record(far.id), timeout=5)
    peer = await _mesh_peer(gw, node.id)
    assert peer is not None
    assert (peer["kind"], peer["direction"], peer["hops"]) == ("mesh", "mesh", 0)
    assert (peer["state"], peer["rssi"], peer["snr"]) == ("heard", -97, 5.5)
    assert peer["group"] == "mesh " + BRIDGE_ID.hex()  # next hop: the bridge
    assert gw.scores.get(node_key(node.id)).rssi is not None  # scored on link quality
    # Two relays away: what the bridge radio measured is the last relay's link, not its.
    relayed = await _mesh_peer(gw, far.id)
    assert relayed is not None and relayed["hops"] == 2
    assert (relayed["rssi"], relayed["snr"]) == (None, None)
    held = gw.scores.get(node_key(far.id))
    assert held is None or held.rssi is None
    # The gateway's own signed record went out, kind gateway, under the network key.
    await board.wait(lambda e: e["ev"] == "tx")
    f, value, data = board.sent()[0]
    assert f.type == messages.ANNOUNCE and f.source == gw.identity.id
    assert not f.flags & wframe.FLAG_BRIDGED
    assert _open(data).accepted
    rec = wrecord.verify_record(value)
    assert rec.kind == wrecord.KIND_GATEWAY and rec.id == gw.identity.id
    # A forged announce (bad signature) is refused and creates nothing.
    evil = MeshNode()
    value = evil.record_value()
    value[wrecord.K_SIGNATURE] = bytes(64)
    await board.up([evil.frame(messages.ANNOUNCE, value)])
    await wait_until(lambda: r.side.counters["dropped_record_bad_signature"] == 1)
    assert await _mesh_peer(gw, evil.id) is None


# ---- mesh -> internet -------------------------------------------------------------------------


async def test_tx_from_a_mesh_node_reaches_an_internet_peer_once(rig: Any) -> None:
    r = await rig()
    p = await r.internet_peer()
    got = objects_of(p)
    node = MeshNode()
    payload = b"mesh-tx-" + bytes(range(40))
    h = object_hash(payload)
    await r.board.up([node.frame(messages.TX, {0: payload}, hop=2)])
    await wait_until(lambda: p.relay.has(h))
    assert got == [("tx", payload)] and p.relay.get(h) == payload
    # The same tx again (new frame, relayed copy): deduplicated, not relayed twice.
    await r.board.up([node.frame(messages.TX, {0: payload})])
    await wait_until(lambda: r.gw.relay.duplicates >= 1)
    await asyncio.sleep(0.2)
    assert got == [("tx", payload)]
    # Nor is it offered back to the mesh it came from.
    assert not [f for f, _, _ in r.board.sent() if f.type == messages.INV]
    # A tx too large for one frame arrives in fragments, out of order, and goes on whole.
    big = bytes((i * 13) & 0xFF for i in range(600))
    body = messages.fragment_payload(messages.TX, compose.encode_tx(big))
    chunks = fragment.split(body, 77, wframe.MAX_LORA_FRAME - wframe.OVERHEAD_BROADCAST)
    assert len(chunks) == 3
    frames = [node.raw(messages.FRAGMENT, c, NETKEY, link=False) for c in chunks]
    await r.board.up([frames[2], frames[0], frames[1]])
    await wait_until(lambda: p.relay.has(object_hash(big)))
    assert got == [("tx", payload), ("tx", big)] and r.side.counters["reassembled"] == 1


# ---- internet -> mesh -------------------------------------------------------------------------


async def test_internet_tx_is_offered_then_sent_on_request_bridged(rig: Any) -> None:
    r = await rig()
    p = await r.internet_peer()
    gw_id = r.gw.identity.id
    payload = b"internet-tx-" + bytes(range(60))
    h = p.submit_local("tx", payload)
    inv = await r.board.wait(
        lambda e: e["ev"] == "tx" and compose.parse(bytes.fromhex(e["frame"]))[0].type == 0x10
    )
    f, value = compose.parse(bytes.fromhex(inv["frame"]))
    assert f.flags & wframe.FLAG_BRIDGED and f.source == gw_id and f.dest is None
    assert value[0] == [[messages.KIND_TX, h]]
    assert _open(bytes.fromhex(inv["frame"])).accepted
    await asyncio.sleep(0.3)
    assert not [x for x, _, _ in r.board.sent() if x.type == messages.TX]  # never pushed

    # A node two hops away asks for it (network tag, addressed to the gateway).
    node = MeshNode()
    await r.board.up([node.frame(messages.GETDATA, {0: [[0, h]]}, dest=gw_id, hop=1)])
    ev = await r.board.wait(
        lambda e: e["ev"] == "tx" and compose.parse(bytes.fromhex(e["frame"]))[0].type == 0x12
    )
    data = bytes.fromhex(ev["frame"])
    f, value = compose.parse(data)
    assert value[0] == payload
    assert f.flags & wframe.FLAG_BRIDGED and f.source == gw_id
    assert f.hop_limit == 1  # as far as the asker, no further
    assert _open(data).accepted
    # The unicast GETDATA was acknowledged.
    await r.board.wait(
        lambda e: e["ev"] == "tx" and compose.parse(bytes.fromhex(e["frame"]))[0].type == 0x06
    )
    assert r.metrics.registry.get_sample_value("loragate_relayed_total", {"kind": "mesh_tx"}) == 1

    # A second request right away is not answered again (served to that distance).
    await r.board.up([node.frame(messages.GETDATA, {0: [[0, h]]}, dest=gw_id, hop=1)])
    await wait_until(lambda: r.side.counters["served_dedupe"] == 1)
    assert len([x for x, _, _ in r.board.sent() if x.type == messages.TX]) == 1


async def test_large_objects_are_fragmented_and_oversize_ones_never_offered(rig: Any) -> None:
    r = await rig()
    p = await r.internet_peer()
    gw_id = r.gw.identity.id
    big = bytes((i * 7) & 0xFF for i in range(700))
    huge = bytes(5000)
    assert not object_fits("block", huge)
    p.submit_local("block", huge)
    h = p.submit_local("block", big)
    await r.board.wait(lambda e: e["ev"] == "tx" and "10" == e["frame"][2:4])
    await wait_until(lambda: r.gw.relay.has(object_hash(huge)))
    await wait_until(lambda: r.side.counters["dropped_too_large"] == 1)
    assert r.drops("mesh_too_large") == 1
    invs = [v for f, v, _ in r.board.sent() if f.type == messages.INV]
    assert [[messages.KIND_BLOCK, h]] in [v[0] for v in invs]
    assert all(item[1] != object_hash(huge) for v in invs for item in v[0])

    node = MeshNode()
    await r.board.up([node.frame(messages.GETDATA, {0: [[1, h]]}, dest=gw_id)])
    await wait_until(
        lambda: sum(1 for f, _, _ in r.board.sent() if f.type == messages.FRAGMENT) >= 4
    )
    await asyncio.sleep(0.3)
    frags = [(f, v, d) for f, v, d in r.board.sent() if f.type == messages.FRAGMENT]
    re = fragment.Reassembler()
    out = None
    for f, v, d in frags:
        assert len(d) <= wframe.MAX_LORA_FRAME and f.flags & wframe.FLAG_BRIDGED
        assert _open(d).accepted
        out = re.add(f.source, v, 0) or out
    assert out is not None
    inner_type, body = messages.parse_fragment_payload(out)
    assert inner_type == messages.BLOCK and messages.decode_body(inner_type, body)[0] == big


# ---- misbehaviour and bans ---------------------------------------------------------------------


async def test_attributed_garbage_bans_the_node_and_the_bridge_silences_it(rig: Any) -> None:
    r = await rig(validator=lambda kind, payload: not payload.startswith(b"bad"))
    gw = r.gw
    gw_id = gw.identity.id
    node, liar = MeshNode(), MeshNode()
    await r.board.up([node.announce(), liar.announce()])
    await wait_until(lambda: r.side.peers.has_record(node.id) and r.side.peers.has_record(liar.id))
    lk = node.link_key(gw.identity)
    # Valid link tag with the gateway, malformed body (TX raw must be bytes): 20 points each.
    garbage = [node.raw(messages.TX, packb({0: 7}), lk, dest=gw_id, link=True) for _ in range(5)]
    await r.board.up(garbage[:4])
    await wait_until(lambda: r.side.counters["dropped_attributed_malformed"] == 4)
    assert not gw.banman.is_banned(node_id=node.id)
    assert gw.banman.points(node_target(node.id)) == pytest.approx(80, abs=0.1)
    await r.board.up(garbage[4:])
    await wait_until(lambda: gw.banman.is_banned(node_id=node.id))
    ban = await r.board.wait(lambda e: e["ev"] == "ban" and e["node_id"] == node.id.hex())
    assert ban["seconds"] > 3000  # the first ban lasts an hour
    ev = gw.banman.evidence(node_target(node.id))
    assert ev and all(e.misbehaviour == "malformed_frame" and "mesh" in e.reason for e in ev)
    # Silenced at the bridge radio: its frames no longer reach the gateway.
    before = r.side.counters["frames_in"]
    await r.board.up([node.frame(messages.TX, {0: b"after ban"})])
    await r.board.wait(lambda e: e["ev"] == "banned_drop" and e["node_id"] == node.id.hex())
    await asyncio.sleep(0.2)
    assert r.side.counters["frames_in"] == before

    # Invalid sync data under the liar's own link tag: the validator's verdict bans it.
    lk2 = liar.link_key(gw.identity)
    await r.board.up([liar.frame(messages.TX, {0: b"bad tx"}, dest=gw_id, link_key=lk2)])
    await wait_until(lambda: gw.banman.is_banned(node_id=liar.id))
    await r.board.wait(lambda e: e["ev"] == "ban" and e["node_id"] == liar.id.hex())
    assert gw.banman.evidence(node_target(liar.id))[0].misbehaviour == "invalid_sync_data"


async def test_forged_frames_in_a_victims_name_ban_nobody(rig: Any) -> None:
    r = await rig(validator=lambda kind, payload: not payload.startswith(b"bad"))
    gw = r.gw
    gw_id = gw.identity.id
    victim = MeshNode()
    first = victim.announce()
    await r.board.up([first])
    await wait_until(lambda: r.side.peers.has_record(victim.id))
    attacker = MeshNode()  # holds the network key, not the victim's key
    attacker.id = victim.id  # ... and puts the victim's id on its frames
    attacker.seq = 5000  # fresh sequence numbers: these are not replays
    forged = []
    for _ in range(8):
        # network tag, malformed body
        forged.append(attacker.raw(messages.TX, packb({0: 7}), NETKEY, link=False))
        # link flag, but the attacker cannot compute the victim's link key
        forged.append(attacker.raw(messages.TX, packb({0: b"x"}), bytes(32), dest=gw_id, link=True))
        # well-formed invalid tx under the network tag: the validator's verdict is not proof
        forged.append(attacker.frame(messages.TX, {0: b"bad %d" % attacker.seq}))
        # replays of the victim's own frame
        forged.append(first)
    await r.board.up(forged)
    await wait_until(lambda: r.side.counters["dropped_invalid_unattributed"] == 8)
    c = r.side.counters
    assert c["dropped_malformed"] == 8 and c["dropped_bad_tag"] == 8
    assert c["dropped_replay"] == 8
    assert not gw.banman.is_banned(node_id=victim.id)
    assert gw.banman.points(node_target(victim.id)) == 0
    assert gw.banman.evidence(node_target(victim.id)) == []
    await asyncio.sleep(0.2)
    assert r.board.of("ban") == []
    assert r.drops("mesh_bad_tag") == 8


async def test_manual_ban_of_a_mesh_node_is_pushed_and_unban_too(rig: Any) -> None:
    r = await rig()
    node = MeshNode()
    await r.board.up([node.announce()])
    await wait_until(lambda: r.side.peers.has_record(node.id))
    await view(r.gw).ban(node.id.hex(), 600, "test")
    ev = await r.board.wait(lambda e: e["ev"] == "ban" and e["node_id"] == node.id.hex())
    assert 590 <= ev["seconds"] <= 600
    await view(r.gw).unban(node.id.hex())
    await r.board.wait(lambda e: e["ev"] == "unban" and e["node_id"] == node.id.hex())
    # An internet peer's ban is not the bridge's business.
    await view(r.gw).ban("00" * 8, 600, "test")
    await asyncio.sleep(0.2)
    assert [e["node_id"] for e in r.board.of("ban")] == [node.id.hex()]


async def test_mesh_bans_are_pushed_again_after_replug_and_gateway_restart(
    rig: Any, tmp_path: Path
) -> None:
    r = await rig()
    gw_id = r.gw.identity.id
    node = MeshNode()
    await r.board.up([node.announce()])
    await wait_until(lambda: r.side.peers.has_record(node.id))
    lk = node.link_key(r.gw.identity)
    await r.board.up(
        [node.raw(messages.TX, packb({0: 7}), lk, dest=gw_id, link=True) for _ in range(5)]
    )

    def pushes() -> int:
        return sum(1 for e in r.board.of("ban") if e["node_id"] == node.id.hex())

    await wait_until(lambda: pushes() == 1)
    # Unplug and replug the bridge: MeshLink re-pushes the list after the board's HELLO.
    r.cable.unplug()
    await asyncio.sleep(0.3)
    r.cable.replug()
    await wait_until(lambda: pushes() == 2)
    # Restart the gateway on the same data directory: the ban comes back from SQLite
    # and, having been earned on the mesh, is pushed to the bridge at start.
    await r.side.close()
    await stop_node(r.gw)
    r.side = None
    r.gw = await start_node(
        tmp_path, _host(), name="gw", outbound_target=0, network_key=NETKEY.hex()
    )
    assert r.gw.banman.is_banned(node_id=node.id)
    r.gw.cfg.serial_port = str(r.cable.link_path)
    r.side = await start_mesh(r.gw.cfg, r.gw)
    await wait_until(lambda: pushes() == 3)


# ---- shaping and bounds ------------------------------------------------------------------------


async def test_flood_of_internet_txs_stays_bounded_and_drops_are_counted(rig: Any) -> None:
    r = await rig()
    p = await r.internet_peer()
    side, gw, board = r.side, r.gw, r.board
    # A starved duty cycle: room for a few frames, then the budget returns in 100 s.
    await board.cmd(cmd="budget", used_ms=0, budget_ms=1500, refill_ms=100_000)
    await wait_until(lambda: r.link.airtime_budget_ms == 1500)
    hs = {p.submit_local("tx", b"flood-%04d" % i) for i in range(150)}
    await wait_until(lambda: all(gw.relay.has(h) for h in hs), timeout=15)
    await asyncio.sleep(0.2)
    # One internet origin gets its burst announced, no more.
    assert side.counters["dropped_origin_rate"] >= 150 - 7
    assert r.drops("mesh_origin_rate") == side.counters["dropped_origin_rate"]
    from_p = {item[1] for f, v, _ in board.sent() if f.type == messages.INV for item in v[0]}
    assert len(from_p & hs) <= 7

    # The gateway's own node is not rate limited: its flood meets the bounded queues.
    peak = 0
    for i in range(600):
        gw.submit_local("tx", b"local-%04d" % i)
        if i % 25 == 0:
            peak = max(peak, len(side.shaper))
            assert len(side.offers) <= side.tuning.inv_pending_max
            await asyncio.sleep(0.01)
    for _ in range(30):
        peak = max(peak, len(side.shaper))
        await asyncio.sleep(0.02)
    side.sync_metrics()
    assert peak <= side.shaper.capacity
    assert len(side.shaper) <= side.shaper.capacity
    shed = ("downlink_shed_budget", "downlink_shed_backlog", "shaper_queue_full")
    assert sum(side.counters["dropped_" + k] for k in shed) > 0
    # The budget has room for a handful of objects: the rest were refused before any INV.
    assert side.counters["dropped_downlink_shed_budget"] > 500
    for k in shed:
        assert r.drops("mesh_" + k) == side.counters["dropped_" + k], k
    # Nothing beyond the budget went on air.
    airtime = sum(e["airtime_ms"] for e in board.of("tx"))
    assert airtime <= 1500


# ---- the downlink sized to the bridge's budget, the bridge's link as an operator sees it ---


def _inv_items(board: BoardProc) -> list[tuple[int, bytes]]:
    return [
        (item[0], item[1]) for f, v, _ in board.sent() if f.type == messages.INV for item in v[0]
    ]


async def test_downlink_offers_the_most_valuable_the_budget_carries_and_says_what_it_sheds(
    rig: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tuning = MeshTuning(
        announce_first_s=3600, announce_interval_s=3600, inv_delay_s=0.5, downlink_report_s=0
    )
    r = await rig(tuning=tuning)
    side, gw, board = r.side, r.gw, r.board
    EventLog(gw.bus)
    caplog.set_level(logging.INFO, logger="loragate.events")
    # 14 s of the hour left: after the reserve (30 %), about 3 s for objects.
    await board.cmd(cmd="budget", used_ms=22_000, budget_ms=36_000, refill_ms=10**9)
    await wait_until(
        lambda: r.link.airtime_used_ms is not None and r.link.airtime_used_ms >= 22_000
    )
    room = side.downlink.room_ms()
    assert room is not None and 0 < room < 4000
    txs = [gw.submit_local("tx", b"tx-%04d" % i) for i in range(40)]
    blocks = [gw.submit_local("block", b"block-%02d" % i) for i in range(3)]  # arrive last
    await wait_until(lambda: side.downlink.offered + side.downlink.shed["budget"] == 43)
    await wait_until(lambda: len(_inv_items(board)) >= side.downlink.offered, timeout=10)
    offered = _inv_items(board)
    assert {h for code, h in offered if code == messages.KIND_BLOCK} == set(blocks)
    sent_txs = [h for code, h in offered if code == messages.KIND_TX]
    assert 0 < len(sent_txs) < 40 and set(sent_txs) <= set(txs)
    assert len(offered) == side.downlink.offered  # nothing refused was ever announced
    assert side.counters["dropped_downlink_shed_budget"] == 43 - len(offered)
    assert r.drops("mesh_downlink_shed_budget") == 43 - len(offered)
    lines = [rec for rec in caplog.records if rec.getMessage().startswith("downlink_shed ")]
    assert lines and all(rec.levelno == logging.WARNING for rec in lines)
    assert sum(int(re.search(r" refused=(\d+)", x.getMessage())[1]) for x in lines) == 43 - len(
        offered
    )
    st = await view(gw).status()  # the runner's view shows the same counts
    # A budget with no room left refuses a new object at once: no INV, counted.
    await board.cmd(cmd="budget", used_ms=36_000, budget_ms=36_000, refill_ms=10**9)
    await wait_until(lambda: (r.link.airtime_used_ms or 0) >= 36_000)
    await wait_until(
        lambda: any(x.getMessage().startswith("budget_exhausted ") for x in caplog.records)
    )
    assert side.bridge_info()["budget_exhausted"]
    before = len(_inv_items(board))
    gw.submit_local("block", b"late block")
    await wait_until(lambda: side.downlink.shed["budget"] == 44 - len(offered))
    await asyncio.sleep(tuning.inv_delay_s + 0.3)
    assert len(_inv_items(board)) == before
    info = side.bridge_info()
    assert info["downlink"]["objects_offered"] == len(offered)
    assert info["downlink"]["refused_by_reason"]["budget"] == 44 - len(offered)
    assert st["state"] == "running"
    # The budget returns: said once, in one line.
    await board.cmd(cmd="budget", used_ms=1_000, budget_ms=36_000, refill_ms=10**9)
    await wait_until(
        lambda: any(x.getMessage().startswith("budget_returned ") for x in caplog.records)
    )
    assert not side.bridge_info()["budget_exhausted"]


async def test_bridge_link_state_in_status_metrics_and_log(
    rig: Any, caplog: pytest.LogCaptureFixture
) -> None:
    r = await rig()
    side, gw = r.side, r.gw
    EventLog(gw.bus)
    caplog.set_level(logging.INFO, logger="loragate.events")
    port = str(r.cable.link_path)
    # the board answers one CONFIG_GET at a time: wait for every setting shown, not one
    await wait_until(lambda: all(side.link.settings.get(k) is not None for k in INFO_KEYS))
    info = side.bridge_info()
    assert (info["state"], info["board_id"], info["firmware"]) == (
        "up",
        BRIDGE_ID.hex(),
        "boardsim-1",
    )
    assert (info["region"], info["frequency_hz"], info["sf"]) == ("EU868", 868_100_000, 7)
    assert info["last_hello"] is not None and info["since"] <= time.time()
    up = r.metrics.registry.get_sample_value("loragate_bridge_up", {"port": port})
    assert up == 1
    r.cable.unplug()
    await wait_until(lambda: side.bridge_info()["state"] == "down", timeout=10)
    assert r.metrics.registry.get_sample_value("loragate_bridge_up", {"port": port}) == 0
    down = [x for x in caplog.records if x.getMessage().startswith("bridge_down ")]
    assert down and down[0].levelno == logging.WARNING and f"port={port}" in down[0].getMessage()
    r.cable.replug()
    await wait_until(lambda: side.bridge_info()["state"] == "up", timeout=15)
    assert r.metrics.registry.get_sample_value("loragate_bridge_up", {"port": port}) == 1
    ups = [x for x in caplog.records if x.getMessage().startswith("bridge_up ")]
    assert ups and f"board={BRIDGE_ID.hex()}" in ups[-1].getMessage()
    assert all("\n" not in x.getMessage() for x in caplog.records)


async def test_mesh_peers_last_seen_moves_bans_remove_them_and_the_bridge_is_no_peer(
    rig: Any,
) -> None:
    r = await rig()
    gw, board, side = r.gw, r.board, r.side
    far, bridge_self = MeshNode(), MeshNode()
    await board.up([far.announce(hop=2)])
    await wait_until(lambda: side.peers.has_record(far.id))
    first = (await _mesh_peer(gw, far.id))["last_seen"]
    await asyncio.sleep(0.05)
    await board.up([far.frame(messages.PING, {0: 7}, hop=2)])  # any frame that passes its tag
    await wait_until(lambda: side.counters["rx_ping"] >= 1)
    assert (await _mesh_peer(gw, far.id))["last_seen"] > first
    # The bridge's own record, relayed back to it by a neighbour, is not a peer beyond it.
    side.receiver.bridge_id = bridge_self.id
    await board.up([bridge_self.announce(hop=1)])
    await wait_until(lambda: side.counters["bridge_record"] >= 1)
    assert await _mesh_peer(gw, bridge_self.id) is None
    # Counted in the peer gauge as a mesh peer ...
    gauge = {"kind": "mesh", "direction": "mesh"}
    await gw.maintainer.maintain(persist=False)
    assert r.metrics.registry.get_sample_value("loragate_peers_connected", gauge) == 1
    # ... until banned: no peer of ours any more, and its series goes (not 0 forever).
    await gw.ban(node_target(far.id), 3600, "test")
    assert await _mesh_peer(gw, far.id) is None
    assert (await view(gw).status())["peers_by_direction"].get("mesh", 0) == 0
    await gw.maintainer.maintain(persist=False)
    assert r.metrics.registry.get_sample_value("loragate_peers_connected", gauge) is None


async def test_mesh_sequence_survives_a_restart(tmp_path: Path) -> None:
    gw = await start_node(tmp_path, _host(), name="gw", outbound_target=0)
    writes: list[asyncio.Task[None]] = []

    def framer() -> MeshFramer:
        spawn = lambda coro: writes.append(asyncio.ensure_future(coro))  # noqa: E731
        return MeshFramer(gw.identity, NETKEY, gw.store, 256, 0, spawn)

    try:
        first_framer = framer()
        await first_framer.load_seq()
        first = [first_framer.next_seq() for _ in range(300)]
        await asyncio.gather(*writes)  # the block reserved at 128 numbers before its end
        second = framer()
        await second.load_seq()
        nxt = second.next_seq()
        assert nxt > first[-1]  # ahead of every number used: replay windows accept it
        assert nxt - first[-1] <= 2 * 256
    finally:
        await stop_node(gw)


def _offers(inv_pending_max: int) -> MeshOffers:
    """The offer backlog on real parts; nothing is started (no link, no loop)."""
    serial = SerialLink("/nonexistent", 115200)
    link = MeshLink(serial)
    tuning = MeshTuning(inv_pending_max=inv_pending_max)
    counters = MeshCounters(Telemetry())
    framer = MeshFramer(Identity.generate(), NETKEY, None, 256, 0, lambda coro: coro.close())
    shaper = MeshShaper(link)
    keys = auth.LinkKeyCache(framer.identity, 4)
    relay = MeshRelay(
        Relay(),
        framer,
        shaper,
        keys,
        tuning,
        counters,
        submit=shaper.submit,
        charge=lambda *a: None,
    )
    return MeshOffers(relay, framer, tuning, counters, submit=shaper.submit)


async def test_offer_backlog_is_bounded_and_blocks_displace_transactions() -> None:
    offers = _offers(inv_pending_max=4)
    for i in range(10):
        offers.offer(bytes([i]) * 32, messages.KIND_TX)
    assert len(offers) == 4 and offers.counters["dropped_downlink_shed_backlog"] == 6
    offers.offer(b"B" * 32, messages.KIND_BLOCK)
    assert len(offers) == 4 and b"B" * 32 in offers
    assert bytes([0]) * 32 not in offers  # the oldest tx made room
    assert bytes([1]) * 32 in offers and bytes([9]) * 32 not in offers  # a late tx is refused


# ---- no input crashes the mesh side or grows its tables ----------------------------------------

_IDS = [MeshNode() for _ in range(12)]
_TYPES = [
    messages.ANNOUNCE,
    messages.PEX_RESPONSE,
    messages.PING,
    messages.ACK,
    messages.INV,
    messages.GETDATA,
    messages.TX,
    messages.BLOCK,
    messages.FRAGMENT,
    0x2A,
]


@pytest.fixture
def bare_side(tmp_path: Path):  # noqa: ANN201
    """A started MeshSide on a real manager, driven synchronously (link never connects)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    gw = loop.run_until_complete(
        start_node(tmp_path, _host(), name="gw", outbound_target=0, network_key=NETKEY.hex())
    )
    serial = SerialLink(str(tmp_path / "absent"), 115200, on_packet=lambda p: None)
    link = MeshLink(serial, node_id=gw.identity.id)
    tuning = MeshTuning(records_max=4, heard_max=6, replay_sources=5, link_keys=3)
    side = MeshSide(gw.cfg, gw, link, tuning=tuning)
    loop.run_until_complete(side.start())
    yield side
    loop.run_until_complete(side.close())
    loop.run_until_complete(stop_node(gw))
    loop.close()
    asyncio.set_event_loop(None)


_frame_spec = st.tuples(
    st.integers(0, len(_IDS) - 1),
    st.sampled_from(_TYPES),
    st.one_of(
        st.binary(min_size=1, max_size=200),
        st.builds(lambda v: packb(v), st.dictionaries(st.integers(0, 3), st.binary(max_size=40))),
        st.builds(
            lambda i, n, c: packb([7, i, n, c]),
            st.integers(0, 17),
            st.integers(0, 17),
            st.binary(min_size=1, max_size=150),
        ),
        st.just(b"announce"),
        st.builds(lambda b: packb({0: b}), st.binary(min_size=1, max_size=300)),
        st.builds(
            lambda items: packb({0: items}),
            st.lists(
                st.tuples(st.integers(0, 1), st.binary(min_size=32, max_size=32)).map(list),
                min_size=1,
                max_size=3,
            ),
        ),
        st.builds(
            lambda i, n, c: packb([i % 2, min(i, n - 1), n, c]),
            st.integers(0, 3),
            st.integers(1, 3),
            st.binary(min_size=1, max_size=120),
        ),
    ),
    st.booleans(),  # link tag with the gateway (or network tag)
    st.integers(0, 15),  # hop count
    st.one_of(st.none(), st.integers(0, 255 * 8 - 1)),  # a bit to flip
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.one_of(_frame_spec, st.binary(max_size=260)), max_size=40))
def test_any_input_is_counted_never_crashes_and_tables_stay_bounded(
    bare_side: MeshSide, items: list[Any]
) -> None:
    side = bare_side
    gw_id = side.identity.id
    for ban in side.host.banman.bans():  # each example starts with nobody banned
        side.host.banman.unban(ban.target)
    for item in items:
        if isinstance(item, bytes):
            data = item
        else:
            idx, mtype, body, link, hop, flip = item
            node = _IDS[idx]
            if body == b"announce":
                mtype, body = messages.ANNOUNCE, packb(node.record_value())
            key = node.link_key(side.identity) if link else NETKEY
            data = node.raw(mtype, body, key, dest=gw_id if link else None, link=link)
            data = wframe.with_hop(data, min(hop, data[2] >> 4))
            if flip is not None and flip < 8 * len(data):
                b = bytearray(data)
                b[flip // 8] ^= 1 << (flip % 8)
                data = bytes(b)
        side.receiver.on_frame(data, -80, 7.5)
    assert side.counters["errors"] == 0, side.counters
    assert side.counters["frames_in"] >= len(items)
    t = side.tuning
    sizes = side.peers.sizes()
    assert sizes["records"] <= t.records_max and sizes["heard"] <= t.heard_max
    assert sizes["direct"] <= t.heard_max
    rx = side.receiver
    assert len(rx.replay) <= t.replay_sources and len(side.link_keys) <= t.link_keys
    assert rx.reassembler.buffered_bytes() <= t.reassembly_slots * rx.reassembler.max_message
    assert len(side.shaper) <= side.shaper.capacity
    assert len(side.offers) <= t.inv_pending_max


async def test_a_new_mesh_node_makes_the_gateway_announce_again(rig: Any) -> None:
    # One announce can be lost to a collision; a node we never heard of may lack our record.
    r = await rig(
        tuning=MeshTuning(announce_first_s=0.05, announce_min_gap_s=0.3, announce_interval_s=3600)
    )
    await r.board.wait(lambda e: e["ev"] == "tx")
    ours = [f for f, _, _ in r.board.sent() if f.type == messages.ANNOUNCE]
    assert len(ours) == 1
    first, second = MeshNode(), MeshNode()
    await r.board.up([first.announce()])
    await wait_until(
        lambda: sum(f.type == messages.ANNOUNCE for f, _, _ in r.board.sent()) == 2, timeout=5
    )
    # Re-hearing a known node does not: only newcomers count.
    await r.board.up([first.announce()])
    await asyncio.sleep(0.6)
    assert sum(f.type == messages.ANNOUNCE for f, _, _ in r.board.sent()) == 2
    await r.board.up([second.announce()])
    await wait_until(
        lambda: sum(f.type == messages.ANNOUNCE for f, _, _ in r.board.sent()) == 3, timeout=5
    )


# ---- mesh -> internet: offers (INV) and blocks ----------------------------------------------


def _sent_of(board: BoardProc, msg_type: int) -> list[tuple[wframe.Frame, Any, bytes]]:
    return [(f, v, d) for f, v, d in board.sent() if f.type == msg_type]


async def test_mesh_inv_makes_the_gateway_ask_that_node_and_the_object_goes_on(rig: Any) -> None:
    r = await rig()
    p = await r.internet_peer()
    got = objects_of(p)
    gw_id = r.gw.identity.id
    near, far, other = MeshNode(), MeshNode(), MeshNode()
    await r.board.up([near.announce()])  # a direct neighbour: we learn its public key
    await wait_until(lambda: r.side.peers.has_record(near.id))
    tx = b"offered-tx-" + bytes(range(50))
    blk = b"offered-block-" + bytes(range(90))
    h_tx, h_blk = object_hash(tx), object_hash(blk)

    # The neighbour offers a tx: the gateway asks it, by a unicast under the pair's key.
    await r.board.up([near.frame(messages.INV, {0: [[messages.KIND_TX, h_tx]]})])
    await wait_until(lambda: len(_sent_of(r.board, messages.GETDATA)) == 1)
    f, value, data = _sent_of(r.board, messages.GETDATA)[0]
    assert (f.source, f.dest, value[0]) == (gw_id, near.id, [[messages.KIND_TX, h_tx]])
    assert f.flags & wframe.FLAG_LINK and not f.flags & wframe.FLAG_BRIDGED
    assert f.hop_limit == 0
    assert _open(data, near.link_key(r.gw.identity)).accepted
    assert not _open(data, bytes(32)).accepted  # really the pairwise tag

    # A node two hops away offers a block: asked under the network tag, as far as it is.
    await r.board.up([far.frame(messages.INV, {0: [[messages.KIND_BLOCK, h_blk]]}, hop=2)])
    await wait_until(lambda: len(_sent_of(r.board, messages.GETDATA)) == 2)
    f, value, data = _sent_of(r.board, messages.GETDATA)[1]
    assert (f.dest, value[0], f.hop_limit) == (far.id, [[messages.KIND_BLOCK, h_blk]], 2)
    assert not f.flags & wframe.FLAG_LINK and _open(data).accepted

    # Another node offers the tx while it is being fetched: not asked twice.
    await r.board.up([other.frame(messages.INV, {0: [[messages.KIND_TX, h_tx]]}, hop=1)])
    await r.board.ping()
    await asyncio.sleep(0.2)
    assert len(_sent_of(r.board, messages.GETDATA)) == 2
    assert not p.relay.has(h_tx) and got == []  # nothing reaches the internet on an INV

    # The answers come up: each object reaches the internet peer once.
    await r.board.up([near.frame(messages.TX, {0: tx}), far.frame(messages.BLOCK, {0: blk}, hop=2)])
    await wait_until(lambda: p.relay.has(h_tx) and p.relay.has(h_blk))
    assert sorted(got) == [("block", blk), ("tx", tx)]
    assert r.gw.relay.get(h_tx) == tx and r.gw.relay.get(h_blk) == blk
    # Offered again after it arrived: the gateway has it, so it asks nobody.
    await r.board.up([other.frame(messages.INV, {0: [[messages.KIND_BLOCK, h_blk]]}, hop=1)])
    await r.board.ping()
    await asyncio.sleep(0.2)
    assert len(_sent_of(r.board, messages.GETDATA)) == 2
    assert sorted(got) == [("block", blk), ("tx", tx)]
    # Neither object is offered back to the mesh it came from.
    assert _sent_of(r.board, messages.INV) == []


async def test_a_block_from_the_mesh_overtakes_the_transactions_before_it(rig: Any) -> None:
    r = await rig()
    p = await r.internet_peer()
    # Transactions wait to be announced in a batch; a block is announced at once and
    # first. A wide batch window keeps this test independent of the machine's speed.
    r.gw.relay.limits.inv_delay_s = 0.5
    got = objects_of(p)
    invs: list[list[int]] = []
    inner = p.relay.handle

    def spy(peer: Any, msg_type: int, value: Any) -> bool:
        if msg_type == messages.INV:
            invs.append([code for code, _ in value[0]])
        return inner(peer, msg_type, value)

    p.relay.handle = spy  # type: ignore[method-assign]
    node = MeshNode()
    txs = [b"queued-tx-%d-" % i + bytes(40) for i in range(5)]
    blk = b"urgent-block-" + bytes(range(100))
    frames = [node.frame(messages.TX, {0: t}, hop=1) for t in txs]
    frames.append(node.frame(messages.BLOCK, {0: blk}, hop=1))
    await r.board.up(frames)
    await wait_until(lambda: len(got) == 6, timeout=8)
    assert got[0] == ("block", blk)
    assert sorted(payload for _, payload in got[1:]) == sorted(txs)
    assert invs[0] == [messages.KIND_BLOCK]  # its own INV, ahead of the batch of txs
    assert sorted(code for inv in invs[1:] for code in inv) == [messages.KIND_TX] * 5
