"""Address book: bucketing limits, test-before-evict, terrible entries, selection, persistence."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loragate.addrman import (
    BUCKET_SIZE,
    NEW_BUCKET_COUNT,
    NEW_BUCKETS_PER_SOURCE_GROUP,
    REPLACEMENT_S,
    SECRET_KV_KEY,
    TRIED_BUCKET_COUNT,
    TRIED_BUCKETS_PER_GROUP,
    TRIED_COLLISION_SIZE,
    AddrMan,
    load_addrman,
    save_addrman,
)
from loragate.netgroup import LOCAL_GROUP, NetGroup, group_of, mesh_group, source_group
from loragate.store import Store

T0 = 1_700_000_000.0
SECRET = bytes(range(16))


def book(seed: int = 1) -> AddrMan:
    return AddrMan(SECRET, rng=random.Random(seed))


def rand_ip(r: random.Random) -> str:
    return f"{r.randrange(1, 224)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"


def test_add_select_and_counts() -> None:
    am = book()
    assert am.select(now=T0) is None
    assert am.add(("10.0.0.1", 8333), "192.0.2.1", now=T0)
    assert not am.add(("10.0.0.1", 8333), "192.0.2.1", now=T0)  # already known
    assert len(am) == 1 and am.new_count == 1 and am.tried_count == 0
    rec = am.select(now=T0)
    assert rec is not None and rec.addr == ("10.0.0.1", 8333) and not rec.in_tried
    assert am.select(new_only=True, now=T0) is not None
    assert am.good(("10.0.0.1", 8333), T0)
    assert am.tried_count == 1 and am.new_count == 0
    assert am.select(new_only=True, now=T0) is None
    assert am.select(now=T0 + 3600).in_tried  # type: ignore[union-attr]
    am.check_consistency()


def test_bad_input_rejected() -> None:
    am = book()
    with pytest.raises(ValueError):
        am.add(("not-an-ip", 1), now=T0)
    with pytest.raises(ValueError):
        am.add(("10.0.0.1", 0), now=T0)
    with pytest.raises(ValueError):
        am.add(("10.0.0.1", 1), kind="martian", now=T0)
    # Unknown or malformed addresses are simply not found by the other calls.
    assert not am.good(("nope", 1), T0)
    am.attempt(("10.9.9.9", 1), T0)
    assert len(am) == 0


def test_ipv6_and_mapped_normalised() -> None:
    am = book()
    am.add(("::ffff:10.1.2.3", 8333), now=T0)
    assert ("10.1.2.3", 8333) in am
    am.add(("2001:0db8:0000::1", 8333), now=T0)
    assert ("2001:db8::1", 8333) in am
    assert am.get(("2001:db8:0::1", 8333)) is not None


def test_one_source_cannot_take_more_than_its_bucket_share() -> None:
    am = book()
    r = random.Random(7)
    honest = set()
    for i in range(2000):
        addr = (rand_ip(r), 8333)
        if am.add(addr, f"{20 + i % 200}.{i % 250}.0.1", now=T0):
            honest.add(addr)
    honest = {a for a in honest if a in am}
    before = len(honest)
    assert before > 1500
    attacker = "203.0.113.9"
    told: set[tuple[str, int]] = set()
    for _ in range(10_000):
        addr = (rand_ip(r), 8333)
        am.add(addr, attacker, now=T0)
        told.add(addr)
    flood = [(b, a) for b, a in am.occupied("new") if a in told and a not in honest]
    assert len({b for b, _ in flood}) <= NEW_BUCKETS_PER_SOURCE_GROUP
    assert len(flood) <= NEW_BUCKETS_PER_SOURCE_GROUP * BUCKET_SIZE
    # Honest entries (one reference each, not terrible) are never overwritten.
    assert all(a in am for a in honest)
    am.check_consistency()


def test_one_slash16_as_source_is_bounded_like_one_source() -> None:
    am = book()
    r = random.Random(3)
    for _ in range(10_000):
        src = f"198.51.{r.randrange(256)}.{r.randrange(1, 255)}"  # many hosts, one /16
        am.add((rand_ip(r), 8333), src, now=T0)
    buckets = {b for b, _ in am.occupied("new")}
    assert am.new_count <= NEW_BUCKETS_PER_SOURCE_GROUP * BUCKET_SIZE
    assert len(buckets) <= NEW_BUCKETS_PER_SOURCE_GROUP
    # Addresses heard from elsewhere still get in: only those hashing into one of the
    # flooder's <= 64 of 1024 buckets (~6 %) can find their slot taken.
    added = sum(am.add((rand_ip(r), 8333), f"{1 + i}.2.3.4", now=T0) for i in range(200))
    assert added >= 170
    am.check_consistency()


def test_one_group_spreads_over_few_tried_buckets() -> None:
    am = book()
    addrs = [(f"10.77.{i // 250}.{1 + i % 250}", 8333) for i in range(1500)]
    for i, a in enumerate(addrs):
        am.add(a, f"{1 + i % 200}.1.1.1", now=T0)
    for a in addrs:
        if a in am:
            am.good(a, T0, test_before_evict=False)
    tried_buckets = {b for b, _ in am.occupied("tried")}
    assert len(tried_buckets) <= TRIED_BUCKETS_PER_GROUP
    assert am.tried_count <= TRIED_BUCKETS_PER_GROUP * BUCKET_SIZE
    am.check_consistency()


def colliding_pair(am: AddrMan) -> tuple[tuple[str, int], tuple[str, int]]:
    """Two addresses of one /16 landing in the same tried slot."""
    seen: dict[tuple[int, int], tuple[str, int]] = {}
    for i in range(5000):
        a = (f"10.5.{i // 250}.{1 + i % 250}", 8333)
        am.add(a, f"{1 + i % 220}.9.9.9", now=T0)
        if a not in am:
            continue
        slot = am.tried_slot(a)
        if slot in seen:
            return seen[slot], a
        seen[slot] = a
    raise AssertionError("no collision found")


def setup_collision() -> tuple[AddrMan, tuple[str, int], tuple[str, int]]:
    am = book()
    old, new = colliding_pair(am)
    assert am.good(old, T0)
    later = T0 + 5 * 3600  # the old entry's success is now older than REPLACEMENT_S
    assert not am.good(new, later)
    assert am.collision_count == 1
    assert am.get(old).in_tried and not am.get(new).in_tried  # type: ignore[union-attr]
    feeler = am.select_tried_collision()
    assert feeler is not None and feeler.addr == old
    return am, old, new


def test_collision_old_entry_answers_feeler_and_stays() -> None:
    am, old, new = setup_collision()
    now = T0 + 5 * 3600 + 30
    am.good(old, now)  # feeler connected
    am.resolve_collisions(now + 1)
    assert am.get(old).in_tried and not am.get(new).in_tried  # type: ignore[union-attr]
    assert am.collision_count == 0
    am.check_consistency()


def test_collision_old_entry_fails_feeler_and_is_evicted() -> None:
    am, old, new = setup_collision()
    now = T0 + 5 * 3600 + 30
    am.attempt(old, now)  # feeler failed
    am.resolve_collisions(now + 10)  # too soon after the try: still pending
    assert am.collision_count == 1 and not am.get(new).in_tried  # type: ignore[union-attr]
    am.resolve_collisions(now + 61)
    assert am.get(new).in_tried  # type: ignore[union-attr]
    assert old in am and not am.get(old).in_tried  # back in new, not lost
    assert am.collision_count == 0
    am.check_consistency()


def test_collision_without_feeler_result_evicts_after_test_window() -> None:
    am, old, new = setup_collision()
    t = T0 + 5 * 3600
    am.resolve_collisions(t + 60)
    assert not am.get(new).in_tried  # type: ignore[union-attr]
    am.resolve_collisions(t + 41 * 60)
    assert am.get(new).in_tried  # type: ignore[union-attr]
    am.check_consistency()


def test_recently_good_old_entry_is_kept_immediately() -> None:
    am = book()
    old, new = colliding_pair(am)
    am.good(old, T0)
    am.good(new, T0 + 60)
    am.resolve_collisions(T0 + 120)  # old succeeded < REPLACEMENT_S ago
    assert am.collision_count == 0
    assert am.get(old).in_tried and not am.get(new).in_tried  # type: ignore[union-attr]
    assert REPLACEMENT_S > 120


def test_collision_set_is_bounded() -> None:
    am = book()
    addrs = [(f"10.6.{i // 250}.{1 + i % 250}", 8333) for i in range(3000)]
    for i, a in enumerate(addrs):
        am.add(a, f"{1 + i % 200}.3.3.3", now=T0)
    for a in addrs:
        am.good(a, T0)
    assert am.collision_count == TRIED_COLLISION_SIZE
    am.check_consistency()


def test_terrible_rules() -> None:
    am = book()
    stale = ("10.1.0.1", 1)
    future = ("10.2.0.1", 1)
    failing = ("10.3.0.1", 1)
    fine = ("10.4.0.1", 1)
    other = ("10.9.0.1", 1)
    am.add(stale, seen=T0 - 31 * 86400, now=T0)
    am.add(future, seen=T0 + 3600, now=T0)
    am.add(failing, now=T0)
    am.add(fine, now=T0)
    am.add(other, now=T0)
    for i in range(3):
        # Failures count once per successful-connection epoch (we were online).
        am.good(other, T0 + 100 * i)
        am.attempt(failing, T0 + 100 * i + 10)
    now = T0 + 1000
    assert am.is_terrible(stale, now)
    assert am.is_terrible(future, now)
    assert am.get(failing).attempts == 3  # type: ignore[union-attr]
    assert am.is_terrible(failing, now)
    assert not am.is_terrible(failing, T0 + 220)  # tried within the last minute
    assert not am.is_terrible(fine, now)
    picks = {am.select(new_only=True, now=now).addr for _ in range(200)}  # type: ignore[union-attr]
    assert picks == {fine}


def test_only_terrible_entries_gives_none() -> None:
    am = book()
    for i in range(20):
        am.add((f"10.{i}.0.1", 1), seen=T0 - 40 * 86400, now=T0)
    assert len(am) == 20
    assert am.select(now=T0) is None


def test_terrible_occupant_is_overwritten() -> None:
    am = book()
    src = "192.0.2.1"
    slots: dict[tuple[int, int], tuple[str, int]] = {}
    for i in range(1, 250):
        a = (f"10.8.0.{i}", 1)
        am.add(a, src, seen=T0 - 40 * 86400, now=T0)  # all terrible
        if a not in am:
            continue
        slots[am.new_slot(a, src)] = a
    # A fresh address (same /16, same source -> same bucket) whose slot is held by a terrible one.
    for j in range(1, 250):
        a = (f"10.8.1.{j}", 1)
        am.add(a, src, now=T0)
        am_slot = am.new_slot(a, src) if a in am else None
        if am_slot is not None and am_slot in slots:
            assert a in am and slots[am_slot] not in am
            break
    else:
        raise AssertionError("no slot collision found")
    am.check_consistency()


def test_fresh_occupant_is_kept() -> None:
    am = book()
    src = "192.0.2.1"
    taken = {}
    for i in range(1, 250):
        a = (f"10.8.0.{i}", 1)
        am.add(a, src, now=T0)
        if a in am:
            taken[am.new_slot(a, src)] = a
    lost = 0
    for j in range(1, 250):
        a = (f"10.8.1.{j}", 1)
        am.add(a, src, now=T0)
    lost = sum(1 for a in taken.values() if a not in am)
    assert lost == 0


def test_selection_covers_diverse_groups() -> None:
    am = book()
    for g in range(100):
        for h in range(20):
            am.add((f"{10 + g}.{g}.{h}.1", 8333), f"{100 + g}.1.{h}.1", now=T0)
    groups = Counter()
    for _ in range(3000):
        rec = am.select(now=T0)
        assert rec is not None
        groups[group_of(rec.host)] += 1
    assert len(groups) >= 90
    assert max(groups.values()) < 3000 * 0.05


def test_select_prefers_tried_about_half() -> None:
    am = book()
    for i in range(400):
        am.add((f"10.{i % 250}.{i // 250}.1", 1), f"{1 + i % 200}.{i % 250}.1.1", now=T0)
    for i in range(0, 400, 4):
        am.good((f"10.{i % 250}.{i // 250}.1", 1), T0)
    now = T0 + 3600
    tried = sum(am.select(now=now).in_tried for _ in range(2000))  # type: ignore[union-attr]
    assert 800 < tried < 1200


def test_recent_attempts_lower_the_chance() -> None:
    am = book()
    for i in range(2):
        am.add((f"10.{i}.0.1", 1), f"{i + 1}.1.1.1", now=T0)
    am.attempt(("10.0.0.1", 1), T0 + 100)  # tried 1 s before: chance x0.01 x0.66
    picks = Counter(am.select(now=T0 + 101).host for _ in range(2000))  # type: ignore[union-attr]
    assert picks["10.1.0.1"] > 0.9 * 2000


def test_kinds_filter() -> None:
    am = book()
    for i in range(200):
        kind = "gateway" if i % 10 == 0 else "full"
        am.add((f"10.{i}.0.1", 1), f"{i + 1}.1.1.1", kind=kind, now=T0)
    picks = {am.select(now=T0, kinds={"gateway"}).kind for _ in range(100)}  # type: ignore[union-attr]
    assert picks == {"gateway"}
    assert am.select(now=T0, kinds={"mesh"}) is None
    am.set_peer(("10.1.0.1", 1), kind="mesh", node_id=b"\x01" * 8)
    rec = am.select(now=T0, kinds={"mesh"})
    assert rec is not None and rec.node_id == b"\x01" * 8
    am.check_consistency()


def test_sample_for_peer_exchange() -> None:
    am = book()
    for i in range(500):
        am.add((f"10.{i % 250}.{i // 250}.1", 1), f"{i % 200 + 1}.1.1.1", now=T0)
    n = len(am)
    out = am.sample(1000, max_pct=23, now=T0)
    assert len(out) == 23 * n // 100
    assert len({r.addr for r in out}) == len(out)
    assert len(am.sample(10, now=T0)) == 10
    am.check_consistency()


def test_remove() -> None:
    am = book()
    am.add(("10.0.0.1", 1), now=T0)
    am.add(("10.1.0.1", 1), now=T0)
    am.good(("10.1.0.1", 1), T0)
    assert am.remove(("10.0.0.1", 1)) and am.remove(("10.1.0.1", 1))
    assert len(am) == 0 and not am.remove(("10.1.0.1", 1))
    am.check_consistency()


def test_persistence_round_trip(tmp_path) -> None:
    db = tmp_path / "book.sqlite"
    store = Store(db)
    store.set_kv(SECRET_KV_KEY, SECRET)  # fixed layout: the test is deterministic
    am = load_addrman(store, rng=random.Random(1))
    assert am.secret == SECRET
    r = random.Random(5)
    for i in range(3000):
        am.add((rand_ip(r), 8333), f"{1 + i % 200}.2.2.2", now=T0, services=i % 4)
    for i in range(0, 3000, 10):
        rec = am.select(now=T0 + i)
        if rec is not None:
            am.good(rec.addr, T0 + i)
    am.attempt(am.select(new_only=True, now=T0).addr, T0 + 5)  # type: ignore[union-attr]
    save_addrman(am, store)
    assert store.count_addresses() == len(am)
    # Incremental: only changed rows, and deletions, are written.
    victim = am.addresses()[0]
    am.remove(victim)
    assert am.add(("203.0.113.50", 8333), "9.9.9.9", now=T0, kind="gateway", node_id=b"\x02" * 8)
    assert save_addrman(am, store) == 2
    store.close()

    store2 = Store(db)
    am2 = load_addrman(store2, rng=random.Random(2))
    assert am2.secret == am.secret
    assert len(am2) == len(am)
    assert am2.tried_count == am.tried_count
    assert victim not in am2
    rec = am2.get(("203.0.113.50", 8333))
    assert rec is not None and rec.kind == "gateway" and rec.node_id == b"\x02" * 8
    for addr in am.addresses()[:200]:
        a, b = am.get(addr), am2.get(addr)
        assert a == b
    am2.check_consistency()
    store2.close()


OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "good", "attempt", "connected", "select", "resolve"]),
        st.integers(0, 40),  # address index
        st.integers(0, 12),  # source index
        st.one_of(st.integers(0, 300), st.integers(0, 8 * 86400)),  # time step
        st.integers(0, 5400),  # how old the advertised last-seen time is
    ),
    max_size=300,
)


@settings(max_examples=60)
@given(OPS)
def test_tables_stay_within_capacity_and_consistent(ops) -> None:
    am = book()
    now = T0
    for op, ai, si, dt, age in ops:
        now += dt
        # A few groups only, so buckets and slots collide a lot.
        addr = (f"10.{ai % 3}.{ai // 250}.{ai % 250 + 1}", 8333)
        src = f"{si + 1}.0.0.1"
        if op == "add":
            am.add(addr, src, now=now, seen=now - age)
        elif op == "good":
            am.good(addr, now)
        elif op == "attempt":
            am.attempt(addr, now)
        elif op == "connected":
            am.connected(addr, now)
        elif op == "select":
            rec = am.select(now=now)
            assert rec is None or rec.addr in am
        else:
            fe = am.select_tried_collision()
            if fe is not None:
                am.attempt(fe.addr, now)
            am.resolve_collisions(now)
        assert am.new_count <= NEW_BUCKET_COUNT * BUCKET_SIZE
        assert am.tried_count <= TRIED_BUCKET_COUNT * BUCKET_SIZE
        assert am.collision_count <= TRIED_COLLISION_SIZE
    am.check_consistency()


def test_fresh_store_gets_a_random_persisted_secret(tmp_path) -> None:
    store = Store(tmp_path / "s.sqlite")
    a = load_addrman(store)
    b = load_addrman(store)
    assert a.secret == b.secret == store.get_kv(SECRET_KV_KEY)
    assert a.secret != SECRET and len(a.secret) == 16
    store.close()


def test_netgroups() -> None:
    assert group_of("10.1.2.3") == group_of("10.1.200.9") == NetGroup("ipv4", b"\x0a\x01")
    assert group_of("10.2.0.1") != group_of("10.1.0.1")
    # Loopback peers on distinct 127.x.y.z addresses land in distinct groups.
    assert group_of("127.0.1.1") != group_of("127.1.1.1")
    assert group_of("2001:db8:1::1") == group_of("2001:db8:ffff::2")
    assert group_of("2001:db8::1") != group_of("2001:db9::1")
    assert group_of("::ffff:10.1.2.3") == group_of("10.1.2.3")
    assert group_of("2002:0a01:0203::1") == group_of("10.1.2.3")  # 6to4
    teredo = "2001:0:4136:e378:8000:63bf:f5fe:fdfc"  # client 10.1.2.3, obfuscated
    assert group_of(teredo) == group_of("10.1.2.3")
    assert mesh_group(b"\x01" * 8) == source_group(b"\x01" * 8) == NetGroup("mesh", b"\x01" * 8)
    assert source_group(None) == LOCAL_GROUP
    assert len({group_of("10.0.0.1"), mesh_group(b"\x0a\x00"), LOCAL_GROUP}) == 3
    with pytest.raises(ValueError):
        group_of("example.com")
