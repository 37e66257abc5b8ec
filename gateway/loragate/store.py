"""SQLite persistence: address book, bans (active, history, evidence), peer stats, key/values.

* WAL journal with ``synchronous=NORMAL``: a killed process (SIGKILL, crash) never
  corrupts the file and keeps every committed transaction. Ban transactions switch to
  ``synchronous=FULL`` so they also survive a power cut (they are rare).
* Writes are batched: ``queue_*`` methods collect rows and ``flush()`` writes them in
  one transaction (automatically once ``batch_size`` rows wait). A crash loses at most
  the unflushed batch. Bans are written at once (``ban_saved``/``ban_lifted``), taking
  any queued evidence with them.
* ``Store`` is bound to the thread that created it (sqlite3 objects are).
  ``AsyncStore`` owns one dedicated worker thread that creates and uses the ``Store``,
  so the event loop never blocks on disk; its ``BanSink`` methods are fire-and-forget
  jobs queued in order on that thread.
* The evidence and ban-history tables are trimmed to the newest ``MAX_EVIDENCE_ROWS`` /
  ``MAX_HISTORY_ROWS`` rows at each flush.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from loragate.bans import Ban, BanHistoryEntry, BanTarget, Evidence

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_BATCH = 1000
MAX_EVIDENCE_ROWS = 50_000
MAX_HISTORY_ROWS = 50_000
_FETCH = 2000

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS addresses (
    host TEXT NOT NULL, port INTEGER NOT NULL, node_id BLOB, kind TEXT NOT NULL,
    services INTEGER NOT NULL, last_seen REAL NOT NULL, last_try REAL NOT NULL,
    last_success REAL NOT NULL, attempts INTEGER NOT NULL, source_family TEXT NOT NULL,
    source_prefix BLOB NOT NULL, in_tried INTEGER NOT NULL,
    PRIMARY KEY (host, port)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bans (
    target_kind TEXT NOT NULL, target TEXT NOT NULL, created REAL NOT NULL, until REAL,
    reason TEXT NOT NULL, count INTEGER NOT NULL, manual INTEGER NOT NULL,
    PRIMARY KEY (target_kind, target)
);
CREATE TABLE IF NOT EXISTS ban_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target_kind TEXT NOT NULL, target TEXT NOT NULL,
    created REAL NOT NULL, until REAL, reason TEXT NOT NULL, count INTEGER NOT NULL,
    manual INTEGER NOT NULL, lifted REAL, lift_reason TEXT NOT NULL DEFAULT '',
    UNIQUE (target_kind, target, created)
);
CREATE TABLE IF NOT EXISTS ban_evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target_kind TEXT NOT NULL, target TEXT NOT NULL,
    time REAL NOT NULL, misbehaviour TEXT NOT NULL, points INTEGER NOT NULL,
    msg_type INTEGER, reason TEXT NOT NULL, frame_sha256 BLOB
);
CREATE INDEX IF NOT EXISTS ban_evidence_target ON ban_evidence (target_kind, target);
CREATE TABLE IF NOT EXISTS peer_stats (
    peer TEXT PRIMARY KEY, updated REAL NOT NULL, data TEXT NOT NULL
);
"""


class StoreError(RuntimeError):
    """The database cannot be used (newer schema, not a database, ...)."""


class AddrRow(NamedTuple):
    """One persisted address-book entry."""

    host: str
    port: int
    node_id: bytes | None
    kind: str
    services: int
    last_seen: float
    last_try: float
    last_success: float
    attempts: int
    source_family: str
    source_prefix: bytes
    in_tried: bool


def _ban_row(ban: Ban) -> tuple[Any, ...]:
    t = ban.target
    return (t.kind, t.value, ban.created, ban.until, ban.reason, ban.count, int(ban.manual))


def _row_ban(r: tuple[Any, ...]) -> Ban:
    return Ban(BanTarget(r[0], r[1]), r[2], r[3], r[4], r[5], bool(r[6]))


