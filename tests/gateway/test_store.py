"""SQLite store: round trips, batching, crash safety under SIGKILL, the async facade."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from loragate.bans import BanManager, Misbehaviour, net_target, node_target
from loragate.store import SCHEMA_VERSION, AddrRow, AsyncStore, Store, StoreError
from tools import procs

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0
NODE = bytes.fromhex("a1a2a3a4a5a6a7a8")


def row(i: int, tried: bool = False) -> AddrRow:
    return AddrRow(
        f"10.{i // 250 % 250}.{i % 250}.1",
        8333,
        None if i % 2 else i.to_bytes(8, "big"),
        "full",
        i,
        T0 + i,
        T0,
        0.0,
        i % 4,
        "ipv4",
        b"\x01\x02",
        tried,
    )


def test_schema_and_pragmas(tmp_path) -> None:
    s = Store(tmp_path / "g.sqlite")
    # synchronous is a setting of the store's own connection: only it can show it.
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    other = sqlite3.connect(tmp_path / "g.sqlite")  # WAL and the schema are the file's
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        other.close()
    s.close()
    Store(tmp_path / "g.sqlite").close()  # reopening keeps the schema


def test_newer_schema_and_garbage_file_rejected(tmp_path) -> None:
    p = tmp_path / "g.sqlite"
    Store(p).close()
    db = sqlite3.connect(p)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(p)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        Store(junk)


def test_kv_and_address_round_trip_batched(tmp_path) -> None:
    p = tmp_path / "g.sqlite"
    s = Store(p, batch_size=100)
    s.set_kv("addrman_secret", b"\x00" * 16)
    s.queue_addresses(row(i) for i in range(250))
    # Two full batches went out automatically; 50 rows still wait.
    assert s.count_addresses() == 200 and s.pending() == 50
    s.queue_address_deletes([(row(0).host, 8333)])
    s.flush()
    assert s.pending() == 0 and s.count_addresses() == 249
    s.queue_addresses([row(5)._replace(attempts=9, in_tried=True)])
    s.close()

    s2 = Store(p)
    assert s2.get_kv("addrman_secret") == b"\x00" * 16 and s2.get_kv("missing") is None
    rows = {(r.host, r.port): r for r in s2.load_addresses()}
    assert len(rows) == 249
    assert rows[(row(5).host, 8333)] == row(5)._replace(attempts=9, in_tried=True)
    assert rows[(row(6).host, 8333)] == row(6)
    s2.replace_addresses([row(1000)])
    assert list(s2.load_addresses()) == [row(1000)]
    s2.close()


def test_bans_history_evidence_round_trip(tmp_path) -> None:
    p = tmp_path / "g.sqlite"
    s = Store(p)
    bm = BanManager(sink=s)
    for _ in range(4):
        bm.misbehaving(Misbehaviour.BAD_TAG, node_id=NODE, now=T0, frame=b"x", msg_type=1)
    bm.misbehaving(Misbehaviour.BAD_TAG, node_id=NODE, host="127.0.9.9", now=T0, reason="tag")
    bm.ban(net_target("10.9.0.0/16"), now=T0, permanent=True, reason="operator")
    bm.ban(net_target("10.8.0.0/16"), now=T0, duration_s=60)
    bm.unban(net_target("10.8.0.0/16"), now=T0 + 1)
    # Bans were committed without any flush: a second connection already sees them.
    other = sqlite3.connect(p)
    assert other.execute("SELECT COUNT(*) FROM bans").fetchone()[0] == 3
    other.close()
    s.close()

    s2 = Store(p)
    bans = {str(b.target): b for b in s2.load_bans()}
    assert set(bans) == {"node:" + NODE.hex(), "127.0.9.9", "10.9.0.0/16"}
    assert bans["10.9.0.0/16"].until is None and bans["10.9.0.0/16"].manual
    assert bans["node:" + NODE.hex()].until == pytest.approx(T0 + 3600)
    ev = s2.load_evidence(node_target(NODE))
    assert len(ev) == 5 and ev[-1].frame_sha256 is not None and ev[0].reason == "tag"
    hist = s2.ban_history(net_target("10.8.0.0/16"))
    assert len(hist) == 1 and hist[0].lifted == T0 + 1 and hist[0].lift_reason == "manual"
    counts = s2.load_ban_counts()
    assert counts[node_target(NODE)] == 1
    bm2 = BanManager(sink=s2)
    bm2.restore(s2.load_bans(), counts)
    assert bm2.is_banned(node_id=NODE, now=T0 + 10)
    assert bm2.is_banned(host="10.9.1.1", now=T0 + 1e9)
    again = bm2.ban(node_target(NODE), now=T0 + 7200)
    assert again.count == 2  # the count survived the restart: durations keep growing
    s2.close()


def test_peer_stats_round_trip(tmp_path) -> None:
    s = Store(tmp_path / "g.sqlite")
    s.queue_peer_stats("node:01", {"hs_ok": 2.5, "latency_ms": None}, T0)
    s.flush()
    assert s.load_peer_stats() == {"node:01": {"hs_ok": 2.5, "latency_ms": None}}
    s.close()


CHILD = textwrap.dedent(
    """
    import sys
    from loragate.bans import BanManager, net_target
    from loragate.store import AddrRow, Store

    store = Store(sys.argv[1], batch_size=500)
    bans = BanManager(sink=store)
    i = 0
    while True:
        store.queue_addresses(
            AddrRow(f"10.{(i * 7 + k) // 250 % 250}.{(i * 7 + k) % 250}.1", 1, None, "full", 0,
                    0.0, 0.0, 0.0, 0, "ipv4", b"", False)
            for k in range(7)
        )
        bans.ban(net_target(f"172.16.{i // 250 % 250}.{i % 250}"), now=1.0, permanent=True)
        print(i, flush=True)
        i += 1
    """
)


def test_bans_survive_sigkill_mid_batch(tmp_path) -> None:
    db = tmp_path / "crash.sqlite"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "gateway"), str(ROOT / "shared")])
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
        **procs.child_options(new_session=False),
    )
    try:
        last = -1
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while last < 300 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            last = int(line)
        assert last >= 300, "child did not make progress"
        proc.send_signal(signal.SIGKILL)  # while it keeps writing
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    s = Store(db)
    assert s.integrity_check() == "ok"
    banned = {str(b.target) for b in s.load_bans()}
    # Every ban the child reported as done is there (it may have committed one more).
    for i in range(last + 1):
        assert f"172.16.{i // 250 % 250}.{i % 250}" in banned
    # Addresses arrive in whole batches only: the unflushed batch is lost, nothing torn.
    assert s.count_addresses() % 500 == 0
    assert s.count_addresses() >= 500 * ((last + 1) * 7 // 500 - 1)
    s.close()


def test_async_store_uses_one_worker_thread(tmp_path) -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()
        st = await AsyncStore.open(tmp_path / "a.sqlite", batch_size=10)
        idents = {await st.run(lambda s: threading.get_ident()) for _ in range(20)}
        assert len(idents) == 1 and loop_thread not in idents
        bm = BanManager(sink=st)  # fire-and-forget jobs on the worker
        bm.misbehaving("bad_signature", node_id=NODE, host="127.0.0.7", now=T0)
        await st.drain()
        bans, counts = await st.load_bans()
        assert {str(b.target) for b in bans} == {"node:" + NODE.hex(), "127.0.0.7"}
        assert counts[node_target(NODE)] == 1
        await st.write_address_changes(False, [row(i) for i in range(25)], [])
        await st.flush()
        assert len(await st.load_addresses()) == 25
        await st.set_kv("k", b"v")
        assert await st.get_kv("k") == b"v"
        await st.close()
        with pytest.raises(StoreError):
            await st.get_kv("k")

    asyncio.run(main())


def test_async_store_open_error_is_raised(tmp_path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"garbage" * 1000)

    async def main() -> None:
        with pytest.raises(StoreError):
            await AsyncStore.open(junk)

    asyncio.run(main())
