"""`loragate` peers/bans/status/ban/unban/run against stopped and running gateways.

Stopped: the database is written by the real Store / AddrMan / BanManager APIs.
Running: a real ControlServer on a real Unix socket in the test's event loop, serving a
real view (BanManager persisted through AsyncStore; see viewkit.LiveView). At least
one test per command runs the installed `loragate` script as a subprocess.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from loragate import control
from loragate.addrman import load_addrman, save_addrman
from loragate.bans import BanManager, BanTarget, Misbehaviour, node_target
from loragate.cli import cli, parse_duration, setting_flags
from loragate.config import GatewayConfig
from loragate.control import ControlServer
from loragate.logsetup import OneLineFormatter, setup_logging, syslog_priority, under_journald
from loragate.scoring import PeerScore
from loragate.store import Store
from tools import procs

LORAGATE = str(Path(sys.executable).with_name("loragate"))
BAD_NODE = bytes.fromhex("0badc0de0badc0de")
GOOD_NODE = bytes.fromhex("600d600d600d600d")
T0 = time.time()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.stdout, result.stderr


def sub(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    full_env = {k: v for k, v in os.environ.items() if k != "LORAGATE_DATA_DIR"}
    full_env.update(env or {})
    p = subprocess.run([LORAGATE, *args], capture_output=True, text=True, timeout=30, env=full_env)
    return p.returncode, p.stdout, p.stderr


async def asub(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LORAGATE_DATA_DIR"}
    proc = await asyncio.create_subprocess_exec(
        LORAGATE,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        **procs.child_options(new_session=False),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def populate(data: Path) -> None:
    """A stopped gateway's database, written by the real persistence APIs."""
    data.mkdir(parents=True, exist_ok=True)
    store = Store(data / "loragate.sqlite3")
    book = load_addrman(store)
    book.add(("127.2.0.5", 8333), "127.9.0.1", kind="full", node_id=GOOD_NODE, now=T0 - 50)
    book.add(("127.3.0.9", 8333), "127.9.0.1", kind="gateway", now=T0 - 100)
    book.add(("127.4.0.1", 8444), None, kind="light", now=T0 - 200)
    assert book.good(("127.2.0.5", 8333), now=T0 - 40)
    save_addrman(book, store)
    ps = PeerScore(now=T0 - 40)
    ps.handshake(True, now=T0 - 40)
    ps.latency(35.0, now=T0 - 40)
    store.queue_peer_stats(f"node:{GOOD_NODE.hex()}", ps.to_dict(), T0 - 40)
    bm = BanManager(sink=store)
    bm.misbehaving(Misbehaviour.BAD_TAG, node_id=BAD_NODE, frame=b"f1", reason="tag")
    bm.misbehaving(Misbehaviour.PROTOCOL_VIOLATION, node_id=BAD_NODE, frame=b"f2", msg_type=7)
    bm.misbehaving(Misbehaviour.BAD_TAG, node_id=BAD_NODE, frame=b"f3", reason="tag")
    assert not bm.is_banned(node_id=BAD_NODE)  # 90 points
    assert bm.misbehaving(Misbehaviour.REPLAY, node_id=BAD_NODE, frame=b"f4")
    bm.ban(BanTarget("net", "10.66.0.0/16"), permanent=True, reason="abuse")
    bm.ban(BanTarget("net", "10.77.0.1/32"), now=T0 - 7200, duration_s=60, reason="old")
    store.flush()
    store.close()


@pytest.fixture
def stopped(tmp_path: Path) -> Path:
    data = tmp_path / "gw"
    populate(data)
    return data


def db_bans(data: Path) -> dict[str, object]:
    store = Store(data / "loragate.sqlite3")
    try:
        return {str(b.target): b for b in store.load_bans()}
    finally:
        store.close()


# ---- stopped gateway ------------------------------------------------------------------


