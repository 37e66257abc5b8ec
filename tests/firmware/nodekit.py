"""Shared pieces of the in-process node tests in tests/firmware: the config a test Node
runs with (what the deploy tool would write to a board: validated by
tools/deploy/fwconfig.py and completed by `board_config`), its network key, a radio that
is never used, a clock the test moves, and the same set-up as MicroPython code for the
unix-port runs of those tests."""

from __future__ import annotations

from typing import Any

from tools.deploy import fwconfig

RAW: dict[str, Any] = {
    "board": "heltec-v3",
    "region": "EU868",
    "frequency_hz": 868_100_000,
    "sf": 7,
    "bandwidth_hz": 125000,
    "coding_rate": 5,
    "network_key": "11" * 32,
    "capacities": {"peers": 8, "bans": 4, "seen": 16, "key_cache": 4, "txqueue": 8},
    "announce_interval_min_s": 30,
    "announce_interval_max_s": 600,
}


def config(opts: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A board config: RAW with `top` keys replaced and `opts` as its "node" section."""
    raw = dict(RAW, **top)
    raw["node"] = dict(opts or {})
    return fwconfig.board_config(fwconfig.validate(raw))


CFG = config()
KEY = bytes.fromhex(CFG["network_key"])


def with_opts(cfg: dict[str, Any], opts: dict[str, Any] | None) -> dict[str, Any]:
    """`cfg` with its "node" section completed from `opts` (the schema's defaults)."""
    out = dict(cfg)
    out["node"] = fwconfig.node_options(opts)
    return out


class NoRadio:
    """The radio of an in-process node: the tests feed `handle_frame` and pop the queue."""

    speed = 1.0
    name = "t"


class TestClock:
    """A node clock the test sets (node ticks, see loranode.clock)."""

    def __init__(self, t: int = 0) -> None:
        self.t = t
        self.milli = 1000

    def now(self) -> int:
        return self.t

    def advance(self, ms: int) -> int:
        self.t = (self.t + ms) & 0x3FFFFFFF
        return self.t

    def wall_ms(self, ms: int) -> int:
        return ms


def upy_prelude(state_dir: str, opts: dict[str, Any] | None = None) -> str:
    """MicroPython code defining what the unix-port cases use: Node, Identity, auth,
    record, fr, msg, packb/unpackb, C (loranode.counters), a radio class R, cfg (CFG
    with a "node" section of `opts` and state_dir), opts and key."""
    o = dict(opts or {"stdin": False}, state_dir=state_dir)
    cfg = with_opts(CFG, o)
    return f"""
from loranode import counters as C
from loranode.node import Node
from lorawire.identity import Identity
from lorawire import auth, record, frame as fr, messages as msg
from lorawire.codec import packb, unpackb
class R:
    speed = 1.0
    name = "u"
cfg = {cfg!r}
opts = cfg["node"]
key = bytes.fromhex(cfg["network_key"])
"""


def counts(node: Any) -> dict[str, int]:
    """The node's counters by name (loranode.counters order, as the host reads a STATUS)."""
    from tools.meshsim.status import COUNTERS

    return dict(zip(COUNTERS, node.c, strict=True))


def status_of(node: Any) -> dict[str, Any]:
    """The node's STATUS line as the host reads it (tools.meshsim.status names)."""
    from loranode import status
    from tools.meshsim.status import parse

    lines: list[str] = []
    status.emit(node, lines.append)
    out = parse(lines[0])
    assert out is not None
    return out


# MicroPython code (after upy_prelude) for runs that fast-forward a node through weeks:
# the board's ticks_ms is replaced by a counter the script moves (wrapping at 2**30 as
# ticks_ms does), so NodeClock itself runs over the wraps; `peer` and `stranger` are
# fixed identities whose frames the script builds (`frame_from`), `REC` is the peer's
# signed record, `node` a started Node on that clock, `drain()` sends what it queued;
# `advance(ms)` moves the clock and `elapsed[0]` is the uptime so far.
UPY_FAST_FORWARD = """
import gc
from loranode import clock as ck
TICKS = [0]
elapsed = [0]  # ms the script has moved the clock in all (the node's uptime)
def _fake_ticks():
    return TICKS[0]
ck.ticks_ms = _fake_ticks
def advance(ms):
    TICKS[0] = (TICKS[0] + ms) & 0x3FFFFFFF
    elapsed[0] += ms
peer = Identity(bytes(range(1, 33)))
stranger = Identity(bytes(range(2, 34)))
REC = record.encode_record({"seq": 1, "kind": 3, "services": 0, "mesh": (0, 7)}, peer)
_fseq = [100]
def frame_from(who, mt, body, dest=None, hop_limit=0):
    _fseq[0] = (_fseq[0] + 1) & 0xFFFF
    f = fr.Frame(mt, who.id, _fseq[0], dest, hop_limit=hop_limit)
    return auth.seal_frame(f, body, key)
node = Node(cfg, Identity(bytes(range(32))), R(), clock=ck.NodeClock(1, 0))
node.start()
def drain():
    while True:
        d = node.next_frame()
        if d is None:
            return
        node.charge(d, node.clock.now())
"""


class UartCapture:
    """A UART port that keeps what a Bridge writes to it (the gateway's end of the cable),
    for driving a Bridge on CPython through its public `feed` and `flush`."""

    is_open = True

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, buf: Any) -> int:
        self.data += bytes(buf)
        return len(buf)

    def packets(self) -> list[tuple[int, dict[str, Any]]]:
        """The link messages written so far, decoded."""
        from lorawire import link, uart

        return [link.decode(p) for p in uart.StreamDecoder().feed(bytes(self.data))]
