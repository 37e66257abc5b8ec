"""Status dump: one JSON line, prefixed `STATUS `, describing a running node.

Fields (ids are lower-case hex):
  id, name, role, kind       who this is
  sim_s                      medium time now (simulation; node clock on a board), s
  up_s                       node clock since boot, s
  last_new_s                 medium time when the latest new peer was verified
  peers: [[id, kind, flags, score, hops (255 = unknown), next_hop or null,
           rssi or null, snr or null, rtt_ms or null, age_s, succ, fail, invalid], ...]
  known                      number of verified peers (have a signed record)
  bans: [[id, remaining_s (-1 permanent, 0 expired/history), repeats, reason], ...]
  airtime: {tx_ms, used_ms, budget_ms, bg_used_ms, bg_budget_ms, announce_interval_s}
  queue: {len, pushed, sent, dropped, expired}  (per-priority lists: control, blocks, gossip)
  heap: {free, alloc, min_free, gc_free, gc_alloc}  bytes (null on CPython); gc_* were
                             sampled right after gc.collect() by the last stdin `gc`
  tables: {name: [len, capacity], ...}          peers, bans, seen, key_cache, txqueue,
                             reassembly (live slots), flood (per-source buckets)
  counters: {...}                               receive/transmit/drop counters
  gateway                    preferred gateway id or null
"""

import gc
import json
from binascii import hexlify

PREFIX = "STATUS "


def _hex(b):
    return None if b is None else hexlify(b).decode()


def heap():
    """(free, alloc) bytes of the GC heap, or (None, None) on CPython."""
    try:
        return gc.mem_free(), gc.mem_alloc()
    except AttributeError:
        return None, None


def _size(obj, attr):
    x = getattr(obj, attr, None)
    return None if x is None else [len(x), x.capacity]


def tables(node):
    """[len, capacity] of each fixed table (null where this node lacks one)."""
    out = {
        "peers": _size(node, "peers"),
        "bans": _size(node, "bans"),
        "seen": _size(node, "seen"),
        "key_cache": _size(node, "link_keys"),
        "txqueue": _size(node, "txq"),
        "flood": _size(node, "flood"),
    }
    ra = getattr(node, "reasm", None)
    out["reassembly"] = None if ra is None else [ra.live_slots(), len(ra.slots)]
    return out


def build(node):
    """The status dict of `node` (a loranode.node.Node)."""
    mono = node.clock.now()
    t = node.ticks(mono)
    peers = []
    known = 0
    pt = node.peers
    for s in pt.slots():
        e = pt.entry(s, t)
        if node.rec_id[s] == e[0]:
            known += 1
        peers.append(
            [
                _hex(e[0]),
                e[1],
                e[2],
                e[3],
                e[8],
                _hex(e[9]),
                e[5],
                e[6],
                e[7],
                e[10] // 1000,
                e[11],
                e[12],
                e[13],
            ]
        )
    bans = []
    for nid, rem, rep, why in node.bans.dump(t):
        bans.append([_hex(nid), rem if rem <= 0 else (rem + 999) // 1000, rep, why])
    free, alloc = heap()
    gh = getattr(node, "gc_heap", None)
    q = node.txq
    a = node.airtime(mono)
    return {
        "id": _hex(node.id),
        "name": node.name,
        "role": node.role,
        "kind": node.kind,
        "sim_s": node.sim_s(mono),
        "up_s": round(mono / 1000, 3),
        "last_new_s": node.last_new_s,
        "known": known,
        "peers": peers,
        "bans": bans,
        "airtime": a,
        "queue": {
            "len": len(q),
            "pushed": q.pushed,
            "sent": q.sent,
            "dropped": q.dropped,
            "expired": q.expired,
        },
        "heap": {
            "free": free,
            "alloc": alloc,
            "min_free": node.min_free,
            "gc_free": None if gh is None else gh[0],
            "gc_alloc": None if gh is None else gh[1],
        },
        "tables": tables(node),
        "counters": node.c,
        "gateway": _hex(node.best_gateway()),
    }


def line(node):
    return PREFIX + json.dumps(build(node))


def emit(node, out=None):
    """Print the status line (flushing stdout where the runtime allows).

    Without `out` the JSON is streamed to stdout piece by piece: with full tables the
    line is ~4 KB, and a fragmented heap may have no 4 KB block left for one string."""
    if out is not None:
        out(line(node))
        return
    import sys

    d = build(node)
    sys.stdout.write(PREFIX)
    json.dump(d, sys.stdout)
    sys.stdout.write("\n")
    try:
        sys.stdout.flush()
    except AttributeError:
        pass
