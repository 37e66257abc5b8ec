"""MeshLink, the link-protocol session with a bridge board, against a board process on
real pseudo-terminals (bridgekit) and on any input fed to it in memory.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from boardproc import BoardProc
from bridgekit import GATEWAY_ID, Harness, board_bans, make_frame, node, ready, until
from hypothesis import given, settings
from hypothesis import strategies as st

from loragate.mesh.link import (
    BOARD_PRIORITY,
    DEFERRED,
    DONE,
    LOST,
    PRIO_BLOCK,
    PRIO_GOSSIP,
    PRIO_TX,
    REJECTED,
    MeshLink,
)
from loragate.mesh.serial import CONNECTED, DISCONNECTED, SerialLink
from lorawire import link, uart


async def test_hello_frames_up_and_down(bridge: Any) -> None:
    h = await bridge({"sf": 8})
    mesh, board = h.mesh, h.board
    assert h.hellos[0]["role"] == "bridge"
    assert h.hellos[0]["node_id"] == bytes.fromhex("b0a4d00000000001")
    ev = await board.wait_event(lambda e: e["ev"] == "hello")
    assert ev["node_id"] == GATEWAY_ID.hex() and ev["role"] == "gateway"
    # The gateway asked for the radio settings and uses them for airtime estimates.
    await until(lambda: mesh.radio["sf"] == 8)
    want = {"sf", "bandwidth_hz", "coding_rate"}
    await until(lambda: {e["key"] for e in board.of("config_get")} >= want)

    up = [make_frame(node(1), i, bytes([i]) * (i + 1)) for i in range(5)]
    await board.cmd(cmd="up", frames=[f.hex() for f in up], rssi=-101, snr_q4=-30)
    await h.wait_frames(5)
    assert [f for f, _, _ in h.frames] == up
    assert h.frames[0][1:] == (-101, -7.5)

    down = make_frame(GATEWAY_ID, 7, b"\x00\x00hello\x00")  # zeros cross COBS intact
    res = await mesh.send_frame(down, PRIO_BLOCK)
    assert res.status == DONE and res.airtime_ms > 0
    tx = await board.wait_event(lambda e: e["ev"] == "tx")
    assert bytes.fromhex(tx["frame"]) == down
    assert tx["priority"] == BOARD_PRIORITY[PRIO_BLOCK]
    assert tx["handle"] == res.handle
    assert mesh.counters["frames_up"] == 5 and mesh.counters["tx_done"] == 1
    snap = mesh.snapshot()
    assert snap["ready"] and snap["state"] == CONNECTED and snap["radio"]["sf"] == 8
    assert snap["serial"]["packets_in"] >= 7 and snap["serial"]["garbage_bytes"] == 0


async def test_deferred_then_lost_are_matched_by_handle(bridge: Any) -> None:
    h = await bridge({"budget_ms": 100, "used_ms": 95, "refill_ms": 30000}, tx_timeout=0.5)
    mesh, board = h.mesh, h.board
    res = await mesh.send_frame(make_frame(GATEWAY_ID, 1), PRIO_TX)
    assert res.status == DEFERRED and res.reason == link.DEFER_DUTY_CYCLE
    assert 25000 < res.wait_ms <= 30000
    returns_at = mesh.budget()["budget_returns_at"]
    assert returns_at is not None and returns_at > asyncio.get_running_loop().time()
    assert mesh.budget_wait(10) > 20

    # A frame bigger than the whole budget can never go.
    await board.cmd(cmd="budget", used_ms=0, budget_ms=5)
    await board.ping()  # stdin is ordered: the budget is in force once the pong is back
    res = await mesh.send_frame(make_frame(GATEWAY_ID, 2, b"x" * 100), PRIO_TX)
    assert res.status == DEFERRED and res.wait_ms == -1

    await board.cmd(cmd="mute_tx", on=True)
    await board.ping()
    results = await asyncio.gather(
        *(mesh.send_frame(make_frame(GATEWAY_ID, 3 + i), PRIO_GOSSIP) for i in range(3))
    )
    assert [r.status for r in results] == [LOST] * 3
    assert len({r.handle for r in results}) == 3
    assert mesh.counters["lost"] == 3 and mesh.counters["deferred"] == 2
    assert mesh.inflight == 0  # handles freed


async def test_inflight_table_is_bounded(bridge: Any) -> None:
    h = await bridge(tx_timeout=0.5)
    mesh, board = h.mesh, h.board
    mesh.inflight_max = 4
    await board.cmd(cmd="mute_tx", on=True)
    await board.ping()
    results = await asyncio.gather(
        *(mesh.send_frame(make_frame(GATEWAY_ID, i), PRIO_TX) for i in range(7))
    )
    statuses = sorted(r.status for r in results)
    assert statuses == [LOST] * 4 + [REJECTED] * 3
    assert mesh.counters["rejected_inflight_full"] == 3


async def test_ban_is_pushed_and_silences_the_node_at_the_board(bridge: Any) -> None:
    h = await bridge()
    mesh, board = h.mesh, h.board
    bad, good = node(6), node(7)
    mesh.ban(bad, 600)
    ev = await board.wait_event(lambda e: e["ev"] == "ban")
    assert ev["node_id"] == bad.hex() and 598 <= ev["seconds"] <= 600
    await board.cmd(cmd="up", frames=[make_frame(bad, 1).hex(), make_frame(good, 1).hex()])
    await h.wait_frames(1)
    await board.cmd(cmd="stats")
    await until(lambda: bool(h.stats) and h.stats[-1]["banned_drops"] == 1)
    assert [f for f, _, _ in h.frames] == [make_frame(good, 1)]
    assert board.of("banned_drop")[0]["node_id"] == bad.hex()

    mesh.ban(node(8), None)  # permanent
    ev = await board.wait_event(lambda e: e["ev"] == "ban" and e["node_id"] == node(8).hex())
    assert ev["seconds"] == link.BAN_PERMANENT_SECONDS
    mesh.unban(bad)
    await board.wait_event(lambda e: e["ev"] == "unban")
    await board.cmd(cmd="up", frames=[make_frame(bad, 2).hex()])
    await h.wait_frames(2)
    assert set(mesh.bans()) == {node(8)}


def test_mesh_ban_list_is_bounded() -> None:
    now = [0.0]
    mesh = MeshLink(
        SerialLink("/nonexistent", 115200, on_packet=lambda p: None),
        max_bans=4,
        clock=lambda: now[0],
    )
    mesh.ban(node(1), None)
    for i in range(2, 10):
        mesh.ban(node(i), 100 + i)
    assert len(mesh.bans()) == 4
    # The permanent ban survives; the soonest-expiring timed bans were evicted.
    assert set(mesh.bans()) == {node(1), node(7), node(8), node(9)}
    assert mesh.bans_evicted == 5
    now[0] = 200
    assert set(mesh.bans()) == {node(1)}
    assert mesh.pushes_waiting <= 8


async def test_unplug_replug_reconnects_and_repushes_bans(bridge: Any) -> None:
    h = await bridge()
    mesh, cable = h.mesh, h.cable
    bans = {node(1): 900, node(2): None}
    mesh.set_bans(bans)
    await board_bans(h.board, set(bans))

    # Unplug: the adapter and the (USB-powered) board go away.
    cable.unplug()
    await h.board.stop(kill=True)
    await until(lambda: h.states[-1:] == [DISCONNECTED], timeout=3)
    assert not mesh.ready
    res = await mesh.send_frame(make_frame(GATEWAY_ID, 1), PRIO_TX)
    assert res.status == REJECTED
    # It keeps trying to reopen the dangling path (with backoff) meanwhile.
    await until(lambda: h.serial.open_failures >= 2)

    # Replug: same path, new pty, freshly booted board with an empty ban table.
    cable.replug()
    h.board = BoardProc(cable.board_path, {})
    await h.board.start()
    await ready(mesh, cable)
    assert h.states == [CONNECTED, DISCONNECTED, CONNECTED]
    assert len(h.hellos) >= 2  # the board's boot HELLO and/or its answer to ours
    await board_bans(h.board, set(bans))
    pushed = {bytes.fromhex(e["node_id"]): e["seconds"] for e in h.board.of("ban")}
    assert pushed[node(2)] == link.BAN_PERMANENT_SECONDS and 880 <= pushed[node(1)] <= 900
    # And the link carries frames again.
    res = await mesh.send_frame(make_frame(GATEWAY_ID, 2), PRIO_TX)
    assert res.status == DONE
    assert h.serial.opens == 2 and h.serial.disconnects == 1


async def test_board_reboot_without_unplug_gets_bans_again(bridge: Any) -> None:
    h = await bridge()
    mesh = h.mesh
    mesh.ban(node(3), 300)
    await board_bans(h.board, {node(3)})
    await h.board.stop(kill=True)
    h.board = BoardProc(h.cable.board_path, {})
    await h.board.start()  # a booting board says HELLO unprompted
    await board_bans(h.board, {node(3)})
    assert h.states == [CONNECTED]  # the port never went away


async def test_refuses_a_board_that_is_not_a_bridge(bridge: Any, tmp_path: Path) -> None:
    h = Harness(tmp_path, {"role": "node"})
    try:
        with pytest.raises(TimeoutError):
            await h.start(ready_timeout=1.0)
        assert h.mesh is not None and h.mesh.counters["bad_hello"] >= 1 and not h.mesh.ready
    finally:
        await h.stop()


link_packet_st = st.one_of(
    st.binary(max_size=80),  # not a link packet at all
    st.builds(
        lambda f, r, s: link.encode(link.FRAME_UP, frame=f, rssi=r, snr_q4=s),
        st.binary(max_size=255),
        st.integers(-200, 50),
        st.integers(-128, 127),
    ),
    st.builds(
        lambda h, a: link.encode(link.TX_DONE, handle=h, airtime_ms=a),
        st.integers(0, 70000),
        st.integers(-5, 10**6),
    ),
    st.builds(
        lambda h, r, w: link.encode(link.TX_DEFERRED, handle=h, reason=r, wait_ms=w),
        st.integers(0, 70000),
        st.integers(0, 9),
        st.integers(-(2**31), 2**31),
    ),
    st.builds(
        lambda role, v: link.encode(
            link.HELLO, link_version=v, wire_version=1, firmware="x", node_id=bytes(8), role=role
        ),
        st.sampled_from(["bridge", "node", ""]),
        st.integers(0, 3),
    ),
    st.builds(
        lambda k, v: link.encode(link.CONFIG_VALUE, key=k, value=v),
        st.sampled_from(["sf", "bandwidth_hz", "coding_rate", "other"]),
        st.one_of(st.integers(-(2**31), 2**31), st.text(max_size=5), st.booleans(), st.none()),
    ),
)


@settings(max_examples=300)
@given(st.lists(link_packet_st, max_size=20), st.binary(max_size=64))
def test_any_link_input_is_counted_never_raised(packets: list[bytes], noise: bytes) -> None:
    serial = SerialLink("/nonexistent", 115200, on_packet=lambda p: None)
    got: list[bytes] = []
    mesh = MeshLink(serial, on_frame=lambda f, r, s: got.append(f))
    wire = noise + b"".join(b"\x00" + uart.encode_packet(p) for p in packets)
    for i in range(0, len(wire), 7):  # arbitrary chunking
        serial.feed(wire[i : i + 7])
    assert serial.callback_errors == 0
    assert serial.garbage_bytes <= len(wire)
    assert len(got) == mesh.counters["frames_up"]
    # Whatever the board reported, the airtime estimate stays usable.
    assert mesh.airtime_estimate_ms(255) > 0
