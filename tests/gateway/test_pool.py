"""Connection policy: outbound diversity, backoff and inbound eviction."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from loragate.addrman import AddrMan
from loragate.netgroup import group_of
from loragate.pool import Backoff, ConnectionPolicy, PeerSlot

NOW = 1_800_000_000.0


def slot(
    host: str, *, outbound: bool, connected_at: float = NOW - 100, **extra: object
) -> PeerSlot:
    return PeerSlot(
        addr=(host, 8333),
        node_id=None,
        kind=str(extra.pop("kind", "full")),
        outbound=outbound,
        group=group_of(host),
        connected_at=connected_at,
        **extra,  # type: ignore[arg-type]
    )


def test_backoff_doubles_within_jitter_and_resets() -> None:
    backoff = Backoff(base_s=2.0, max_s=60.0, jitter=0.25, rng=random.Random(7))
    addr = ("127.9.0.1", 8333)
    delays = [backoff.failed(addr, NOW) for _ in range(7)]
    for n, delay in enumerate(delays):
        nominal = min(60.0, 2.0 * 2**n)
        assert nominal * 0.75 <= delay <= nominal * 1.25
    assert not backoff.ready(addr, NOW + delays[-1] - 0.01)
    assert backoff.ready(addr, NOW + delays[-1])
    backoff.succeeded(addr)
    assert backoff.ready(addr, NOW) and backoff.delay(addr) == 0.0
    assert 1.5 <= backoff.failed(addr, NOW) <= 2.5


def test_backoff_table_is_bounded() -> None:
    backoff = Backoff(capacity=100)
    for i in range(1000):
        backoff.failed((f"127.0.{i // 250}.{i % 250}", 1), NOW)
    assert len(backoff) == 100


def _book_with(groups: dict[str, int]) -> AddrMan:
    book = AddrMan(rng=random.Random(3))
    for prefix, count in groups.items():
        for i in range(count):
            book.add((f"{prefix}.{i // 200}.{i % 200 + 1}", 8333), source=f"{prefix}.0.1", now=NOW)
    return book


def test_outbound_slots_stay_diverse_when_one_group_floods_the_book() -> None:
    # 10,000 addresses announced from one /16 (127.50.x.y), a handful elsewhere.
    groups = {"127.50": 10_000} | {f"127.{g}": 3 for g in range(1, 11)}
    book = _book_with(groups)
    policy = ConnectionPolicy(8, 32, 2, [])
    backoff = Backoff()
    slots: list[PeerSlot] = []
    while policy.wants_outbound(slots):
        record = policy.pick_outbound(book, slots, backoff, lambda h: False, NOW)
        assert record is not None
        slots.append(slot(record.host, outbound=True))
    per_group: dict[object, int] = {}
    for s in slots:
        per_group[s.group] = per_group.get(s.group, 0) + 1
    assert len(slots) == 8
    assert max(per_group.values()) <= 2
    assert per_group.get(group_of("127.50.0.1"), 0) <= 2
    assert len(per_group) >= 4


def test_banned_and_backing_off_addresses_are_not_picked() -> None:
    book = _book_with({"127.60": 2})
    policy = ConnectionPolicy(8, 32, 2, [])
    backoff = Backoff()
    backoff.failed(("127.60.0.1", 8333), NOW)
    picked = policy.pick_outbound(book, [], backoff, lambda h: h == "127.60.0.2", NOW)
    assert picked is None


def test_preferred_kinds_win_when_present() -> None:
    # A fixed secret: with a random one the 40 addresses from one source can, about one
    # run in a hundred, take the slot the gateway's address hashes to.
    book = AddrMan(bytes(range(16)), rng=random.Random(5))
    for i in range(1, 40):
        book.add((f"127.{i}.0.1", 8333), source="127.200.0.1", kind="light", now=NOW)
    assert book.add(("127.99.0.1", 8333), source="127.200.0.1", kind="gateway", now=NOW)
    policy = ConnectionPolicy(8, 32, 2, ["gateway"])
    record = policy.pick_outbound(book, [], Backoff(), lambda h: False, NOW)
    assert record is not None and record.kind == "gateway"


def _full_inbound() -> list[PeerSlot]:
    slots = []
    for i in range(32):
        slots.append(
            slot(f"127.{100 + i % 8}.0.{i + 1}", outbound=False, connected_at=NOW - 1000 + i)
        )
    return slots


def test_eviction_protects_low_ping_useful_and_long_lived_peers() -> None:
    slots = _full_inbound()
    fast = slots[20:28]
    for s in fast:
        s.min_ping_ms = 1.0
    tx_relayer, block_relayer = slots[28], slots[29]
    tx_relayer.last_tx_at = NOW - 5
    block_relayer.last_block_at = NOW - 5
    oldest = min(slots, key=lambda s: s.connected_at)
    manual = slot("127.250.0.1", outbound=False, connected_at=NOW, manual=True)
    policy = ConnectionPolicy(8, 32, 2, [], secret=b"k" * 16)
    victim = policy.inbound_to_evict(slots + [manual], NOW)
    assert victim is not None
    protected = set(map(id, fast)) | {id(tx_relayer), id(block_relayer), id(oldest), id(manual)}
    assert id(victim) not in protected
    assert not victim.outbound


def test_eviction_targets_the_most_crowded_group() -> None:
    slots = [slot(f"127.{i}.0.1", outbound=False, connected_at=NOW - 500) for i in range(24)]
    crowd = [slot(f"127.77.0.{i}", outbound=False, connected_at=NOW - 100 + i) for i in range(8)]
    policy = ConnectionPolicy(8, 32, 2, [], secret=b"s" * 16)
    victim = policy.inbound_to_evict(slots + crowd, NOW)
    assert victim is not None and victim.group == group_of("127.77.0.1")


def test_nothing_to_evict_refuses_the_newcomer() -> None:
    few = [slot(f"127.{i}.0.1", outbound=False) for i in range(3)]
    assert ConnectionPolicy(8, 3, 2, []).inbound_to_evict(few, NOW) is None


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 20),  # group
            st.booleans(),  # outbound
            st.booleans(),  # manual
            st.one_of(st.none(), st.floats(0.1, 500)),
            st.integers(0, 10_000),
        ),
        max_size=60,
    )
)
def test_evicts_only_unprotected_inbound(
    entries: list[tuple[int, bool, bool, float | None, int]],
) -> None:
    slots = [
        slot(f"127.{g}.1.{i}", outbound=o, manual=m, min_ping_ms=p, connected_at=NOW - age)
        for i, (g, o, m, p, age) in enumerate(entries)
    ]
    victim = ConnectionPolicy(8, 32, 2, []).inbound_to_evict(slots, NOW)
    inbound = [s for s in slots if not s.outbound and not s.manual]
    if victim is None:
        # Refusal only when protection covers everyone.
        assert len(inbound) <= 4 + 8 + (len(inbound) // 2) + 1
    else:
        assert not victim.outbound and not victim.manual
        pinged = [s for s in inbound if s.min_ping_ms is not None]
        # When the pinged peers are few enough for the ping protection to cover them all,
        # none of them may be the victim.
        if len(pinged) <= 8:
            assert victim.min_ping_ms is None
