"""A node's STATUS line with names: the host's view of loranode.status's compact layout.

A board prints short keys and plain lists (firmware/loranode/status.py documents the
layout); `expand` turns one into the dict the simulator, the demo and the tests read:

  id, name, role, kind, up_s, sim_s, last_new_s, known (peers with a verified record),
  peers: [[id, kind, flags, score, hops, next_hop, rssi, snr, rtt_ms, age_s, succ, fail,
           invalid], ...], bans: [[id, remaining_s, repeats, reason name], ...],
  airtime: {tx_ms, used_ms, budget_ms, bg_used_ms, bg_budget_ms, announce_interval_s},
  queue: {len, pushed, sent, dropped, expired}, heap: {free, alloc, min_free, gc_free,
  gc_alloc}, tables: {name: [len, capacity]}, counters: {name: n}, gateway.

Counter names come from loranode.counters (its constants, lower-cased, in index order),
ban reasons (lorawire.auth's misbehaviour codes) from lorawire.names, the names the
gateway uses too.
"""

from __future__ import annotations

import json
from typing import Any

from loranode import counters
from lorawire import names

PREFIX = "STATUS "
VERIFIED = 0x10  # loranode.peers.VERIFIED
TABLES = ("peers", "bans", "seen", "key_cache", "txqueue", "flood", "reassembly")
AIRTIME = ("tx_ms", "used_ms", "budget_ms", "bg_used_ms", "bg_budget_ms", "announce_interval_s")
QUEUE = ("len", "pushed", "sent", "dropped", "expired")
HEAP = ("free", "alloc", "min_free", "gc_free", "gc_alloc")


def counter_names() -> list[str]:
    """loranode.counters' names in index order, lower-cased."""
    found = [
        (value, name.lower())
        for name, value in vars(counters).items()
        if name.isupper() and name != "COUNT" and isinstance(value, int)
    ]
    found.sort()
    names = [n for _, n in found]
    if [v for v, _ in found] != list(range(counters.COUNT)):
        raise RuntimeError("loranode.counters: indices are not 0..COUNT-1")
    return names


COUNTERS = counter_names()


def reason_name(code: int) -> str:
    return names.misbehaviour(code)


def expand(compact: dict[str, Any]) -> dict[str, Any]:
    """The named view of a compact status dict (see the module docstring)."""
    up_s, sim_s, last_new_s = compact["t"]
    peers = compact["p"]
    return {
        "id": compact["id"],
        "name": compact["name"],
        "role": compact["role"],
        "kind": compact["kind"],
        "up_s": up_s,
        "sim_s": sim_s,
        "last_new_s": last_new_s,
        "known": sum(1 for p in peers if p[2] & VERIFIED),
        "peers": peers,
        "bans": [[b[0], b[1], b[2], reason_name(b[3])] for b in compact["b"]],
        "airtime": dict(zip(AIRTIME, compact["a"], strict=True)),
        "queue": dict(zip(QUEUE, compact["q"], strict=True)),
        "heap": dict(zip(HEAP, compact["h"], strict=True)),
        "tables": dict(zip(TABLES, compact["n"], strict=True)),
        "counters": dict(zip(COUNTERS, compact["c"], strict=True)),
        "gateway": compact["g"],
    }


def parse(line: str) -> dict[str, Any] | None:
    """The named status in a `STATUS {...}` line, or None for any other line."""
    if not line.startswith(PREFIX):
        return None
    return expand(json.loads(line[len(PREFIX) :]))
