"""The node's counters: one index each into `Node.c`, a preallocated list of COUNT ints.

The STATUS line carries the list in this order; the host names the entries from this
module (tools.meshsim.status reads it on CPython), so a board keeps no counter names.
Append new counters at the end and raise COUNT: the order is the status format.
"""

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int


RX = const(0)  # frames handed to the receive path
BAD_FRAME = const(1)  # header unreadable
DROPPED_BANNED = const(2)  # source (or record owner) banned
OWN = const(3)  # our own id as source
NOT_FOR_ME = const(4)  # link-tagged unicast for someone else
ACCEPTED = const(5)  # tag and replay window passed
ATTRIBUTED = const(6)  # ... under a link tag (the source is proven)
DROP_ATTRIBUTED = const(7)  # refused, and the source proven to be at fault
SIG_CHECKS = const(8)  # Ed25519 verifications spent
DUP_RECORD = const(9)  # record identical to the one held
STALE_RECORD = const(10)  # record older than the one held
BAD_RECORD = const(11)  # record malformed or badly signed
NEW_PEERS = const(12)  # peers whose first record we verified
ANNOUNCE_RX = const(13)
ANNOUNCE_TX = const(14)
RELAYED = const(15)  # frames queued for relaying
PEX_REQ_TX = const(16)
PEX_REQ_RX = const(17)
PEX_RESP_TX = const(18)
PEX_RESP_RX = const(19)
PEX_LIMITED = const(20)  # PEX request refused: asked again too soon
PEX_UNKNOWN = const(21)  # PEX request from a node whose record we lack
PING_TX = const(22)
PONG_RX = const(23)
ACK_RX = const(24)
TIMEOUTS = const(25)  # pings and unicasts left unanswered
APP_RX = const(26)
APP_TX = const(27)
UPSTREAM_TX = const(28)
UPSTREAM_NO_GATEWAY = const(29)
TX = const(30)  # frames sent
TX_NEVER = const(31)  # frames dropped: they can never fit the dwell or duty limit
TX_ERRORS = const(32)
POINTS = const(33)  # misbehaviour charges
BANS = const(34)
INVALID_REPORTED = const(35)  # port.report_invalid calls
DROPPED_FLOOD = const(36)  # authenticated frames over their source's flood limit
FLOOD_POINTS = const(37)  # ... of which link-tagged, so charged
FLOOD_EVICTED = const(38)  # flood buckets reused for another source
FRAG_RX = const(39)
FRAG_DONE = const(40)
FRAG_REJECTED = const(41)
FRAG_POINTS = const(42)
RX_ERRORS = const(43)  # exceptions caught on the receive path (bugs)
APP_ERRORS = const(44)  # exceptions raised by the application
DROP_BAD_TAG = const(45)  # unattributed drops by reason, from here on
DROP_NO_KEY = const(46)
DROP_REPLAY = const(47)
DROP_UNKNOWN_TYPE = const(48)
DROP_MALFORMED = const(49)
DROP_OWN_FRAME = const(50)
DROP_BAD_FRAME = const(51)
DROP_RECORD = const(52)  # a record refused inside an accepted frame
COUNT = const(53)
