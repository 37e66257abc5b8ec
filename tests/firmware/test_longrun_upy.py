"""Sixty days of node clock on the 32-bit board-shaped builds: four wraps of ticks_ms.

One node is fast-forwarded (UPY_FAST_FORWARD: its ticks_ms is a counter the script
moves, wrapping at 2**30 like a board's) in steps of STEP_MS through 60 days, almost
five wraps, with a timer tick per step. Two neighbours announce every five minutes; one
of them goes silent on day 10. Strangers are banned at chosen moments (one right before
the first wrap, a repeat offender whose ban doubles, one for the three-day maximum that
runs across the third wrap, one banned five times: permanent). Checked:

  * every ban lifts on time (within one step of ban start + its duration), also across
    a wrap; the repeat offender's second ban lasts twice the first; the permanent one
    never lifts, through every wrap;
  * the silent neighbour ages out: it stops counting as a neighbour RECENT_MS after it
    went quiet and never looks recent again, not even a whole ticks period later;
  * announce, PEX and ping intervals stay within their bounds the whole time;
  * the heap after gc.collect() is flat from day 2 to day 60;
  * nothing raises (an OverflowError or any other error fails the run).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from nodekit import UPY_FAST_FORWARD, upy_prelude

from upy import run_upy

DAYS = 60
STEP_MS = 15_000
# heap after gc.collect() may move by a few 16-byte blocks (dict resizes that settle)
HEAP_SLACK = 256

SCRIPT = """
from loranode import bans as bn
from loranode import status
from loranode.constants import BAN_BASE_MS, BAN_MAX_MS, RECENT_MS
from loranode.pex import PEX_IDLE_MAX
# the script keeps uptime in seconds (`ts`): in ms it would pass 2**30 and its own
# bookkeeping would then hold long ints, which the heap check would count
DAY = 86400
STEP = %d // 1000
PERIOD = (1 << 30) // 1000  # seconds, rounded down: a moment just before each wrap
leaver = Identity(bytes(range(3, 35)))
LREC = record.encode_record({"seq": 1, "kind": 3, "services": 0, "mesh": (0, 7)}, leaver)
strangers = [Identity(bytes(range(k, k + 32))) for k in (10, 11, 12, 13)]

# bans: (stranger, uptime (s) to ban at, bans at once, duration (ms) given or None,
# expected ms or -1 for never)
EPISODES = (
    (0, DAY, 1, None, BAN_BASE_MS),
    (1, PERIOD - 300, 1, None, BAN_BASE_MS),  # lifts after the first wrap
    (0, 2 * DAY, 1, None, 2 * BAN_BASE_MS),  # a repeat: the ban doubles
    (2, 3 * PERIOD - DAY, 1, BAN_MAX_MS, BAN_MAX_MS),  # the cap, across the third wrap
    (3, 5 * DAY, 5, None, -1),  # the fifth ban of one id is permanent: never lifts
)
lifted = [-1] * len(EPISODES)
started = [-1] * len(EPISODES)

# transmissions by type: count, last uptime (s), min and max interval (ms, after day 1)
TYPES = (msg.ANNOUNCE, msg.PEX_REQUEST, msg.PING)
count = [0, 0, 0]
last = [-1, -1, -1]
lo = [1 << 28, 1 << 28, 1 << 28]
hi = [0, 0, 0]
heap = [0] * (%d + 1)
leaver_recent_until = [-1]

def send_all():
    while True:
        d = node.next_frame()
        if d is None:
            return
        node.charge(d, node.clock.now())
        if d[1] in TYPES:
            i = TYPES.index(d[1])
            t = ts
            if last[i] >= 0 and t > DAY:
                iv = (t - last[i]) * 1000
                if iv < lo[i]:
                    lo[i] = iv
                if iv > hi[i]:
                    hi[i] = iv
            last[i] = t
            count[i] += 1

def is_neighbour(who):
    s = node.peers.find(who.id)
    return s >= 0 and s in node.neighbours(node.clock.now())