class Store:
    """Synchronous store; use from one thread only (or through ``AsyncStore``)."""

    def __init__(self, path: str | Path, *, batch_size: int = DEFAULT_BATCH) -> None:
        self.path = Path(path)
        self.batch_size = batch_size
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open database {self.path}: {e}") from e
        self._addr_upserts: dict[tuple[str, int], AddrRow] = {}
        self._addr_deletes: set[tuple[str, int]] = set()
        self._evidence: list[Evidence] = []
        self._stats: dict[str, tuple[float, str]] = {}
        self._closed = False

    def _migrate(self) -> None:
        db = self._db
        row = db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'"
        ).fetchone()
        version = 0
        if row is not None:
            v = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = v[0] or 0
        if version > SCHEMA_VERSION:
            raise StoreError(f"database schema {version} is newer than supported {SCHEMA_VERSION}")
        if version < SCHEMA_VERSION:
            db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _tx(self, fn: Callable[[sqlite3.Connection], object], durable: bool = False) -> None:
        db = self._db
        if durable:
            db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        try:
            fn(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            if durable:
                db.execute("PRAGMA synchronous=NORMAL")

    # ---- key/values --------------------------------------------------------------

    def get_kv(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_kv(self, key: str, value: bytes) -> None:
        self._tx(lambda db: db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value)))

    # ---- addresses ---------------------------------------------------------------

    def pending(self) -> int:
        """Rows waiting for ``flush``."""
        return (
            len(self._addr_upserts)
            + len(self._addr_deletes)
            + len(self._evidence)
            + len(self._stats)
        )

    def _maybe_flush(self) -> None:
        if self.pending() >= self.batch_size:
            self.flush()

    def queue_addresses(self, rows: Iterable[AddrRow]) -> None:
        for row in rows:
            key = (row.host, row.port)
            self._addr_deletes.discard(key)
            self._addr_upserts[key] = row
            self._maybe_flush()

    def queue_address_deletes(self, addrs: Iterable[tuple[str, int]]) -> None:
        for key in addrs:
            self._addr_upserts.pop(key, None)
            self._addr_deletes.add(key)
            self._maybe_flush()

    def replace_addresses(self, rows: Iterable[AddrRow]) -> None:
        """Replace the whole address table in one transaction."""
        self._addr_upserts.clear()
        self._addr_deletes.clear()

        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM addresses")
            db.executemany(
                "INSERT OR REPLACE INTO addresses VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (tuple(r) for r in rows),
            )

        self._tx(run)

    def write_address_changes(
        self, full: bool, upserts: list[AddrRow], deletes: list[tuple[str, int]]
    ) -> None:
        """Persist an ``AddrMan.take_changes()`` result (full replace, or batched rows)."""
        if full:
            self.replace_addresses(upserts)
        else:
            self.queue_address_deletes(deletes)
            self.queue_addresses(upserts)

    def load_addresses(self) -> Iterator[AddrRow]:
        cur = self._db.execute("SELECT * FROM addresses")
        while True:
            chunk = cur.fetchmany(_FETCH)
            if not chunk:
                return
            for r in chunk:
                yield AddrRow(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    r[6],
                    r[7],
                    r[8],
                    r[9],
                    bytes(r[10]),
                    bool(r[11]),
                )

    def count_addresses(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM addresses").fetchone()[0])

    # ---- peer stats --------------------------------------------------------------

    def queue_peer_stats(self, peer: str, data: dict[str, Any], updated: float) -> None:
        self._stats[peer] = (updated, json.dumps(data, sort_keys=True))
        self._maybe_flush()

    def load_peer_stats(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for peer, data in self._db.execute("SELECT peer, data FROM peer_stats"):
            out[peer] = json.loads(data)
        return out

    # ---- bans (BanSink) ----------------------------------------------------------

    def ban_saved(self, ban: Ban) -> None:
        """Persist a new ban now (durably), with any queued evidence."""
        evidence = self._evidence
        self._evidence = []

        def run(db: sqlite3.Connection) -> None:
            self._write_evidence(db, evidence)
            row = _ban_row(ban)
            db.execute("INSERT OR REPLACE INTO bans VALUES (?,?,?,?,?,?,?)", row)
            db.execute(
                "INSERT OR REPLACE INTO ban_history "
                "(target_kind, target, created, until, reason, count, manual) "
                "VALUES (?,?,?,?,?,?,?)",
                row,
            )

        self._tx(run, durable=True)

    def ban_lifted(self, entry: BanHistoryEntry) -> None:
        ban = entry.ban
        t = ban.target

        def run(db: sqlite3.Connection) -> None:
            db.execute(
                "DELETE FROM bans WHERE target_kind=? AND target=? AND created=?",
                (t.kind, t.value, ban.created),
            )
            db.execute(
                "UPDATE ban_history SET lifted=?, lift_reason=? "
                "WHERE target_kind=? AND target=? AND created=?",
                (entry.lifted, entry.lift_reason, t.kind, t.value, ban.created),
            )

        self._tx(run, durable=True)

    def evidence_added(self, evidence: Evidence) -> None:
        self._evidence.append(evidence)
        self._maybe_flush()

    @staticmethod
    def _write_evidence(db: sqlite3.Connection, evidence: list[Evidence]) -> None:
        if not evidence:
            return
        db.executemany(
            "INSERT INTO ban_evidence "
            "(target_kind, target, time, misbehaviour, points, msg_type, reason, frame_sha256) "
            "VALUES (?,?,?,?,?,?,?,?)",
            [
                (
                    e.target.kind,
                    e.target.value,
                    e.time,
                    e.misbehaviour,
                    e.points,
                    e.msg_type,
                    e.reason,
                    e.frame_sha256,
                )
                for e in evidence
            ],
        )

    def load_bans(self) -> list[Ban]:
        return [_row_ban(r) for r in self._db.execute("SELECT * FROM bans")]

    def load_ban_counts(self) -> dict[BanTarget, int]:
        rows = self._db.execute(
            "SELECT target_kind, target, MAX(count) FROM ban_history GROUP BY target_kind, target"
        )
        return {BanTarget(k, v): int(c) for k, v, c in rows}

    def ban_history(
        self, target: BanTarget | None = None, limit: int = 100
    ) -> list[BanHistoryEntry]:
        sql = (
            "SELECT target_kind, target, created, until, reason, count, manual, lifted, lift_reason"
            " FROM ban_history"
        )
        args: tuple[Any, ...] = ()
        if target is not None:
            sql += " WHERE target_kind=? AND target=?"
            args = (target.kind, target.value)
        sql += " ORDER BY id DESC LIMIT ?"
        out = []
        for r in self._db.execute(sql, (*args, limit)):
            out.append(BanHistoryEntry(_row_ban(r[:7]), r[7], r[8]))
        return out

    def load_evidence(self, target: BanTarget, limit: int = 100) -> list[Evidence]:
        rows = self._db.execute(
            "SELECT time, misbehaviour, points, msg_type, reason, frame_sha256 FROM ban_evidence"
            " WHERE target_kind=? AND target=? ORDER BY id DESC LIMIT ?",
            (target.kind, target.value, limit),
        )
        return [
            Evidence(target, r[0], r[1], r[2], r[3], r[4], None if r[5] is None else bytes(r[5]))
            for r in rows
        ]

    # ---- batching ----------------------------------------------------------------

    def flush(self) -> None:
        """Write every queued row in one transaction."""
        if self.pending() == 0:
            return
        upserts = list(self._addr_upserts.values())
        deletes = list(self._addr_deletes)
        evidence = self._evidence
        stats = list(self._stats.items())
        self._addr_upserts = {}
        self._addr_deletes = set()
        self._evidence = []
        self._stats = {}

        def run(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM addresses WHERE host=? AND port=?", deletes)
            db.executemany(
                "INSERT OR REPLACE INTO addresses VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [tuple(r) for r in upserts],
            )
            self._write_evidence(db, evidence)
            db.executemany(
                "INSERT OR REPLACE INTO peer_stats VALUES (?,?,?)",
                [(p, u, d) for p, (u, d) in stats],
            )
            for table, keep in (
                ("ban_evidence", MAX_EVIDENCE_ROWS),
                ("ban_history", MAX_HISTORY_ROWS),
            ):
                db.execute(
                    f"DELETE FROM {table} WHERE id <= (SELECT MAX(id) FROM {table}) - ?", (keep,)
                )

        self._tx(run)

    def integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._db.close()


class AsyncStore:
    """Runs a ``Store`` on one dedicated thread; every method is safe on the event loop."""

    def __init__(self, path: str | Path, *, batch_size: int = DEFAULT_BATCH) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="loragate-sqlite"
        )
        self._store_future = self._pool.submit(Store, path, batch_size=batch_size)
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path, *, batch_size: int = DEFAULT_BATCH) -> AsyncStore:
        self = cls(path, batch_size=batch_size)
        try:
            await asyncio.wrap_future(self._store_future)
        except BaseException:
            self._closed = True
            self._pool.shutdown(wait=False)
            raise
        return self

    def _store(self) -> Store:
        # Only called on the worker thread, after the constructor job has run.
        return self._store_future.result()

    async def run(self, fn: Callable[[Store], _T]) -> _T:
        """Run ``fn(store)`` on the worker thread and await its result."""
        if self._closed:
            raise StoreError("store is closed")
        return await asyncio.wrap_future(self._pool.submit(lambda: fn(self._store())))

    def submit(self, fn: Callable[[Store], object]) -> None:
        """Queue ``fn(store)`` without waiting (errors are logged)."""
        if self._closed:
            raise StoreError("store is closed")
        fut = self._pool.submit(lambda: fn(self._store()))
        fut.add_done_callback(_log_failure)

    # BanSink: queued in order on the worker, which commits at once.
    def ban_saved(self, ban: Ban) -> None:
        self.submit(lambda s: s.ban_saved(ban))

    def ban_lifted(self, entry: BanHistoryEntry) -> None:
        self.submit(lambda s: s.ban_lifted(entry))

    def evidence_added(self, evidence: Evidence) -> None:
        self.submit(lambda s: s.evidence_added(evidence))

    async def drain(self) -> None:
        """Wait until every job queued so far has run."""
        await self.run(lambda s: None)

    async def flush(self) -> None:
        await self.run(lambda s: s.flush())

    async def get_kv(self, key: str) -> bytes | None:
        return await self.run(lambda s: s.get_kv(key))

    async def set_kv(self, key: str, value: bytes) -> None:
        await self.run(lambda s: s.set_kv(key, value))

    async def write_address_changes(
        self, full: bool, upserts: list[AddrRow], deletes: list[tuple[str, int]]
    ) -> None:
        await self.run(lambda s: s.write_address_changes(full, upserts, deletes))

    async def load_addresses(self) -> list[AddrRow]:
        return await self.run(lambda s: list(s.load_addresses()))

    async def load_bans(self) -> tuple[list[Ban], dict[BanTarget, int]]:
        return await self.run(lambda s: (s.load_bans(), s.load_ban_counts()))

    async def queue_peer_stats(self, peer: str, data: dict[str, Any], updated: float) -> None:
        await self.run(lambda s: s.queue_peer_stats(peer, data, updated))

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self.run(lambda s: s.close())
        finally:
            self._closed = True
            self._pool.shutdown(wait=True)


def _log_failure(fut: concurrent.futures.Future[object]) -> None:
    exc = fut.exception()
    if exc is not None:
        log.error("store job failed: %s", exc, exc_info=exc)
