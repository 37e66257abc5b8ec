"""The control socket: protocol, limits, permissions, start-up rules (real Unix sockets)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from viewkit import LiveView

from loragate.bans import Misbehaviour
from loragate.control import (
    MAX_REQUEST,
    ControlError,
    ControlServer,
    GatewayNotRunning,
    RequestError,
    call,
    parse_request,
)
from loragate.view import (
    PeerInfo,
    StatusInfo,
    ViewError,
)

NODE_A = bytes.fromhex("a1a2a3a4a5a6a7a8")


class BrokenView(LiveView):
    async def status(self) -> StatusInfo:
        raise RuntimeError("boom\nsecond line")

    async def peers(self) -> list[PeerInfo]:
        raise ViewError("no peers for you")


@pytest.fixture
async def live(tmp_path: Path, live_view):
    view = await live_view(tmp_path / "gw.sqlite3")
    server = ControlServer(view, tmp_path / "control.sock", request_timeout_s=0.5)
    await server.start()
    yield view, server
    await server.close()


async def raw(path: Path, payload: bytes, read_all: bool = False) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(payload)
    await writer.drain()
    if read_all:
        data = await asyncio.wait_for(reader.read(), 5)
    else:
        data = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return [json.loads(line) for line in data.splitlines()]


async def test_socket_is_0600_and_commands_answer(live, tmp_path: Path) -> None:
    view, server = live
    sock = tmp_path / "control.sock"
    st = sock.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    peers = await call(sock, "peers")
    assert [p["node_id"] for p in peers] == [p["node_id"] for p in view.peer_list]
    status = await call(sock, "status")
    assert status["state"] == "running" and status["addrman_tried"] == 7
    assert await call(sock, "bans") == []
    banned = await call(sock, "ban", target="10.9.8.7/16", duration_s=60.0, reason="test")
    assert banned["target"] == "10.9.0.0/16" and banned["reason"] == "test"
    assert 59 < banned["until"] - banned["since"] <= 60.01
    perm = await call(sock, "ban", target="a1a2a3a4a5a6a7a8", duration_s=None)
    assert perm["until"] is None and perm["target"] == "node:a1a2a3a4a5a6a7a8"
    assert view.bm.is_banned(node_id=NODE_A) and view.bm.is_banned(host="10.9.200.1")
    assert {b["target"] for b in await call(sock, "bans")} == {
        "10.9.0.0/16",
        "node:a1a2a3a4a5a6a7a8",
    }
    assert await call(sock, "unban", target="10.9.0.0/16") == {
        "target": "10.9.0.0/16",
        "removed": True,
    }
    assert not view.bm.is_banned(host="10.9.200.1")
    gone = await call(sock, "unban", target="10.9.0.0/16")
    assert gone["removed"] is False


async def test_several_requests_on_one_connection(live, tmp_path: Path) -> None:
    reqs = b"".join(json.dumps({"cmd": c}).encode() + b"\n" for c in ("status", "bans", "peers"))
    reader, writer = await asyncio.open_unix_connection(str(tmp_path / "control.sock"))
    writer.write(reqs)
    answers = [json.loads(await asyncio.wait_for(reader.readline(), 5)) for _ in range(3)]
    writer.close()
    assert [a["ok"] for a in answers] == [True, True, True]
    assert answers[0]["result"]["state"] == "running"
    assert answers[1]["result"] == [] and len(answers[2]["result"]) == 3


BAD_REQUESTS = [
    (b"this is not json\n", "not JSON"),
    (b"\xff\xfe\n", "not JSON"),
    (b"[1, 2]\n", "JSON object"),
    (b'{"cmd": "reboot"}\n', "unknown cmd"),
    (b'{"cmd": 5}\n', "unknown cmd"),
    (b'{"cmd": "ban", "args": {"duration_s": 5}}\n', "missing args"),
    (b'{"cmd": "unban"}\n', "missing args"),
    (b'{"cmd": "ban", "args": {"target": 7, "duration_s": 5}}\n', "target must be a string"),
    (b'{"cmd": "ban", "args": {"target": "1.2.3.4", "duration_s": -1}}\n', "duration_s"),
    (b'{"cmd": "ban", "args": {"target": "1.2.3.4", "duration_s": true}}\n', "duration_s"),
    (b'{"cmd": "status", "args": {"verbose": 1}}\n', "unknown args"),
    (b'{"cmd": "status", "args": []}\n', "args must be"),
    (b'{"cmd": "status", "extra": 1}\n', "unknown request keys"),
    (b'{"cmd": "ban", "args": {"target": "no-such-host", "duration_s": 5}}\n', "not a node id"),
    (b'{"cmd": "unban", "args": {"target": "300.1.1.1"}}\n', "not a node id"),
]


@pytest.mark.parametrize(("payload", "expected"), BAD_REQUESTS)
async def test_malformed_requests_get_one_error_line_and_server_keeps_serving(
    live, tmp_path: Path, payload: bytes, expected: str
) -> None:
    sock = tmp_path / "control.sock"
    [answer] = await raw(sock, payload)
    assert answer["ok"] is False and expected in answer["error"]
    assert "\n" not in answer["error"]
    assert (await call(sock, "status"))["state"] == "running"


def test_parse_request_never_raises_anything_but_request_error() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=8,
    )

    @given(st.one_of(st.binary(max_size=64), json_values.map(lambda v: json.dumps(v).encode())))
    def check(line: bytes) -> None:
        try:
            parse_request(line)
        except RequestError:
            pass

    check()


async def test_oversized_request_is_refused_and_closed(live, tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    big = b'{"cmd": "status", "args": {"x": "' + b"a" * (MAX_REQUEST + 10) + b'"}}\n'
    answers = await raw(sock, big, read_all=True)  # read() returns only once we are closed
    assert len(answers) == 1 and answers[0]["ok"] is False
    assert str(MAX_REQUEST) in answers[0]["error"]
    assert (await call(sock, "status"))["state"] == "running"


async def test_stalled_request_times_out_and_slot_is_freed(live, tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    t0 = time.monotonic()
    answers = await raw(sock, b'{"cmd": "sta', read_all=True)
    assert time.monotonic() - t0 < 3
    assert answers[0]["ok"] is False and "within" in answers[0]["error"]
    _, server = live
    assert server.clients == 0
    assert (await call(sock, "status"))["state"] == "running"


async def test_concurrent_clients(live, tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    results = await asyncio.gather(*(call(sock, "status") for _ in range(25)))
    assert all(r["state"] == "running" for r in results)
    bans = await asyncio.gather(
        *(call(sock, "ban", target=f"10.0.{i}.1", duration_s=600.0) for i in range(10))
    )
    assert sorted(b["target"] for b in bans) == sorted(f"10.0.{i}.1" for i in range(10))
    assert len(await call(sock, "bans")) == 10


async def test_too_many_clients_get_an_error(tmp_path: Path, live_view) -> None:
    view = await live_view(tmp_path / "db.sqlite3")
    sock = tmp_path / "c.sock"
    async with ControlServer(view, sock, max_clients=2, request_timeout_s=2):
        idle = [await asyncio.open_unix_connection(str(sock)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(ControlError, match="too many"):
            await call(sock, "status")
        for _, w in idle:
            w.close()
        await asyncio.sleep(0.05)
        assert (await call(sock, "status"))["state"] == "running"


async def test_view_errors_become_error_answers(tmp_path: Path, live_view) -> None:
    view = await live_view(tmp_path / "db.sqlite3", BrokenView)
    sock = tmp_path / "c.sock"
    async with ControlServer(view, sock):
        with pytest.raises(ControlError) as err:
            await call(sock, "status")
        assert "internal error" in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(ControlError, match="no peers for you"):
            await call(sock, "peers")
        assert await call(sock, "bans") == []


async def test_refuses_to_start_over_a_live_gateway(live, tmp_path: Path) -> None:
    view, _ = live
    second = ControlServer(view, tmp_path / "control.sock")
    with pytest.raises(ControlError, match="already running"):
        await second.start()
    assert (await call(tmp_path / "control.sock", "status"))["state"] == "running"


async def test_stale_socket_is_replaced_and_other_files_refused(tmp_path: Path, live_view) -> None:
    view = await live_view(tmp_path / "db.sqlite3")
    sock = tmp_path / "c.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))  # a socket file nobody listens on: a killed gateway's
    dead.close()
    with pytest.raises(GatewayNotRunning):
        await call(sock, "status")
    async with ControlServer(view, sock):
        assert (await call(sock, "status"))["state"] == "running"
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert not sock.exists()  # close() removes its own socket
    plain = tmp_path / "plain"
    plain.write_text("not a socket")
    with pytest.raises(ControlError, match="not a socket"):
        await ControlServer(view, plain).start()
    assert plain.read_text() == "not a socket"


async def test_call_without_gateway(tmp_path: Path) -> None:
    with pytest.raises(GatewayNotRunning):
        await call(tmp_path / "none.sock", "status")


async def test_bans_reach_the_database(live, tmp_path: Path) -> None:
    view, _ = live
    view.bm.misbehaving(
        Misbehaviour.BAD_SIGNATURE, node_id=NODE_A, host="127.5.0.1", frame=b"x", reason="forged"
    )
    sock = tmp_path / "control.sock"
    bans = await call(sock, "bans")
    by_target = {b["target"]: b for b in bans}
    assert set(by_target) == {"node:a1a2a3a4a5a6a7a8", "127.5.0.1"}
    ev = by_target["node:a1a2a3a4a5a6a7a8"]["evidence"]
    assert ev[0]["misbehaviour"] == "bad_signature" and len(ev[0]["frame_sha256"]) == 64
    await view.store.drain()
    stored, _ = await view.store.load_bans()
    assert {str(b.target) for b in stored} == set(by_target)


async def test_socket_path_too_long(tmp_path: Path, live_view) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    view = await live_view(tmp_path / "db.sqlite3")
    with pytest.raises(ControlError, match="longer than 107 bytes"):
        await ControlServer(view, deep / "control.sock").start()
    with pytest.raises(GatewayNotRunning):  # so the CLI falls back to the database
        await call(deep / "control.sock", "status")
