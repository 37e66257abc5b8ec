"""Ban list: points, thresholds, growing durations, subnets, expiry, evidence, decay."""

from __future__ import annotations

import hashlib
import ipaddress
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loragate.bans import (
    DEFAULT_POINTS,
    BanManager,
    BanPolicy,
    BanTarget,
    Misbehaviour,
    net_target,
    node_target,
    parse_target,
)

T0 = 1_700_000_000.0
H = 3600.0
NODE = bytes.fromhex("0102030405060708")


class RecordingSink:
    """A real (in-memory) BanSink: records what would be persisted."""

    def __init__(self) -> None:
        self.saved: list = []
        self.lifted: list = []
        self.evidence: list = []

    def ban_saved(self, ban) -> None:
        self.saved.append(ban)

    def ban_lifted(self, entry) -> None:
        self.lifted.append(entry)

    def evidence_added(self, evidence) -> None:
        self.evidence.append(evidence)


def test_points_accumulate_to_threshold_with_evidence() -> None:
    sink = RecordingSink()
    bm = BanManager(sink=sink)
    frame = b"\x10\x04garbage"
    for i in range(4):
        assert (
            bm.misbehaving(
                Misbehaviour.MALFORMED_FRAME, node_id=NODE, now=T0 + i, msg_type=0x12, frame=frame
            )
            == []
        )
    assert bm.points(node_target(NODE), T0 + 4) == pytest.approx(80, abs=0.1)
    assert not bm.is_banned(node_id=NODE, now=T0 + 4)
    bans = bm.misbehaving("malformed_frame", node_id=NODE, now=T0 + 5, reason="bad msgpack")
    assert [b.target for b in bans] == [node_target(NODE)]
    ban = bans[0]
    assert ban.until == pytest.approx(T0 + 5 + H) and ban.count == 1
    assert "malformed_frame" in ban.reason and "bad msgpack" in ban.reason
    assert bm.is_banned(node_id=NODE, now=T0 + 6)
    ev = bm.evidence(node_target(NODE))
    assert len(ev) == 5
    assert ev[0].frame_sha256 == hashlib.sha256(frame).digest() and ev[0].msg_type == 0x12
    assert ev[0].points == DEFAULT_POINTS[Misbehaviour.MALFORMED_FRAME]
    assert sink.saved == [ban] and len(sink.evidence) == 5
    assert bm.points(node_target(NODE), T0 + 6) == 0  # reset by the ban


def test_bad_signature_bans_at_once_with_address() -> None:
    bm = BanManager()
    bans = bm.misbehaving("bad_signature", node_id=NODE, host="127.0.3.4", now=T0)
    assert {str(b.target) for b in bans} == {"node:" + NODE.hex(), "127.0.3.4"}
    assert bm.is_banned(host="127.0.3.4", now=T0)
    assert not bm.is_banned(host="127.0.3.5", now=T0)
    # A different node id from the banned address is still refused.
    assert bm.is_banned(node_id=b"\xff" * 8, host="127.0.3.4", now=T0)


def test_points_decay_so_occasional_errors_never_ban() -> None:
    bm = BanManager(BanPolicy(points_half_life_s=12 * H))
    for day in range(365):
        assert bm.misbehaving("malformed_frame", host="10.0.0.1", now=T0 + day * 86400) == []
    # Steady state: 20 / (1 - 1/4) = 26.7 points right after an error.
    assert bm.points(net_target("10.0.0.1"), T0 + 364 * 86400) < 27
    assert not bm.is_banned(host="10.0.0.1", now=T0 + 365 * 86400)


def test_burst_still_bans_despite_decay() -> None:
    bm = BanManager()
    bans = []
    for i in range(5):
        bans += bm.misbehaving("bad_tag", host="10.0.0.2", now=T0 + i)
    assert len(bans) == 1


def test_duration_doubles_then_permanent() -> None:
    bm = BanManager(BanPolicy(base_duration_s=H, permanent_after=4, max_duration_s=100 * H))
    now = T0
    lengths = []
    for _ in range(4):
        (ban,) = bm.misbehaving("invalid_sync_data", node_id=NODE, now=now)
        lengths.append(None if ban.until is None else ban.until - now)
        if ban.until is None:
            break
        assert bm.expire(ban.until - 1) == []
        assert [b.target for b in bm.expire(ban.until)] == [ban.target]
        assert not bm.is_banned(node_id=NODE, now=ban.until)
        now = ban.until + 10
    assert lengths == [H, 2 * H, 4 * H, None]
    assert bm.is_banned(node_id=NODE, now=now + 1e9)
    assert bm.expire(now + 1e9) == []
    hist = bm.history(node_target(NODE))
    assert [h.lift_reason for h in hist] == ["expired", "expired", "expired", ""]


