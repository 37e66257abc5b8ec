"""Fixed capacities and limits of the firmware's preallocated tables.

Every table takes its capacity as a constructor argument that defaults to one of
these, so a board config can shrink them; nothing in the firmware grows past them.
"""

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int


PEERS = const(32)  # peer table entries
BANS = const(16)  # ban table entries (active bans plus expired ones kept for their repeat count)
POINTS = const(16)  # misbehaviour points being accumulated for not-yet-banned sources
SEEN = const(64)  # duplicate-suppression ring: about twice the peer table (DESIGN.md)
REASSEMBLY = const(4)  # fragment reassembly slots
KEY_CACHE = const(16)  # pairwise link keys
TXQUEUE = const(16)  # outbound frames waiting for airtime

ID_LEN = const(8)  # node id = sha256(public key)[:8]
KEY_LEN = const(32)  # Ed25519 public key / link key

MIN_EVICTABLE = const(2)  # peer slots that stay evictable however many entries are protected
RECENT_MS = const(3600000)  # a direct neighbour heard within this window is protected
PROBATION_GAP_MS = const(1000)  # a second hearing this long after the first ends probation
MAX_AGE_MS = const(86400000)  # timestamps older than this are clamped (ticks wrap-around safety)

BAN_THRESHOLD = const(100)  # misbehaviour points that trigger a ban
BAN_BASE_MS = const(600000)  # first ban lasts 10 min, doubling on each repeat
BAN_PERMANENT_AFTER = const(5)  # the 5th ban of the same id is permanent
BAN_MAX_MS = const(259200000)  # 3 days: finite bans stay well inside the ticks_diff range
POINTS_DECAY_MS = const(60000)  # one misbehaviour point forgiven per minute without new ones
SAVE_INTERVAL_MS = const(60000)  # ban file written at most once a minute (flash wear)

# Collect after this many bytes allocated instead of only when the heap is exhausted:
# long-lived entries (peer ids, records) then land in the holes of the last collection
# rather than among fresh garbage, which fragmented the heap. With every table full the
# frozen 32-bit build needed 67 KB without it, 59 KB with it (4 or 8 KB alike, 58 KB at
# 2 KB). Not inside signature checks and key derivations (loranode.receive
# _crypto_begin): their garbage would make it collect over a hundred times per call.
GC_THRESHOLD = const(8192)


def new_index(n):
    """An empty dict whose hash table already has room for n keys.

    MicroPython only rehashes a dict when no free or deleted slot is left, so a dict
    that once held n keys never reallocates while it holds at most n: tables use one as
    their id -> slot index (about 10x faster than a list scan on the unix port).
    """
    d = {}
    for i in range(n):
        d[i] = i
    for i in range(n):
        del d[i]
    return d
