"""`loragate peers` fits 100 columns for any peers a gateway can have (issue 13), with
relative or ISO times, and cuts only the address column (never the node id, the state,
the points or the time); `--wide` shows every value whole."""

from __future__ import annotations

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from loragate.cli import PEERS_DROP_ORDER, PEERS_WIDTH, peers_table
from loragate.view import PeerInfo

NOW = time.time()
HEX = "0123456789abcdef"
ISO_END = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$"

ipv4 = st.tuples(*[st.integers(0, 255)] * 4, st.integers(1, 65535)).map(
    lambda t: ".".join(str(x) for x in t[:4]) + f":{t[4]}"
)
ipv6 = st.tuples(
    st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8), st.integers(1, 65535)
).map(lambda t: "[" + ":".join(f"{g:x}" for g in t[0]) + f"]:{t[1]}")


@st.composite
def peer(draw: st.DrawFn) -> PeerInfo:
    direction = draw(st.sampled_from(["in", "out", "mesh", None]))
    mesh = direction == "mesh"
    threshold = draw(st.integers(1, 10_000))
    p = PeerInfo(
        node_id=draw(st.text(HEX, min_size=16, max_size=16)),
        address=None if mesh else draw(ipv4 | ipv6),
        kind="mesh" if mesh else draw(st.sampled_from(["full", "light", "gateway"])),
        state=draw(st.sampled_from(["heard"] if mesh else ["connected", "tried", "new"])),
        direction=direction,
        score=draw(st.none() | st.floats(0, 100)),
        latency_ms=None if mesh else draw(st.none() | st.floats(0, 600_000)),
        rssi=draw(st.none() | st.floats(-150, 10)) if mesh else None,
        snr=draw(st.none() | st.floats(-32, 32)) if mesh else None,
        hops=draw(st.integers(0, 15)) if mesh else None,
        connected_since=None,
        last_seen=draw(st.none() | st.floats(NOW - 3 * 365 * 86400, NOW + 5)),
        bytes_in=0,
        bytes_out=0,
        group=None,
        points=draw(st.floats(0, threshold)),
        ban_threshold=threshold,
    )
    if direction in ("in", "out") and draw(st.booleans()):
        p["manual"] = True
    return p


@settings(max_examples=300, deadline=None)
@given(peers=st.lists(peer(), min_size=1, max_size=12), iso=st.booleans())
def test_peers_fits_100_columns_and_cuts_only_the_address(peers: list[PeerInfo], iso: bool) -> None:
    table, left_out = peers_table(peers, iso=iso, now=NOW)
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= PEERS_WIDTH, table
    assert set(left_out) <= set(PEERS_DROP_ORDER)
    with_dir = any(p.get("direction") for p in peers)
    order = [h for h in PEERS_DROP_ORDER if with_dir or h != "STATE"]
    assert left_out == order[: len(left_out)]  # the least needed first
    header = lines[0]
    assert all(f"  {h}  " not in header for h in left_out)
    assert ("LAST SEEN" in header) == any(p.get("last_seen") for p in peers)
    for line, p in zip(lines[1:], peers, strict=True):
        assert line.startswith(p["node_id"] + "  ")
        assert line.count("…") <= 1, line
        if "…" in line:  # only the address was cut
            assert p.get("address") and p["address"] not in line, line
        else:
            assert (p.get("address") or "") in line
        if p.get("manual"):
            assert " manual " in line
        if p.get("last_seen"):
            whole = ISO_END if iso else r"( ago|now|in \d+\w( \d+\w)?)$"
            assert re.search(whole, line), line
    wide, none_left_out = peers_table(peers, wide=True, iso=iso, now=NOW)
    assert "…" not in wide and none_left_out == []
    for p in peers:
        assert (p.get("address") or p["node_id"]) in wide


def test_a_small_table_leaves_nothing_out() -> None:
    mesh = PeerInfo(
        node_id="0a" * 8, address=None, kind="mesh", state="heard", direction="mesh",
        score=61.5, latency_ms=None, rssi=-97.0, snr=6.5, hops=0, connected_since=None,
        last_seen=NOW - 12, bytes_in=0, bytes_out=0, group=None, points=20.4, ban_threshold=100,
    )  # fmt: skip
    manual = PeerInfo(
        node_id="0b" * 8, address="192.0.2.7:8333", kind="full", state="connected",
        direction="out", score=71.5, latency_ms=35.0, rssi=None, snr=None, hops=None,
        connected_since=NOW - 600, last_seen=NOW - 3, bytes_in=10, bytes_out=20, group=None,
        points=0.0, ban_threshold=100, manual=True,
    )  # fmt: skip
    table, left_out = peers_table([mesh, manual], now=NOW)
    assert left_out == []
    header, first, second = table.splitlines()
    assert header.split("  ")[0] == "NODE ID" and "KIND" in header and "SCORE" in header
    assert re.search(
        r" heard +mesh +mesh, direct +61\.5 +20/100 +-97 dBm \+6\.5 dB +12s ago$", first
    )
    assert re.search(
        r" connected +manual +192\.0\.2\.7:8333 +71\.5 +0/100 +ping 35 ms +3s ago$", second
    )
    iso_table, iso_left_out = peers_table([mesh, manual], iso=True, now=NOW)
    assert max(len(x) for x in iso_table.splitlines()) <= PEERS_WIDTH
    assert re.search(ISO_END, iso_table.splitlines()[1]) and iso_left_out == ["STATE", "KIND"]
