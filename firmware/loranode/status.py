"""The status line: `STATUS {json}`, compact; the host gives it names (tools.meshsim.status).

A board keeps no field or counter names for its status: the line is a JSON object of
short keys and plain lists, streamed piece by piece (a fragmented heap may have no
block for one 4 KB string):

  v   2 (this layout)          id, name, role, kind   who this is
  t   [up_s, sim_s, last_new_s] node clock since boot; medium time now (simulation; node
                               clock on a board); medium time of the latest new peer or null
  p   [[id, kind, flags, score, hops (255 unknown), next_hop|null, rssi|null, snr|null,
        rtt_ms|null, age_s, succ, fail, invalid], ...]   one per peer-table slot
  b   [[id, remaining_s (-1 permanent, 0 history), repeats, reason code], ...]
  a   [tx_ms, used_ms, budget_ms, bg_used_ms, bg_budget_ms, announce_interval_s]
  q   [len, pushed[3], sent[3], dropped[3], expired[3]]  per priority: control, blocks, gossip
  h   [free, alloc, min_free, gc_free, gc_alloc]  heap bytes (null on CPython); gc_* were
      sampled right after gc.collect() by the last stdin `gc`
  n   [[len, capacity] x 7]    peers, bans, seen, key_cache, txqueue, flood, reassembly
  c   [counter, ...]           in loranode.counters order
  g   preferred gateway id or null
Ids are lower-case hex.
"""

import gc
import json
import sys
from binascii import hexlify

from loranode.clock import diff

PREFIX = "STATUS "


def _hex(b):
    return None if b is None else hexlify(b).decode()


def _size(x):
    return [len(x), x.capacity]


def _put(key, value, first=False):
    w = sys.stdout.write
    if not first:
        w(",")
    w('"' + key + '":')
    json.dump(value, sys.stdout)


def emit(node, out=None):
    """Print the status line; with `out`, hand it to out(line) as one string instead."""
    now = node.clock.now()
    up = node.up_seconds(now)
    new = node.last_new
    new_s = None if new is None else round(node.t0_sim + up - diff(now, new) / 1000, 3)
    gh = node.gc_heap or (None, None)
    try:
        heap = [gc.mem_free(), gc.mem_alloc(), node.min_free, gh[0], gh[1]]
    except AttributeError:  # CPython
        heap = [None, None, node.min_free, gh[0], gh[1]]
    pt = node.peers
    d = node.duty
    q = node.txq
    ra = node.reasm
    parts = (
        ("v", 2),
        ("id", _hex(node.id)),
        ("name", node.name),
        ("role", node.role),
        ("kind", node.kind),
        ("t", [round(up, 3), round(node.t0_sim + up, 3), new_s]),
        ("a", [
            node.tx_airtime_ms,
            d.used_ms(now),
            d.budget_ms(),
            d.used_ms(now, True),
            d.budget_ms(True),
            node.announcer.last_interval // 1000,
        ]),
        ("q", [len(q), q.pushed, q.sent, q.dropped, q.expired]),
        ("h", heap),
        ("n", [
            _size(pt),
            _size(node.bans),
            _size(node.seen),
            _size(node.link_keys),
            _size(q),
            _size(node.flood),
            [ra.live_slots(), len(ra.slots)],
        ]),
        ("c", node.c),
        ("g", _hex(node.best_gateway())),
    )
    if out is not None:
        line = {}
        for k, v in parts:
            line[k] = v
        line["p"] = [_peer(pt, s, now) for s in pt.slots()]
        line["b"] = _bans(node, now)
        out(PREFIX + json.dumps(line))
        return
    w = sys.stdout.write
    w(PREFIX + "{")
    first = True
    for k, v in parts:
        _put(k, v, first)
        first = False
    w(',"p":[')
    sep = ""
    for s in pt.slots():
        w(sep)
        json.dump(_peer(pt, s, now), sys.stdout)
        sep = ","
    w("]")
    _put("b", _bans(node, now))
    w("}\n")
    try:
        sys.stdout.flush()
    except AttributeError:
        pass


def _peer(pt, s, now):
    e = pt.entry(s, now)
    return [
        _hex(e[0]), e[1], e[2], e[3], e[8], _hex(e[9]),
        e[5], e[6], e[7], e[10] // 1000, e[11], e[12], e[13],
    ]  # fmt: skip


def _bans(node, now):
    out = []
    for nid, rem, rep, why in node.bans.dump(now):
        out.append([_hex(nid), rem if rem <= 0 else (rem + 999) // 1000, rep, why])
    return out