def test_duration_capped() -> None:
    p = BanPolicy(base_duration_s=H, max_duration_s=3 * H, permanent_after=0)
    assert [p.duration(n) for n in (1, 2, 3, 10, 50)] == [H, 2 * H, 3 * H, 3 * H, 3 * H]


def test_subnet_bans_ipv4_and_ipv6() -> None:
    bm = BanManager()
    bm.ban(parse_target("10.20.0.0/16"), now=T0, duration_s=H)
    bm.ban(parse_target("2001:db8::/32"), now=T0, permanent=True)
    bm.ban(parse_target("192.0.2.7"), now=T0, duration_s=H)
    assert bm.is_banned(host="10.20.255.1", now=T0)
    assert not bm.is_banned(host="10.21.0.1", now=T0)
    assert bm.is_banned(host="2001:db8:ffff::1", now=T0)
    assert bm.is_banned(host="::ffff:10.20.1.1", now=T0)  # mapped IPv4
    assert not bm.is_banned(host="2001:db9::1", now=T0)
    assert bm.is_banned(host="192.0.2.7", now=T0) and not bm.is_banned(host="192.0.2.8", now=T0)
    assert not bm.is_banned(host="not-an-ip", now=T0)
    assert bm.is_banned(host="10.20.0.1", now=T0 + H - 1)
    assert not bm.is_banned(host="10.20.0.1", now=T0 + H)  # expired even before expire()
    assert bm.is_banned(host="2001:db8::1", now=T0 + 1e9)
    assert bm.unban(parse_target("2001:db8::/32"), now=T0)
    assert not bm.is_banned(host="2001:db8::1", now=T0)
    assert not bm.unban(parse_target("2001:db8::/32"), now=T0)


@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)), max_size=30),
    st.lists(st.integers(0, 2**32 - 1), max_size=30),
)
def test_subnet_lookup_matches_brute_force(nets, probes) -> None:
    bm = BanManager()
    networks = []
    for value, plen in nets:
        net = ipaddress.IPv4Network((value, plen), strict=False)
        networks.append(net)
        bm.ban(net_target(str(net)), now=T0, permanent=True)
    for p in probes + [int(n.network_address) for n in networks]:
        ip = ipaddress.IPv4Address(p)
        assert bm.is_banned(host=str(ip), now=T0) == any(ip in n for n in networks)


def test_manual_ban_and_targets() -> None:
    sink = RecordingSink()
    bm = BanManager(sink=sink)
    t = parse_target(NODE.hex())
    assert t == parse_target("node:" + NODE.hex()) == node_target(NODE)
    ban = bm.ban(t, now=T0, reason="operator")
    assert ban.manual and ban.until == T0 + H
    assert bm.unban(t, now=T0 + 5, reason="operator changed mind")
    assert sink.lifted[-1].lift_reason == "operator changed mind"
    ban2 = bm.ban(t, now=T0 + 10)  # second ban of the target: doubled
    assert ban2.until == T0 + 10 + 2 * H and ban2.count == 2
    assert bm.ban(t, now=T0 + 11, duration_s=60).until == T0 + 71  # replaces
    assert len(bm) == 1
    with pytest.raises(ValueError):
        parse_target("not a thing")
    with pytest.raises(ValueError):
        bm.ban(t, now=T0, duration_s=-1)
    assert str(parse_target("10.1.2.3")) == "10.1.2.3"
    assert str(parse_target("10.1.2.3/8")) == "10.0.0.0/8"


def test_misbehaviour_needs_a_target() -> None:
    with pytest.raises(ValueError):
        BanManager().misbehaving("replay", now=T0)
    with pytest.raises(ValueError):
        BanManager().misbehaving("no_such_kind", node_id=NODE, now=T0)


def test_tracking_tables_bounded() -> None:
    bm = BanManager(BanPolicy(max_tracked=50, evidence_per_target=3))
    r = random.Random(1)
    for i in range(500):
        bm.misbehaving("replay", host=f"10.{r.randrange(256)}.{i % 256}.1", now=T0 + i)
    for _ in range(10):
        bm.misbehaving("replay", node_id=NODE, now=T0)
    sizes = bm.sizes()
    assert sizes["points"] <= 50 and sizes["evidence"] <= 50 and sizes["counts"] <= 50
    assert len(bm.evidence(node_target(NODE))) == 3


def test_expiry_heap_stays_bounded_under_churn() -> None:
    bm = BanManager()
    t = BanTarget("node", NODE.hex())
    for i in range(2000):
        bm.ban(t, now=T0 + i, duration_s=H)
        bm.unban(t, now=T0 + i)
    assert bm.sizes()["expiry"] <= 2 * len(bm) + 65
