"""Ban table persistence: survives a restart (separate processes), tolerates corrupt
and missing files, writes at most once per interval — on the unix port and CPython.

The same script runs under both runtimes; files written by one are read by the other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from upy import FIRMWARE, run_upy

pytestmark = pytest.mark.upy

SCRIPT = r"""
import sys
from loranode.bans import BanTable, ACTIVE, PERMANENT, HISTORY
from lorawire.auth import BAD_SIGNATURE, BAD_TAG, MANUAL

mode = sys.argv[1]
path = sys.argv[2]
A = b'AAAAAAAA'
B = b'BBBBBBBB'
C = b'CCCCCCCC'

def slot(bt, x):
    return bt._index.get(x, -1)

if mode == 'save':
    bt = BanTable(8, path)
    now = 5000
    bt.ban(A, now, MANUAL, None, True)
    assert not bt.add_points(B, BAD_SIGNATURE, now)
    assert bt.add_points(B, BAD_SIGNATURE, now)         # 100 points: 10 min ban
    bt.ban(C, now, BAD_TAG, 1000)                        # short ban that ends
    now += 60000
    assert not bt.is_banned(C, now)                      # now history, repeats 1
    bt.save(None, now)                                   # 9 min left for B
    assert not bt.dirty
    print('saved', len(bt))

elif mode == 'load':
    bt = BanTable(8, path)
    now = 123                                            # the clock restarted
    assert bt.load(None, now), bt.last_load
    assert bt.last_load == 'ok' and bt.load_errors == 0
    assert len(bt) == 3
    assert bt.state[slot(bt, A)] == PERMANENT and bt.is_banned(A, now + 10**9)
    s = slot(bt, B)
    assert bt.state[s] == ACTIVE and bt.remaining_ms(s, now) == 540000, bt.remaining_ms(s, now)
    assert bt.is_banned(B, now + 539999) and not bt.is_banned(B, now + 540000)
    s = slot(bt, C)
    assert bt.state[s] == HISTORY and bt.repeats[s] == 1 and not bt.is_banned(C, now)
    assert bt.reason[s] == BAD_TAG
    bt.ban(C, now, BAD_TAG)                              # 2nd ban: doubled
    assert bt.remaining_ms(slot(bt, C), now) == 1200000
    print('loaded', len(bt))

elif mode == 'corrupt':
    bt = BanTable(8, path)
    bt.ban(A, 0)
    assert not bt.load(None, 0)
    assert bt.last_load == sys.argv[3], bt.last_load
    assert bt.load_errors == (1 if sys.argv[3] == 'corrupt' else 0)
    assert len(bt) == 0 and not bt.is_banned(A, 0)
    first = bt.last_load
    bt.ban(B, 0)                                         # still usable afterwards
    bt.save(None, 0)
    assert bt.load(None, 0) and bt.is_banned(B, 0)
    print('tolerated', first)

elif mode == 'ratelimit':
    bt = BanTable(8, path)
    assert not bt.maybe_save(0)                          # nothing to save yet
    bt.ban(A, 0)
    assert bt.maybe_save(0) and bt.saves == 1
    bt.ban(B, 1000)
    assert not bt.maybe_save(1000) and bt.dirty          # within the minute: wait
    assert not bt.maybe_save(59999)
    assert bt.maybe_save(60000) and bt.saves == 2 and not bt.dirty
    assert not bt.maybe_save(200000)                     # clean: no write
    # A's 10 min ban ends: expiry counts as a change and is written
    assert bt.maybe_save(600001) and bt.saves == 3
    other = BanTable(8, path)
    assert other.load(None, 0)
    assert not other.is_banned(A, 0) and other.is_banned(B, 0)
    print('rate limited', bt.saves)

elif mode == 'save_error':
    bt = BanTable(8, path)
    bt.ban(A, 0)
    assert not bt.maybe_save(0)
    assert bt.save_errors == 1 and bt.dirty and bt.is_banned(A, 0)
    assert not bt.maybe_save(1000)                       # retried a minute later only
    assert bt.save_errors == 1
    print('save error counted')
"""


def run(runtime: str, script: Path, *args: str) -> str:
    if runtime == "upy":
        return run_upy(script=script, args=list(args), heap="256K").stdout
    env = dict(os.environ, PYTHONPATH=str(FIRMWARE))
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture
def script(tmp_path: Path) -> Path:
    p = tmp_path / "bans_script.py"
    p.write_text(SCRIPT)
    return p


@pytest.mark.parametrize(
    ("saver", "loader"), [("upy", "upy"), ("upy", "cpy"), ("cpy", "upy"), ("cpy", "cpy")]
)
def test_bans_survive_restart(tmp_path: Path, script: Path, saver: str, loader: str) -> None:
    path = tmp_path / "bans.bin"
    assert "saved 3" in run(saver, script, "save", str(path))
    assert path.exists() and not (tmp_path / "bans.bin.tmp").exists()
    assert len(path.read_bytes()) == 5 + 3 * 15 + 4
    assert "loaded 3" in run(loader, script, "load", str(path))


def test_leftover_temp_file_is_used(tmp_path: Path, script: Path) -> None:
    # power cut between removing the old file and the rename (FAT fallback)
    path = tmp_path / "bans.bin"
    run("upy", script, "save", str(path))
    path.rename(tmp_path / "bans.bin.tmp")
    assert "loaded 3" in run("upy", script, "load", str(path))


def _corruptions(good: bytes) -> dict[str, bytes]:
    flipped = bytearray(good)
    flipped[9] ^= 0x40
    wrong_count = bytearray(good)
    wrong_count[4] += 1
    bad_state = bytearray(good[:-4])
    bad_state[5 + 8] = 9
    import hashlib

    bad_state += hashlib.sha256(bad_state).digest()[:4]
    return {
        "empty": b"",
        "truncated": good[:-1],
        "extended": good + b"\x00",
        "flipped_bit": bytes(flipped),
        "wrong_count": bytes(wrong_count),
        "wrong_magic": b"XXXX" + good[4:],
        "garbage": os.urandom(64),
        "bad_state_with_valid_checksum": bytes(bad_state),
    }


@pytest.mark.parametrize("runtime", ["upy", "cpy"])
def test_corrupt_or_missing_file_starts_empty(tmp_path: Path, script: Path, runtime: str) -> None:
    good_path = tmp_path / "good.bin"
    run("cpy", script, "save", str(good_path))
    good = good_path.read_bytes()
    for name, data in _corruptions(good).items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(data)
        assert "tolerated corrupt" in run(runtime, script, "corrupt", str(path), "corrupt"), name
    missing = tmp_path / "missing.bin"
    assert "tolerated missing" in run(runtime, script, "corrupt", str(missing), "missing")


@pytest.mark.parametrize("runtime", ["upy", "cpy"])
def test_save_rate_limited(tmp_path: Path, script: Path, runtime: str) -> None:
    assert "rate limited 3" in run(runtime, script, "ratelimit", str(tmp_path / "b.bin"))


@pytest.mark.parametrize("runtime", ["upy", "cpy"])
def test_save_error_counted_not_raised(tmp_path: Path, script: Path, runtime: str) -> None:
    path = tmp_path / "no_such_dir" / "b.bin"
    assert "save error counted" in run(runtime, script, "save_error", str(path))