def test_peers_stopped_subprocess(stopped: Path) -> None:
    code, out, err = sub("peers", "--data-dir", str(stopped))
    assert code == 0, err
    assert err.strip() == f"(gateway stopped; read from {stopped / 'loragate.sqlite3'})"
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["NODE", "ID", "KIND", "STATE"]
    assert "LAST SEEN" in lines[0] and "ADDRESS / VIA" in lines[0]
    assert " DIR " not in lines[0]  # no direction for an address book entry: left out
    assert len(lines) == 4
    assert max(len(line) for line in lines) <= 100
    # tried (connected before) first, with the score from the stored peer stats
    assert lines[1].startswith(GOOD_NODE.hex()) and "127.2.0.5:8333" in lines[1]
    assert " tried " in lines[1]
    assert re.search(r" \d+s ago$", lines[1])  # relative times by default
    assert {line.split()[3] for line in lines[2:]} == {"127.3.0.9:8333", "127.4.0.1:8444"}
    code, out, err = invoke("peers", "--data-dir", str(stopped), "--iso")
    assert re.search(r" \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", out.splitlines()[1])
    code, out, err = invoke("peers", "--data-dir", str(stopped), "--json")
    peers = json.loads(out)
    assert peers[0]["node_id"] == GOOD_NODE.hex() and peers[0]["state"] == "tried"
    assert 50 < peers[0]["score"] <= 100 and peers[0]["latency_ms"] == 35.0
    assert {p["kind"] for p in peers} == {"full", "gateway", "light"}
    assert all(p["direction"] is None for p in peers)
    code, out, err = invoke("peers", "--data-dir", str(stopped), "--limit", "1")
    assert code == 0 and len(out.splitlines()) == 2 and "(showing 1 of 3;" in err


def test_bans_stopped_subprocess(stopped: Path) -> None:
    code, out, err = sub("bans", "--data-dir", str(stopped))
    assert code == 0, err
    assert "(gateway stopped; read from" in err
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["TARGET", "REASON", "SINCE", "UNTIL"]
    targets = [r.split()[0] for r in rows]
    assert sorted(targets) == ["10.66.0.0/16", f"node:{BAD_NODE.hex()}"]  # expired one hidden
    node_row = rows[targets.index(f"node:{BAD_NODE.hex()}")]
    assert "2x bad_tag" in node_row and "1x protocol_violation" in node_row
    assert "1x replay" in node_row
    assert "permanent" in rows[targets.index("10.66.0.0/16")]
    code, out, _ = invoke("bans", "--data-dir", str(stopped), "--json")
    bans = {b["target"]: b for b in json.loads(out)}
    node = bans[f"node:{BAD_NODE.hex()}"]
    assert node["until"] - node["since"] == pytest.approx(3600)
    assert [e["misbehaviour"] for e in node["evidence"]] == [
        "replay",
        "bad_tag",
        "protocol_violation",
        "bad_tag",
    ]
    assert node["evidence"][2]["msg_type"] == 7 and node["manual"] is False
    assert bans["10.66.0.0/16"]["until"] is None and bans["10.66.0.0/16"]["manual"] is True


