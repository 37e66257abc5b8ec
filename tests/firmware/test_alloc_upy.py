"""Heap allocated per frame, per timer tick and per transmit, after weeks of node clock.

The node runs on the board-shaped 32-bit builds, where an int of 2**30 or more is a
heap-allocated long int: any time value or counter that grows with uptime would show
up here as bytes allocated on a path that runs per frame or per timer. The clock is
fast-forwarded (UPY_FAST_FORWARD) to an uptime of 10 s, 5 s before the first wrap of
ticks_ms, exactly one wrap (2**30 ms) and 60 days, and at each the script counts the
bytes allocated (gc.disable(), gc.mem_alloc() before and after) by:

  * an idle timer tick, reading the node clock, and a transmit (next_frame + charge):
    nothing at all may be allocated;
  * receiving frames (a replay, a banned source, a held announce, a PING answered with
    a PONG, a broadcast relayed): these allocate by design (hashlib's SHA-256 objects
    and digests for the tag, the decoded header and body, the queued answer), so the
    figure is printed and must be the same at every uptime: nothing in it may depend on
    how long the node has run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from nodekit import UPY_FAST_FORWARD, upy_prelude

from upy import run_upy

# where each round of measurements starts (a round moves the clock about 150 s: the one
# at "wrap-60s" runs across the first wrap of ticks_ms)
UPTIMES = {
    "10s": 10_000,
    "wrap-60s": (1 << 30) - 60_000,
    "2 wraps": 2 << 30,
    "60d": 60 * 86_400_000,
}
ZERO = ("tick", "clock", "transmit")
RECEIVE = ("rx replay", "rx banned", "rx held announce", "rx ping", "rx relay")

SCRIPT = """
UPTIMES = %r
UPTIMES_ORDER = %r

def fast_forward(target):
    # hour steps: every timer runs, the peer's hourly announce keeps it a neighbour
    while elapsed[0] < target:
        advance(min(3600000, target - elapsed[0]))
        node.tick(node.clock.now())
        node.handle_frame(frame_from(peer, msg.ANNOUNCE, REC), -80, 8)
        drain()

def alloc(fn):
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    fn()
    b = gc.mem_alloc()
    gc.enable()
    return b - a

def idle_tick():
    # a tick that fires no timer: nothing queued, no counter moved
    for _ in range(20):
        advance(50)
        before = (sum(node.c), len(node.txq))
        n = alloc(lambda: node.tick(node.clock.now()))
        if (sum(node.c), len(node.txq)) == before:
            return n
    raise AssertionError("no idle tick in 20")

def transmit():
    node.announce(node.clock.now())
    d = [None]
    def send():
        d[0] = node.next_frame()
        node.charge(d[0], node.clock.now())
    n = alloc(send)
    assert d[0] is not None
    return n

def rx(make, times=3):
    # the last of `times` fresh frames made by make() (the first ones warm up), 10 s
    # apart: the source's flood bucket refills, every frame takes the same path
    for _ in range(times):
        advance(10000)
        data = make()
        n = alloc(lambda: node.handle_frame(data, -80, 8))
        drain()
    return n

def replayed():
    data = frame_from(peer, msg.PING, msg.encode_ping(7), node.id)
    node.handle_frame(data, -80, 8)
    drain()
    return data

node.bans.ban(stranger.id, node.clock.now(), 6)  # manual: the ban never lapses here
for name in UPTIMES_ORDER:
    fast_forward(UPTIMES[name])
    start = node.clock.now()
    node.bans.ban(stranger.id, node.clock.now(), 6)
    fig = {
        "tick": idle_tick(),
        "clock": alloc(lambda: node.clock.now()),
        "transmit": transmit(),
        "rx replay": rx(replayed),
        "rx banned": rx(lambda: frame_from(stranger, msg.PING, msg.encode_ping(7), node.id)),
        "rx held announce": rx(lambda: frame_from(peer, msg.ANNOUNCE, REC)),
        "rx ping": rx(lambda: frame_from(peer, msg.PING, msg.encode_ping(7), node.id)),
        "rx relay": rx(lambda: frame_from(peer, msg.TX, msg.encode_tx(b"t" * 100), None, 3)),
    }
    for k in fig:
        print("ALLOC %%s|%%s|%%d" %% (name, k, fig[k]))
    print("CLOCK %%s|%%d|%%d" %% (name, start, node.clock.now()))
print("COUNTERS", node.c[C.RELAYED], node.c[C.DROPPED_BANNED], node.c[C.DROP_REPLAY])
"""


@pytest.mark.upy("plain", "frozen")
@pytest.mark.slow
def test_no_allocation_grows_with_uptime(tmp_path: Path, upy_interpreter: Any) -> None:
    opts = {"stdin": False, "status_interval_s": 0, "pex_interval_s": 60, "ping_interval_s": 120}
    code = upy_prelude(str(tmp_path), opts) + UPY_FAST_FORWARD + SCRIPT % (UPTIMES, tuple(UPTIMES))
    out = run_upy(code, heap="512K", timeout=300).stdout
    figures: dict[str, dict[str, int]] = {}
    for m in re.finditer(r"^ALLOC ([^|]+)\|([^|]+)\|(\d+)$", out, re.M):
        figures.setdefault(m[2], {})[m[1]] = int(m[3])
    clocks = {
        m[1]: (int(m[2]), int(m[3]))
        for m in re.finditer(r"^CLOCK ([^|]+)\|(\d+)\|(\d+)$", out, re.M)
    }
    print(f"{upy_interpreter.name}: bytes allocated per action; node clock per round {clocks}")
    for action, by_uptime in figures.items():
        print(f"  {action:18} {by_uptime}")
    assert set(figures) == set(ZERO + RECEIVE), out
    start, end = clocks["wrap-60s"]
    assert end < start, clocks  # that round ran across the wrap
    for action in ZERO:
        assert set(figures[action].values()) == {0}, (action, figures[action])
    for action in RECEIVE:
        assert len(set(figures[action].values())) == 1, (action, figures[action])
    relayed, banned, replays = (int(x) for x in out.split("COUNTERS ")[1].split())
    assert relayed >= 4 * 3 and banned >= 4 * 3 and replays >= 4 * 3, out
