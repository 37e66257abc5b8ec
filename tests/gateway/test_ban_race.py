"""Issue 15, finding 2: a ban or unban the CLI acknowledges is in force, also when the CLI
runs while the gateway is starting.

The race: a starting gateway reads its bans from SQLite before it opens its control
socket; a `loragate ban` in between saw "not running", wrote the database and said
"applied at its next start", but the gateway had read the table already. The fix is the
data dir's lock (`loragate.datadir`): the gateway holds it from before it reads its bans,
and the CLI writes offline only under it, else waits for the control socket.

Everything here is real: `loragate run` and `loragate ban/unban/bans` as processes on one
data dir, the real SQLite file, the real control socket. Each round starts the gateway,
issues a ban of a fresh target and an unban of a target banned before the round, after
a delay from the gateway's spawn (0 to 0.5 s) or from its log line saying it has
restored its bans (0 to 0.5 s: inside the old window, which a realistic address book of
15,000 entries makes about a second long on this machine), then asks the running
gateway for its bans. The gateway is restarted for every round, so every earlier
acknowledgement is checked again after each restart. Before the fix the rounds after
the "restored" line lost their ban and unban.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from loragate.addrman import load_addrman, save_addrman
from loragate.config import GatewayConfig
from loragate.datadir import DataDirLock
from loragate.store import Store
from loragate.view import StoppedGatewayView
from tools import procs

LORAGATE = str(Path(sys.executable).with_name("loragate"))
RESTORED = "bans from the database"  # manager.start, before the address book is read
# (log line to wait for first or None: from the spawn, seconds after it)
TRIGGERS: list[tuple[str | None, float]] = [
    *((None, d) for d in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)),
    *((RESTORED, d) for d in (0.0, 0.25, 0.5)),
]
CONTROL_OPEN = "control socket listening at"
BOOK_SIZE = 15_000
WAIT_S = 60.0

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "LORAGATE_DATA_DIR"}


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        LORAGATE,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
        **procs.child_options(new_session=False),
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class GatewayProcess:
    """`loragate run` with its log read line by line; waits on log lines, not on time."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            LORAGATE,
            "run",
            "--data-dir",
            str(self.data),
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "0",
            "--log-level",
            "info",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=_env(),
            **procs.child_options(new_session=False),
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace"))
            self._changed.set()
        self._changed.set()

    async def logged(self, text: str) -> None:
        async def find() -> None:
            while not any(text in line for line in self.lines):
                assert self.proc is not None
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"gateway exited before {text!r}: {self.lines}")
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(find(), WAIT_S)

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        code = await asyncio.wait_for(self.proc.wait(), WAIT_S)
        if self._reader is not None:
            await self._reader
        return code


async def _bans(data: Path) -> tuple[set[str], bool]:
    code, out, err = await _cli("bans", "--data-dir", str(data), "--json")
    assert code == 0, err
    return {b["target"] for b in json.loads(out)}, "gateway stopped" not in err


def _target(i: int, kind: int) -> str:
    return f"10.{kind}.{i}.0/24"


def _address_book(data: Path, size: int) -> None:
    """A book of `size` addresses from 250 sources, written by the real AddrMan + Store."""
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = Store(data / "loragate.sqlite3")
    try:
        book = load_addrman(store)
        now = time.time()
        for i in range(size):
            a, b = divmod(i, 250)
            addr = (f"100.{a % 200}.{b}.{a // 200 + 1}", 8333)
            book.add(addr, f"101.{i % 250}.0.1", kind="full", now=now - 100)
        save_addrman(book, store)
    finally:
        store.close()