lines = []
day = 0
ts = 0
next_announce = 0
while day < %d:
    advance(STEP * 1000)
    ts += STEP
    t = ts
    now = node.clock.now()
    if t >= next_announce:
        next_announce = t + 300
        node.handle_frame(frame_from(peer, msg.ANNOUNCE, REC), -80, 8)
        if t < 10 * DAY:
            node.handle_frame(frame_from(leaver, msg.ANNOUNCE, LREC), -85, 6)
    for e in range(len(EPISODES)):
        who, at, times, duration, _ = EPISODES[e]
        sid = strangers[who].id
        if started[e] < 0 and t >= at:
            for _ in range(times):
                node.bans.ban(sid, now, auth.BAD_SIGNATURE, duration)
            started[e] = t
        elif started[e] >= 0 and lifted[e] < 0 and not node.bans.is_banned(sid, now):
            lifted[e] = t
    node.tick(now)
    send_all()
    if is_neighbour(leaver):
        leaver_recent_until[0] = t
    if t >= (day + 1) * DAY:
        day += 1
        status.emit(node, lines.append)  # the status line over weeks: must not raise
        del lines[:]
        gc.collect()
        heap[day] = gc.mem_alloc()

print("EPISODES", [(started[e], lifted[e], EPISODES[e][4]) for e in range(len(EPISODES))])
print("SECONDS", ts)
print("INTERVALS", [count, lo, hi])
print("BOUNDS", [node.announcer.min_ms, node.announcer.max_ms, node.pex_ms, PEX_IDLE_MAX,
      node.ping_ms, RECENT_MS])
print("LEAVER", [leaver_recent_until[0], 10 * DAY, node.peers.find(leaver.id) >= 0])
print("HEAP", heap[1:])
print("CLOCK", [elapsed[0], node.clock.now()])
"""


def _line(out: str, key: str) -> Any:
    m = re.search(rf"^{key} (.*)$", out, re.M)
    assert m, out[-3000:]
    return eval(m[1], {})  # noqa: S307 - the script's own printed literals


@pytest.mark.upy("plain", "frozen")
@pytest.mark.slow
def test_sixty_days_across_four_wraps(tmp_path: Path, upy_interpreter: Any) -> None:
    opts = {"stdin": False, "status_interval_s": 0, "pex_interval_s": 60, "ping_interval_s": 120}
    code = upy_prelude(str(tmp_path), opts) + UPY_FAST_FORWARD + SCRIPT % (STEP_MS, DAYS, DAYS)
    out = run_upy(code, heap="512K", timeout=900).stdout
    uptime, clock = _line(out, "CLOCK")
    assert _line(out, "SECONDS") * 1000 == uptime
    assert uptime >= 4 * (1 << 30) and uptime >= DAYS * 86_400_000
    assert clock == uptime % (1 << 30)

    for started, lifted, expected in _line(out, "EPISODES"):
        assert started >= 0, started
        if expected < 0:
            assert lifted == -1, (started, lifted)
        else:
            assert abs((lifted - started) * 1000 - expected) <= STEP_MS, (started, lifted, expected)

    count, lo, hi = _line(out, "INTERVALS")
    a_min, a_max, pex_ms, idle_max, ping_ms, recent_ms = _line(out, "BOUNDS")
    assert all(n > 100 for n in count), count
    assert a_min - STEP_MS <= lo[0] and hi[0] <= a_max + STEP_MS, (lo[0], hi[0])
    pex_cap = min(pex_ms * idle_max, a_max)  # idle rounds back off to this, jittered
    assert pex_cap * 3 // 4 - STEP_MS <= lo[1] and hi[1] <= pex_cap * 5 // 4 + STEP_MS
    assert ping_ms * 3 // 4 - STEP_MS <= lo[2] and hi[2] <= ping_ms * 5 // 4 + STEP_MS

    recent_until, went_quiet, still_held = (  # uptimes in s
        _line(out, "LEAVER")
    )
    assert went_quiet <= recent_until <= went_quiet + (recent_ms + 300_000 + STEP_MS) // 1000
    assert still_held  # kept (evictable), not forgotten: the table is not full

    heap = _line(out, "HEAP")
    settled = heap[1:]
    print(
        f"{upy_interpreter.name}: {uptime / 86_400_000:.0f} days, "
        f"{uptime / (1 << 30):.2f} wraps; transmissions {count}; "
        f"heap after gc.collect() day 2..{DAYS}: {min(settled)}..{max(settled)} B"
    )
    assert max(settled) - min(settled) <= HEAP_SLACK, heap