def test_status_stopped_subprocess(stopped: Path) -> None:
    code, out, _ = sub("keygen", "--data-dir", str(stopped))
    assert code == 0
    node_id = out.strip()
    code, out, err = sub("status", "--data-dir", str(stopped), "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "stopped" and st["node_id"] == node_id
    assert (st["addrman_new"], st["addrman_tried"]) == (2, 1)
    assert st["bans_active"] == 2 and st["peers_total"] == 0
    assert st["database"] == str(stopped / "loragate.sqlite3")
    code, out, _ = invoke("status", "--data-dir", str(stopped))
    assert re.search(r"^state:\s+stopped$", out, re.M)
    assert re.search(r"^address book:\s+2 new, 1 tried$", out, re.M)
    assert node_id in out


def test_ban_and_unban_stopped_subprocess_write_the_database(stopped: Path) -> None:
    code, out, err = sub(
        "ban", "10.5.6.7/24", "--duration", "1h30m", "--reason", "spam", "--data-dir", str(stopped)
    )
    assert code == 0, err
    assert "written to" in err and "next start" in err
    assert out.startswith("banned 10.5.6.0/24 until ")
    ban = db_bans(stopped)["10.5.6.0/24"]
    assert ban.until - ban.created == pytest.approx(5400)  # type: ignore[attr-defined]
    assert ban.reason == "spam" and ban.manual  # type: ignore[attr-defined]
    # banning the misbehaving node again: its ban count continues from the database
    code, out, err = sub(
        "ban", BAD_NODE.hex(), "--duration", "permanent", "--data-dir", str(stopped)
    )
    assert code == 0, err
    assert "permanently" in out and "ban #2" in out
    assert db_bans(stopped)[f"node:{BAD_NODE.hex()}"].until is None  # type: ignore[attr-defined]

    code, out, err = sub("unban", "10.5.6.0/24", "--data-dir", str(stopped))
    assert code == 0, err
    assert out.strip() == "unbanned 10.5.6.0/24"
    assert "10.5.6.0/24" not in db_bans(stopped)
    store = Store(stopped / "loragate.sqlite3")
    hist = store.ban_history(BanTarget("net", "10.5.6.0/24"))
    store.close()
    assert hist[0].lift_reason == "manual" and hist[0].lifted is not None
    # a gateway started now restores exactly these bans
    store = Store(stopped / "loragate.sqlite3")
    bm = BanManager()
    bm.restore(store.load_bans(), store.load_ban_counts())
    store.close()
    assert bm.is_banned(node_id=BAD_NODE) and bm.is_banned(host="10.66.200.1")
    assert not bm.is_banned(host="10.5.6.1")


def test_ban_before_first_start_creates_the_database(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    code, out, err = invoke("ban", "node:" + GOOD_NODE.hex(), "--data-dir", str(data))
    assert code == 0, err
    assert f"node:{GOOD_NODE.hex()}" in db_bans(data)
    ban = db_bans(data)[f"node:{GOOD_NODE.hex()}"]
    assert ban.until - ban.created == pytest.approx(3600)  # type: ignore[attr-defined]


def test_data_dir_from_env_and_from_config_file(stopped: Path, tmp_path: Path) -> None:
    code, out, _ = invoke("bans", "--json", env={"LORAGATE_DATA_DIR": str(stopped)})
    assert code == 0 and len(json.loads(out)) == 2
    conf = tmp_path / "gw.toml"
    conf.write_text(f'data_dir = "{stopped}"\n[bans]\nbase_duration_s = 120\n')
    code, out, _ = invoke("status", "--json", "--config", str(conf))
    assert code == 0 and json.loads(out)["bans_active"] == 2
    code, out, _ = invoke("ban", "10.1.1.1", "--config", str(conf), "--json")
    b = json.loads(out)
    assert b["until"] - b["since"] == pytest.approx(120)  # default duration from [bans]


def test_parse_duration() -> None:
    assert parse_duration("3600") == 3600
    assert parse_duration("30m") == 1800
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800
    assert parse_duration("1w") == 604800
    assert parse_duration("permanent") is None
    for bad in ("", "0", "-5", "5x", "h", "1h 2m", "1.5.5h", "nan", "inf"):
        with pytest.raises(Exception, match="duration|more than 0"):
            parse_duration(bad)


# ---- running gateway -----------------------------------------------------------------


@pytest.fixture
async def running(stopped: Path, live_view):
    view = await live_view(stopped / "loragate.sqlite3")
    server = ControlServer(view, stopped / "control.sock")
    await server.start()
    yield stopped, view, server
    await server.close()


async def test_every_command_against_a_running_gateway_subprocess(running) -> None:
    data, view, _ = running
    d = ("--data-dir", str(data))
    code, out, err = await asub("peers", *d)
    assert code == 0 and err == "", err
    header, *rows = out.splitlines()
    assert "STATE" in header and "DIR" in header and "LAST SEEN" in header
    assert "GROUP" not in header and max(len(x) for x in out.splitlines()) <= 100
    assert [r.split()[0] for r in rows] == [p["node_id"] for p in view.peer_list]
    assert " connected  out " in rows[0] and "71.5" in rows[0] and "20/100" in rows[0]
    assert " heard " in rows[2] and " mesh, 2 hops " in rows[2] and "-97 dBm +6.5 dB" in rows[2]
    code, out, err = await asub("peers", *d, "--wide")
    header = out.splitlines()[0]
    assert "CONNECTED" in header and "GROUP" in header and "BYTES IN" in header

    code, out, err = await asub("status", *d)
    assert code == 0 and err == "", err
    assert re.search(r"^state:\s+running$", out, re.M)
    assert re.search(r"^slots:\s+outbound 1/8, inbound 1/32$", out, re.M)
    # the fixture stamps the link "up" 600 s before the module was imported (a loaded run
    # may reach this test many minutes later)
    assert re.search(r"^bridge:\s+up since (\d+m \d\ds|\d+h \d\dm) ago on /dev/ttyUSB0$", out, re.M)
    assert re.search(r"^  radio:\s+EU868, 868.100 MHz, SF9, 125 kHz, CR 4/5, 14 dBm$", out, re.M)
    assert re.search(r"^  airtime:\s+1.2 of 36.0 s per hour used, 34.8 s left$", out, re.M)
    assert re.search(r"^metrics:\s+http://127.0.0.1:9464/metrics$", out, re.M)
    assert re.search(r"^relayed:\s+block 2, inv 40, tx 10$", out, re.M)

    code, out, err = await asub("ban", "127.99.0.1", "--duration", "45m", "--reason", "x", *d)
    assert code == 0 and err == "", err
    assert view.bm.is_banned(host="127.99.0.1")
    ban = view.bm.get(BanTarget("net", "127.99.0.1/32"))
    assert ban is not None and ban.until is not None and ban.until - ban.created == 2700

    code, out, err = await asub("bans", *d, "--json")
    assert code == 0 and err == ""
    assert "127.99.0.1" in {b["target"] for b in json.loads(out)}

    code, out, err = await asub("unban", "127.99.0.1", *d)
    assert code == 0 and out.strip() == "unbanned 127.99.0.1", err
    assert not view.bm.is_banned(host="127.99.0.1")
    code, out, err = await asub("unban", "127.99.0.1", *d)
    assert code == 1 and out == ""
    assert err.strip() == "loragate: error: 127.99.0.1 is not banned"


async def test_json_against_a_running_gateway(running) -> None:
    data, view, _ = running

    def go(*args: str) -> object:
        code, out, err = invoke(*args, "--data-dir", str(data), "--json")
        assert code == 0 and err == "", err
        return json.loads(out)

    peers = await asyncio.to_thread(go, "peers")
    assert peers == json.loads(json.dumps(view.peer_list))
    status = await asyncio.to_thread(go, "status")
    assert status["state"] == "running" and status["peers_by_kind"]["mesh"] == 1
    bans = await asyncio.to_thread(go, "bans")
    assert {b["target"] for b in bans} == {f"node:{BAD_NODE.hex()}", "10.66.0.0/16"}
    banned = await asyncio.to_thread(go, "ban", "10.8.0.0/16", "--duration", "permanent")
    assert banned["until"] is None and banned["target"] == "10.8.0.0/16"
    unbanned = await asyncio.to_thread(go, "unban", "10.66.0.0/16")
    assert unbanned == {"target": "10.66.0.0/16", "removed": True}


async def test_ban_on_running_gateway_survives_its_stop(running) -> None:
    data, view, server = running
    code, _, err = await asub("ban", "0011223344556677", "--data-dir", str(data))
    assert code == 0, err
    await server.close()  # the gateway stops (its store is closed: everything written)
    await view.close()
    assert not (data / "control.sock").exists()
    code, out, err = await asyncio.to_thread(invoke, "bans", "--data-dir", str(data), "--json")
    assert code == 0 and "(gateway stopped; read from" in err
    assert "node:0011223344556677" in {b["target"] for b in json.loads(out)}


# ---- user mistakes -------------------------------------------------------------------


def mistakes(tmp: Path, stopped: Path) -> list[tuple[list[str], int, str]]:
    afile = tmp / "a-file"
    afile.write_text("x")
    bad_toml = tmp / "bad.toml"
    bad_toml.write_text("listen_port = = 1\n")
    unknown = tmp / "unknown.toml"
    unknown.write_text("listen_prot = 1\n")
    wrong_type = tmp / "wrong.toml"
    wrong_type.write_text('[bans]\nthreshold = "lots"\n')
    garbage_db = tmp / "garbage"
    garbage_db.mkdir()
    (garbage_db / "loragate.sqlite3").write_bytes(b"this is not a database" * 100)
    not_utf8 = tmp / "latin1.toml"
    not_utf8.write_bytes("# réseau\nlisten_port = 1\n".encode("latin-1"))
    key_not_utf8 = tmp / "key-latin1"
    key_not_utf8.write_bytes(b"\xff" * 64)
    a_dir = tmp / "a-dir"
    a_dir.mkdir()
    db_is_dir = tmp / "db-is-dir"
    (db_is_dir / "loragate.sqlite3").mkdir(parents=True)
    data_dir_file = tmp / "data-dir-file.toml"
    data_dir_file.write_text(f'data_dir = "{afile}"\n')
    key_dir = tmp / "key-dir.toml"
    key_dir.write_text(f'network_key_file = "{a_dir}"\n')
    serial_file = tmp / "serial-file.toml"
    serial_file.write_text(f'serial_port = "{afile}"\n')
    d = ["--data-dir", str(stopped)]
    cases = [
        (["ban", "not-a-target", *d], 2, "not a node id"),
        (["ban", "0123456789abcde", *d], 2, "not a node id"),
        (["ban", "10.0.0.1", "--duration", "5x", *d], 2, "not a duration"),
        (["ban", "10.0.0.1", "--duration", "0", *d], 2, "more than 0"),
        (["ban", *d], 2, "Missing argument"),
        (["unban", "10.123.0.1", *d], 1, "is not banned"),
        (["frobnicate"], 2, "No such command"),
        (["peers", "--jsn", *d], 2, "No such option"),
        (["run", "--config", str(tmp / "missing.toml"), *d], 2, "cannot read"),
        (["run", "--config", str(bad_toml), *d], 2, "not valid TOML"),
        (["run", "--config", str(unknown), *d], 2, "unknown setting 'listen_prot'"),
        (["run", "--config", str(wrong_type), *d], 2, "bans.threshold='lots'"),
        (["run", "--listen-port", "70000", *d], 2, "listen_port=70000"),
        (["run", "--listen-port", "many", *d], 2, "'many' is not a valid integer"),
        (["run", "--listen-host", "localhost", *d], 2, "must be an IP address"),
        (["run", "--log-level", "loud", *d], 2, "log_level='loud'"),
        (["run", "--connect", "example.org", *d], 2, "must be IP:PORT"),
        (["run", "--network-key-file", str(tmp / "nokey"), *d], 2, "keygen --out"),
        (["run", "--network-key", "abcd", *d], 2, "64 hex digits"),
        (["run", "--serial-baud", "12345", *d], 2, "serial_baud=12345 is not a rate the bridge"),
        (["run", "--serial-port", "/dev/ttyNONE7", *d], 2, "no network key"),
        (["run", "--ban-base-duration-s", "9999999", *d], 2, "exceeds"),
        (["run", "--data-dir", str(afile / "gw")], 1, "not writable"),
        (["ban", "10.0.0.1", "--data-dir", str(afile / "gw")], 1, "cannot create data dir"),
        (["peers", "--data-dir", str(tmp / "empty")], 1, "no gateway database"),
        (["bans", "--data-dir", str(garbage_db)], 1, "cannot open database"),
        (["id", "--data-dir", str(tmp / "empty")], 1, "loragate keygen"),
        # a file that is not UTF-8, a directory or a bad path where a file is expected
        (["run", "--config", str(not_utf8), *d], 2, f"{not_utf8} is not UTF-8 text (byte 0xe9"),
        (["peers", "--config", str(not_utf8), *d], 2, "is not UTF-8 text"),
        (["bans", "--config", str(not_utf8), *d], 2, "is not UTF-8 text"),
        (["ban", "10.0.0.1", "--config", str(not_utf8), *d], 2, "is not UTF-8 text"),
        (["run", "--network-key-file", str(key_not_utf8), *d], 2, "is not UTF-8 text"),
        (["run", "--config", str(a_dir), *d], 2, "is a directory"),
        (["run", "--config", str(afile / "gw.toml"), *d], 2, "cannot read"),
        (["run", "--config", str(key_dir), *d], 2, "cannot be read: Is a directory"),
        (["run", "--network-key-file", str(a_dir), *d], 2, "is a directory"),
        (["run", "--config", str(data_dir_file)], 1, f"data dir {afile} is not a directory"),
        (["run", "--listen-port", "0", "--data-dir", str(db_is_dir)], 1, "cannot open database"),
        (["peers", "--data-dir", str(db_is_dir)], 1, "cannot open database"),
        (["run", "--serial-port", str(afile), *d], 2, f"serial_port='{afile}' is not a device"),
        (["run", "--serial-port", str(a_dir), *d], 2, "is a directory"),
        (["run", "--serial-port", str(afile / "tty"), *d], 2, "cannot be checked"),
        (["run", "--config", str(serial_file), *d], 2, "is not a device"),
    ]
    if os.geteuid() != 0:  # root reads any file
        unreadable = tmp / "unreadable.toml"
        unreadable.write_text("listen_port = 1\n")
        unreadable.chmod(0)
        cases.append((["run", "--config", str(unreadable), *d], 2, "Permission denied"))
    return cases


def test_user_mistakes_print_one_line(tmp_path: Path, stopped: Path) -> None:
    cases = mistakes(tmp_path, stopped)
    assert len(cases) >= 10
    for args, want_code, fragment in cases:
        code, out, err = invoke(*args)
        assert code == want_code, (args, code, err)
        assert out == "", (args, out)
        assert err.count("\n") == 1 and err.startswith("loragate: error: "), (args, err)
        assert fragment in err, (args, err)
        assert "Traceback" not in err


def test_user_mistakes_in_a_real_process(tmp_path: Path, stopped: Path) -> None:
    cases = mistakes(tmp_path, stopped)
    picked = [c for c in cases if c[0][0] in ("run", "bans", "unban")][::4]
    assert len(picked) >= 4
    for args, want_code, fragment in picked:
        code, out, err = sub(*args)
        assert (code, out) == (want_code, ""), (args, err)
        assert err.count("\n") == 1 and fragment in err and "Traceback" not in err


# ---- run -----------------------------------------------------------------------------


def test_every_setting_has_a_flag() -> None:
    run_opts = {o for p in cli.commands["run"].params for o in (*p.opts, *p.secondary_opts)}
    flags = {s.flag for s in setting_flags()}
    assert flags <= run_opts
    # --data-dir is every command's; the price list is a table, set in the file only.
    covered = {s.path for s in setting_flags()} | {("data_dir",), ("bans", "points")}
    expected: set[tuple[str, ...]] = set()
    for f in dataclasses.fields(GatewayConfig):
        sub_obj = getattr(GatewayConfig(), f.name)
        if dataclasses.is_dataclass(sub_obj):
            expected |= {(f.name, sf.name) for sf in dataclasses.fields(sub_obj)}
        else:
            expected.add((f.name,))
    assert covered == expected
    assert {"--connect", "--dns-seed", "--mdns", "--no-mdns", "--ban-threshold"} <= run_opts


def test_flags_override_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "gw.toml"
    conf.write_text(
        'listen_port = 9000\nconnect = ["127.0.0.2:1"]\nmdns = true\nlog_level = "debug"\n'
        "[bans]\nthreshold = 50\n[score]\nhalf_life_s = 60.0\n"
    )
    data = tmp_path / "d"
    code, out, err = invoke("run", "--config", str(conf), "--data-dir", str(data), "--check-config")
    assert code == 0, err
    cfg = json.loads(out)
    assert (cfg["listen_port"], cfg["mdns"], cfg["bans"]["threshold"]) == (9000, True, 50)
    assert cfg["connect"] == ["127.0.0.2:1"] and cfg["score"]["half_life_s"] == 60.0
    assert cfg["data_dir"] == str(data) and data.is_dir()
    code, out, err = invoke(
        "run",
        "--config",
        str(conf),
        "--data-dir",
        str(data),
        "--check-config",
        "--listen-port",
        "9100",
        "--no-mdns",
        "--connect",
        "127.0.0.3:2",
        "--connect",
        "[::1]:3",
        "--ban-threshold",
        "7",
        "--score-half-life-s",
        "90",
        "--dns-seed",
        "seed.example",
        "--network-key",
        hashlib.sha256(b"k").hexdigest(),
    )
    assert code == 0, err
    cfg = json.loads(out)
    assert (cfg["listen_port"], cfg["mdns"], cfg["bans"]["threshold"]) == (9100, False, 7)
    assert cfg["connect"] == ["127.0.0.3:2", "[::1]:3"] and cfg["score"]["half_life_s"] == 90.0
    assert cfg["dns_seeds"] == ["seed.example"] and cfg["log_level"] == "debug"
    assert cfg["network_key"] == "<set>"  # never echoed


def test_defaults_need_no_config(tmp_path: Path) -> None:
    code, out, err = invoke(
        "run", "--check-config", env={"LORAGATE_DATA_DIR": str(tmp_path / "env")}
    )
    assert code == 0, err
    cfg = json.loads(out)
    assert (cfg["listen_host"], cfg["listen_port"]) == ("127.0.0.1", 8333)
    assert cfg["data_dir"] == str(tmp_path / "env")


def test_run_reports_os_errors_in_one_line(tmp_path: Path) -> None:
    """A gateway whose port is taken fails with one line."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = sub(
            "run",
            "--data-dir",
            str(tmp_path / "d"),
            "--listen-port",
            str(port),
            "--log-level",
            "warning",
        )
    assert code != 0 and out == ""
    assert err.startswith("loragate: error: ") and "Traceback" not in err, err
    assert err.count("\n") == 1, err


# ---- logging -------------------------------------------------------------------------


def _record(level: int, msg: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("loragate.x", level, __file__, 1, msg, (), exc_info)


def test_log_lines_for_a_terminal() -> None:
    line = OneLineFormatter(journald=False).format(_record(logging.INFO, "hello\nworld"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO loragate\.x: hello \| world", line)
    line = OneLineFormatter(journald=False).format(_record(logging.ERROR, "failed", exc=True))
    assert "\n" not in line and "Traceback" in line and "ValueError: bad | thing" in line


def test_log_lines_for_journald() -> None:
    fmt = OneLineFormatter(journald=True)
    assert fmt.format(_record(logging.WARNING, "w")) == "<4>WARNING loragate.x: w"
    assert fmt.format(_record(logging.DEBUG, "d")).startswith("<7>DEBUG ")
    assert fmt.format(_record(logging.INFO, "i")).startswith("<6>INFO ")
    assert fmt.format(_record(logging.ERROR, "e")).startswith("<3>ERROR ")
    assert syslog_priority(logging.CRITICAL) == 2


def test_journald_detected_from_journal_stream(tmp_path: Path, monkeypatch) -> None:
    log_file = (tmp_path / "log").open("w")
    st = os.fstat(log_file.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert under_journald(log_file)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
    assert not under_journald(log_file)  # inherited variable, different stream
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not under_journald(log_file)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    root = logging.getLogger()
    old_level = root.level
    handler = setup_logging("warning", stream=log_file)
    try:
        logging.getLogger("loragate.t").info("hidden")
        logging.getLogger("loragate.t").warning("shown")
        log_file.flush()
        assert (tmp_path / "log").read_text() == "<4>WARNING loragate.t: shown\n"
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        log_file.close()


def test_setup_logging_is_idempotent_and_checks_level() -> None:
    root = logging.getLogger()
    old_level = root.level
    a, b = io.StringIO(), io.StringIO()
    setup_logging("info", stream=a, journald=False)
    handler = setup_logging("debug", stream=b, journald=False)
    try:
        logging.getLogger("loragate.t").debug("once")
        assert a.getvalue() == "" and b.getvalue().endswith("DEBUG loragate.t: once\n")
        with pytest.raises(ValueError):
            setup_logging("loud")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_node_target_helper_matches_cli_format() -> None:
    assert str(node_target(BAD_NODE)) == f"node:{BAD_NODE.hex()}"


# ---- with the real peer manager ------------------------------------------------------


async def start_gateway(data: Path, *args: str) -> asyncio.subprocess.Process:
    """`loragate run` on `data`, returned once its control socket answers."""
    env = {k: v for k, v in os.environ.items() if k != "LORAGATE_DATA_DIR"}
    proc = await asyncio.create_subprocess_exec(
        LORAGATE, "run", "--data-dir", str(data), "--listen-port", "0", "--log-level", "warning",
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        **procs.child_options(new_session=False),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not await control.is_running(data / "control.sock"):
        if proc.returncode is not None or time.monotonic() > deadline:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()
            pytest.fail(f"gateway did not open its control socket: {await proc.stderr.read()!r}")  # type: ignore[union-attr]
        await asyncio.sleep(0.05)
    return proc


async def test_status_tells_an_unplugged_bridge_from_no_bridge(tmp_path: Path) -> None:
    # issue 13: both used to read "airtime: no bridge".
    key = tmp_path / "network.key"
    key.write_text(hashlib.sha256(b"status mesh").hexdigest() + "\n")
    port = tmp_path / "ttyUSB-unplugged"
    plain = await start_gateway(tmp_path / "plain")
    unplugged = await start_gateway(
        tmp_path / "gw", "--serial-port", str(port), "--network-key-file", str(key)
    )
    try:
        code, out, err = await asub("status", "--data-dir", str(tmp_path / "plain"))
        assert code == 0 and err == "", err
        assert re.search(r"^bridge:\s+none \(no serial_port configured\)$", out, re.M), out
        code, out, err = await asub("status", "--data-dir", str(tmp_path / "gw"))
        assert code == 0 and err == "", err
        line = re.search(r"^bridge:\s+(.*)$", out, re.M)
        assert line is not None, out
        assert re.fullmatch(rf"down since (now|\d+s ago) on {re.escape(str(port))} \(.+\)", line[1])
        code, out, err = await asub("status", "--data-dir", str(tmp_path / "gw"), "--json")
        bridge = json.loads(out)["bridge"]
        assert (bridge["state"], bridge["port"]) == ("down", str(port))
    finally:
        for proc in (plain, unplugged):
            proc.terminate()
        for proc in (plain, unplugged):
            await asyncio.wait_for(proc.wait(), 20)


async def test_every_command_against_the_real_gateway_process(tmp_path: Path) -> None:
    data = tmp_path / "gw"
    d = ("--data-dir", str(data))
    proc = await start_gateway(data)
    try:
        code, out, err = await asub("status", *d, "--json")
        assert code == 0 and err == "", err
        st = json.loads(out)
        assert st["state"] == "running" and len(st["node_id"]) == 16
        code, out, err = await asub("peers", *d, "--json")
        assert (code, json.loads(out), err) == (0, [], "")
        code, out, err = await asub("ban", "10.44.0.0/16", "--duration", "2h", *d)
        assert code == 0 and out.startswith("banned 10.44.0.0/16 until"), err
        code, out, err = await asub("ban", "aabbccddeeff0011", "--duration", "permanent", *d)
        assert code == 0, err
        code, out, err = await asub("bans", *d)
        assert code == 0 and "10.44.0.0/16" in out and "node:aabbccddeeff0011" in out, err
        code, out, err = await asub("unban", "10.44.0.0/16", *d)
        assert (code, out) == (0, "unbanned 10.44.0.0/16\n"), err
        # a second gateway on the same data dir is refused before it starts anything
        code, out, err = await asub("run", *d, "--listen-port", "0")
        assert code == 1 and out == "" and err.count("\n") == 1
        assert err.startswith("loragate: error: a gateway is already running"), err
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
    assert proc.returncode == 0
    # stopped now: the ban made through the running gateway is in its database
    code, out, err = await asub("bans", *d, "--json")
    assert code == 0 and "(gateway stopped; read from" in err
    assert [b["target"] for b in json.loads(out)] == ["node:aabbccddeeff0011"]