async def test_every_acknowledged_ban_and_unban_is_in_force_across_restarts(
    tmp_path: Path,
) -> None:
    data = tmp_path / "gw"
    _address_book(data, BOOK_SIZE)
    # What each round unbans was banned before the gateway of that round started.
    stopped = StoppedGatewayView(GatewayConfig(data_dir=data))
    for i in range(len(TRIGGERS)):
        await stopped.ban(_target(i, 2), 7200.0, "to be lifted")
    banned: set[str] = set()  # acknowledged bans
    lifted: set[str] = set()  # acknowledged unbans
    routes = {"socket": 0, "offline": 0}
    for i, (line, delay) in enumerate(TRIGGERS):
        trigger = f"{delay:g} s after {line or 'the spawn'}"
        gw = GatewayProcess(data)
        await gw.start()
        try:
            if line is not None:
                await gw.logged(line)
            if delay:
                await asyncio.sleep(delay)  # the race's parameter, not a synchronisation
            ban, unban = _target(i, 1), _target(i, 2)
            (code_b, out_b, err_b), (code_u, out_u, err_u) = await asyncio.gather(
                _cli("ban", ban, "--duration", "2h", "--data-dir", str(data)),
                _cli("unban", unban, "--data-dir", str(data)),
            )
            assert code_b == 0 and out_b.startswith(f"banned {ban} until"), err_b
            assert (code_u, out_u) == (0, f"unbanned {unban}\n"), err_u
            banned.add(ban)
            lifted.add(unban)
            for err in (err_b, err_u):
                routes["offline" if "gateway stopped" in err else "socket"] += 1
            await gw.logged(CONTROL_OPEN)
            now, live = await _bans(data)
            assert live, "the gateway stopped by itself"
            assert banned <= now, f"round {i} ({trigger}): missing {sorted(banned - now)}"
            assert not lifted & now, f"round {i} ({trigger}): still {sorted(lifted & now)}"
        finally:
            assert await gw.stop() == 0, gw.lines[-5:]
    # One more start: everything acknowledged is what the database gives a gateway.
    gw = GatewayProcess(data)
    await gw.start()
    try:
        await gw.logged(CONTROL_OPEN)
        now, live = await _bans(data)
        assert live and banned <= now and not lifted & now
    finally:
        assert await gw.stop() == 0
    print(
        f"\nban race: {len(TRIGGERS) + 1} starts, {len(banned)} bans and {len(lifted)} unbans "
        f"acknowledged, all in force; through the control socket {routes['socket']}, "
        f"offline under the data dir's lock {routes['offline']}"
    )


async def test_the_cli_waits_for_a_gateway_that_holds_the_data_dir(tmp_path: Path) -> None:
    """A holder of the lock with no control socket (a gateway between its read of the
    bans and its socket): `loragate ban` neither writes the database nor gives up; it
    writes once the holder lets go."""
    data = tmp_path / "gw"
    data.mkdir(mode=0o700)
    holder = DataDirLock(data)
    assert holder.try_acquire()
    cli = asyncio.create_task(_cli("ban", "10.9.0.0/16", "--data-dir", str(data)))
    # The CLI is running and polling: nothing in the database while the lock is held.
    db = data / "loragate.sqlite3"
    done, _ = await asyncio.wait({cli}, timeout=2.0)
    assert not done, cli.result()
    assert not db.exists() or "10.9.0.0/16" not in {
        b["target"] for b in await StoppedGatewayView(GatewayConfig(data_dir=data)).bans()
    }
    holder.release()
    code, out, err = await cli
    assert code == 0 and out.startswith("banned 10.9.0.0/16"), err
    assert "applied at its next start" in err
    assert {b["target"] for b in await StoppedGatewayView(GatewayConfig(data_dir=data)).bans()} == {
        "10.9.0.0/16"
    }


def test_the_lock_excludes_a_second_holder_and_is_dropped_on_release(tmp_path: Path) -> None:
    first, second = DataDirLock(tmp_path), DataDirLock(tmp_path)
    assert first.try_acquire()
    assert not second.try_acquire() and not second.held
    assert first.holder() == os.getpid()
    assert second.describe_holder() == f"process {os.getpid()}"
    first.release()
    assert second.try_acquire()
    second.release()
    assert (tmp_path / "gateway.lock").stat().st_mode & 0o777 == 0o600
