"""The relay store holds no more than its limit, and a gateway without the blockchain
still refuses what no valid object can be (issue 15, finding 4).

Before: the store kept each object twice (the payload and its encoded body) and counted
only the payload, so its 32 MiB limit held 67 MB; with no validator plugged in, one peer
had a gateway relay 5.3 GB of random 60 KB "transactions" within every rate limit.
"""

from __future__ import annotations

import gc
import os
import tracemalloc

import pytest
from peerkit import endpoint, objects_of, start_node, stop_node, wait_until

from loragate import config
from loragate.bans import node_target
from loragate.config import RelaySettings
from loragate.relay import STORE_ENTRY_OVERHEAD, Relay, RelayLimits
from loragate.session import PRIO_TX
from loragate.validation import DefaultValidator
from lorawire import fragment, messages


@pytest.mark.parametrize("size", [60_000, 200, 8])
def test_the_store_holds_no_more_than_its_limit(size: int) -> None:
    limit = 4 * 1024 * 1024
    # seen_max=1: the dedupe cache (bounded on its own) stays out of the measurement.
    r = Relay(limits=RelayLimits(seen_max=1, store_max_objects=10**7, store_max_bytes=limit))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2 * limit // (size + STORE_ENTRY_OVERHEAD) + 10):  # twice what fits
            r.submit_local("tx", os.urandom(size))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    print(
        f"{size}-byte objects: {r.object_count} held, {held:,} bytes measured, "
        f"{r.object_bytes:,} counted, limit {limit:,}"
    )
    assert r.object_bytes <= limit
    assert held <= limit  # what it really holds, not only what it counts
    assert held >= limit * 0.6  # and the limit is used, not thrown away


def test_an_object_stored_again_is_counted_once() -> None:
    r = Relay(limits=RelayLimits(seen_max=1))
    r.submit_local("tx", b"one")
    counted = r.object_bytes
    r.submit_local("tx", b"two")  # pushes "one" out of the seen cache, not the store
    r.submit_local("tx", b"one")
    assert r.object_count == 2 and r.object_bytes == 2 * counted


def test_a_stored_object_comes_back_byte_for_byte() -> None:
    r = Relay(limits=RelayLimits(store_max_bytes=10 * (STORE_ENTRY_OVERHEAD + 400)))
    payloads = [os.urandom(n) for n in (1, 31, 255, 256, 300)]
    hashes = [r.submit_local("block" if n % 2 else "tx", p) for n, p in enumerate(payloads)]
    assert [r.get(h) for h in hashes] == payloads


def test_the_default_validator_takes_its_limits_from_the_config(tmp_path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text("[relay]\nmax_tx_bytes = 100\nmax_block_bytes = 1000\n")
    v = DefaultValidator(config.load(path).relay)
    assert [v("tx", bytes(100)), v("tx", bytes(101))] == [None, False]
    assert [v("block", bytes(1000)), v("block", bytes(1001))] == [None, False]
    assert v("other", b"x") is False and v.oversize == 3
    with pytest.raises(config.ConfigError, match=r"relay.max_tx_bytes=0 is outside"):
        config.load(overrides={"relay": {"max_tx_bytes": 0}})


def test_the_blockchain_node_hook_sees_only_what_fits() -> None:
    seen: list[tuple[str, int]] = []

    def node(kind: str, payload: bytes) -> bool:
        seen.append((kind, len(payload)))
        return payload != b"bad"

    v = DefaultValidator(RelaySettings(max_tx_bytes=10), node)
    assert [v("tx", b"ok"), v("tx", b"bad"), v("tx", bytes(11))] == [True, False, False]
    assert seen == [("tx", 2), ("tx", 3)]


def test_the_default_tx_limit_is_the_largest_transaction_the_mesh_carries() -> None:
    n = RelaySettings().max_tx_bytes
    largest = fragment.max_message()  # one type byte, then the TX body

    def fits(size: int) -> bool:
        return 1 + len(messages.encode_body(messages.TX, {0: bytes(size)})) <= largest

    assert fits(n) and not fits(n + 1)


async def test_one_peer_sending_large_random_transactions_gets_nothing_relayed(tmp_path) -> None:
    # A high threshold keeps the sender connected: the validator, not the ban, bounds it.
    c = await start_node(tmp_path, "127.3.0.1", outbound_target=0)
    b = await start_node(
        tmp_path, "127.2.0.1", outbound_target=0, connect=[endpoint(c)], ban_threshold=10**6
    )
    a = await start_node(tmp_path, "127.1.0.1", outbound_target=0, connect=[endpoint(b)])
    try:
        await wait_until(lambda: a.peer_count == 1 and b.peer_count == 2 and c.peer_count == 1)
        got = objects_of(c)
        session = a.sessions()[0]
        sent = 200
        for _ in range(sent):  # 12 MB, within the frame, object and flood limits
            assert session.send(messages.TX, {0: os.urandom(60_000)}, PRIO_TX)
        await wait_until(lambda: b.relay.invalid >= sent, timeout=30.0)
        fits = os.urandom(RelaySettings().max_tx_bytes)
        session.send(messages.TX, {0: fits}, PRIO_TX)  # one that fits still goes through
        await wait_until(lambda: got == [("tx", fits)])
        print(
            f"{sent} random 60 KB transactions from one peer: {b.relay.invalid} refused, "
            f"{b.relay.relayed['tx']} relayed, store {b.relay.object_bytes:,} bytes"
        )
        assert b.relay.relayed["tx"] == 1 and b.relay.received["tx"] == 1
        assert b.relay.dropped["object"] == 0  # no rate limit was touched
        assert round(b.banman.points(node_target(a.identity.id))) == 100 * sent
    finally:
        for m in (a, b, c):
            await stop_node(m)
