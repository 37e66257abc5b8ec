"""Discovery: DNS seeds over real UDP/TCP to a loopback DNS server, manual peers, mDNS.

The mDNS tests run python-zeroconf on 127.0.0.1 for real; they are skipped only when a
probe with plain sockets shows that multicast over loopback does not work here.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import operator
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from dns_server import DnsServer, free_udp_port
from hypothesis import given, settings
from hypothesis import strategies as st
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

from loragate import discovery as disc
from loragate import mdns
from loragate.config import GatewayConfig

Call = tuple[list[tuple[str, int]], str | None, str]

ZONE = {
    "seed.test.": ["127.0.0.2", "127.0.0.3", "::2"],
    "other.test.": ["127.0.0.3", "127.0.0.4", "fd00::4"],
    "v4only.test.": ["127.0.0.5"],
}


def _collector() -> tuple[list[Call], disc.AddressSink]:
    calls: list[Call] = []

    def sink(addrs: list[tuple[str, int]], source: str | None, kind: str) -> None:
        calls.append((list(addrs), source, kind))

    return calls, sink


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def _cfg(tmp_path: Path, **values: object) -> GatewayConfig:
    cfg = GatewayConfig(data_dir=tmp_path)
    for key, value in values.items():
        setattr(cfg, key, value)
    return cfg


def _node_id() -> str:
    return os.urandom(8).hex()


# --- DNS seeds --------------------------------------------------------------------------


async def test_seeds_give_a_and_aaaa_deduplicated_in_order() -> None:
    async with DnsServer(ZONE) as server:
        got = await disc.resolve_seeds(
            ["seed.test.", "other.test."], 8333, server.endpoint, timeout=2.0
        )
    # Seed order is kept; within one seed DNS gives no order (servers rotate answers).
    assert len(got) == 5
    assert set(got[:3]) == {("127.0.0.2", 8333), ("127.0.0.3", 8333), ("::2", 8333)}
    assert set(got[3:]) == {("127.0.0.4", 8333), ("fd00::4", 8333)}
    asked = {(name, rdtype) for name, rdtype, _ in server.queries}
    assert asked == {
        ("seed.test.", "A"),
        ("seed.test.", "AAAA"),
        ("other.test.", "A"),
        ("other.test.", "AAAA"),
    }


async def test_nxdomain_bad_names_and_no_answer_are_skipped() -> None:
    names = ["missing.test.", "a" * 64 + ".test.", "x..y", "v4only.test.", "seed.test."]
    async with DnsServer(ZONE) as server:
        got = await disc.resolve_seeds(names, 9000, server.endpoint, timeout=2.0)
    assert got[0] == ("127.0.0.5", 9000)
    assert set(got[1:]) == {("127.0.0.2", 9000), ("127.0.0.3", 9000), ("::2", 9000)}
    assert len(got) == 4
    assert server.count("missing.test.") == 2  # asked, answered NXDOMAIN, skipped


async def test_ip_literals_are_taken_without_dns() -> None:
    # No resolver is listening on this port: literals must not need one.
    resolver = ("127.0.0.1", free_udp_port())
    got = await disc.resolve_seeds(
        ["127.0.0.7", "[::7]", "0.0.0.0", "224.0.0.1"], 1234, resolver, timeout=0.5
    )
    assert got == [("127.0.0.7", 1234), ("::7", 1234)]


async def test_silent_server_times_out_within_the_timeout() -> None:
    async with DnsServer(ZONE, silent=True) as server:
        start = time.monotonic()
        got = await disc.resolve_seeds(
            ["seed.test.", "other.test."], 8333, server.endpoint, timeout=0.5
        )
        elapsed = time.monotonic() - start
    assert got == []
    assert server.count("seed.test.") >= 1  # the queries did reach it
    assert elapsed < 1.5, f"took {elapsed:.2f} s with a 0.5 s timeout"


async def test_nothing_listening_is_skipped_quickly() -> None:
    start = time.monotonic()
    got = await disc.resolve_seeds(
        ["seed.test."], 8333, ("127.0.0.1", free_udp_port()), timeout=0.5
    )
    assert got == []
    assert time.monotonic() - start < 1.5


async def test_one_seed_is_capped_and_others_still_count() -> None:
    big = [str(ipaddress.IPv4Address("127.1.0.0") + i) for i in range(1000)]
    async with DnsServer({"big.test.": big, **ZONE}) as server:
        got = await disc.resolve_seeds(
            ["big.test.", "v4only.test."], 8333, server.endpoint, timeout=3.0
        )
    from_big = [addr for addr in got if addr[0].startswith("127.1.")]
    assert len(from_big) == disc.MAX_PER_SEED
    assert len(set(from_big)) == disc.MAX_PER_SEED
    assert {host for host, _ in from_big} <= set(big)
    assert ("127.0.0.5", 8333) in got
    # 1,000 records do not fit a UDP answer: the server truncated, the resolver used TCP.
    assert ("big.test.", "A", "tcp") in server.queries


@settings(max_examples=40)
@given(
    names=st.lists(
        st.one_of(
            st.text(max_size=70),
            st.sampled_from(["seed.test.", "missing.test.", "big", ".", "", "::1", "-.-"]),
            st.from_regex(r"[a-z0-9-]{1,70}(\.[a-z0-9-]{0,70}){0,4}\.?", fullmatch=True),
        ),
        max_size=5,
    )
)
def test_any_names_never_raise(names: list[str]) -> None:
    async def run() -> list[tuple[str, int]]:
        async with DnsServer(ZONE) as server:
            return await disc.resolve_seeds(names, 8333, server.endpoint, timeout=1.0)

    got = asyncio.run(run())
    assert len(got) == len(set(got))
    for host, port in got:
        ipaddress.ip_address(host)
        assert port == 8333


# --- Discovery orchestrator: seeds and manual peers --------------------------------------


def _new_tasks(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t not in before and not t.done()}


async def test_discovery_feeds_manual_peers_and_seeds_then_stops_clean(tmp_path: Path) -> None:
    calls, sink = _collector()
    async with DnsServer(ZONE) as server:
        cfg = _cfg(
            tmp_path,
            dns_seeds=["seed.test."],
            dns_resolver=f"127.0.0.1:{server.port}",
            connect=["127.0.0.9:9000", "[::1]:9001"],
            listen_port=8444,
        )
        before = set(asyncio.all_tasks())
        discovery = disc.Discovery(cfg, sink, _node_id(), 8444)
        await discovery.start()
        assert calls[0] == ([("127.0.0.9", 9000), ("::1", 9001)], None, "full")
        await _until(lambda: len(calls) >= 2, 5.0, "seed addresses")
        addrs, source, kind = calls[1]
        assert sorted(addrs) == [("127.0.0.2", 8444), ("127.0.0.3", 8444), ("::2", 8444)]
        assert (source, kind) == (None, "full")
        assert _new_tasks(before), "the seed loop should be running"
        await discovery.stop()
        assert _new_tasks(before) == set()
        await discovery.stop()  # a second stop is harmless
    assert len(calls) == 2


async def test_reseeds_while_the_book_is_small_and_not_when_large(tmp_path: Path) -> None:
    size = [0]
    calls, sink = _collector()
    async with DnsServer(ZONE) as server:
        cfg = _cfg(tmp_path, dns_seeds=["seed.test."], dns_resolver=f"127.0.0.1:{server.port}")
        discovery = disc.Discovery(
            cfg,
            sink,
            _node_id(),
            0,
            book_size=lambda: size[0],
            small_interval_s=0.05,
            large_interval_s=3600.0,
        )
        await discovery.start()
        await _until(lambda: discovery.seed_rounds >= 3, 5.0, "three rounds on a small book")
        size[0] = 1000
        await asyncio.sleep(0.1)  # let a round already under way finish
        rounds = discovery.seed_rounds
        await asyncio.sleep(0.5)  # ten small intervals
        assert discovery.seed_rounds == rounds, "re-seeded although the book is large"
        size[0] = 99
        await _until(lambda: discovery.seed_rounds > rounds, 5.0, "re-seeding once small again")
        await discovery.stop()
    assert server.count("seed.test.") >= 2 * discovery.seed_rounds  # A and AAAA every round
    assert all(call[2] == "full" and call[1] is None for call in calls)


async def test_large_book_still_reseeds_after_the_long_interval(tmp_path: Path) -> None:
    _, sink = _collector()
    async with DnsServer(ZONE) as server:
        cfg = _cfg(tmp_path, dns_seeds=["seed.test."], dns_resolver=f"127.0.0.1:{server.port}")
        discovery = disc.Discovery(
            cfg,
            sink,
            _node_id(),
            0,
            book_size=lambda: 10_000,
            small_interval_s=0.05,
            large_interval_s=0.4,
        )
        await discovery.start()
        await _until(lambda: discovery.seed_rounds >= 1, 5.0, "the first round")
        start = time.monotonic()
        await _until(lambda: discovery.seed_rounds >= 2, 5.0, "the long-interval round")
        waited = time.monotonic() - start
        await discovery.stop()
    assert waited >= 0.25, f"second round after {waited:.2f} s, long interval is 0.4 s"


async def test_a_failing_sink_or_book_does_not_stop_seeding(tmp_path: Path) -> None:
    def bad_sink(addrs: list[tuple[str, int]], source: str | None, kind: str) -> None:
        raise RuntimeError("manager exploded")

    def bad_book() -> int:
        raise RuntimeError("no book")

    async with DnsServer(ZONE) as server:
        cfg = _cfg(
            tmp_path,
            dns_seeds=["seed.test."],
            dns_resolver=f"127.0.0.1:{server.port}",
            connect=["127.0.0.9:9000"],
        )
        discovery = disc.Discovery(
            cfg, bad_sink, _node_id(), 0, book_size=bad_book, small_interval_s=0.05
        )
        await discovery.start()
        await _until(lambda: discovery.seed_rounds >= 3, 5.0, "rounds despite errors")
        await discovery.stop()


async def test_no_seeds_no_mdns_starts_no_task(tmp_path: Path) -> None:
    calls, sink = _collector()
    before = set(asyncio.all_tasks())
    discovery = disc.Discovery(_cfg(tmp_path, connect=["127.0.0.9:9000"]), sink, _node_id(), 0)
    await discovery.start()
    assert _new_tasks(before) == set()
    assert calls == [([("127.0.0.9", 9000)], None, "full")]
    await discovery.stop()


# --- mDNS: TXT records and the own-id filter ---------------------------------------------


def test_txt_round_trip() -> None:
    node = "00112233AABBCCDD"
    txt = mdns.encode_txt(node, "gateway")
    assert txt == {"id": "00112233aabbccdd", "kind": "gateway", "version": "1"}
    wire = {k.encode(): v.encode() for k, v in txt.items()}
    assert mdns.decode_txt(wire) == mdns.TxtInfo("00112233aabbccdd", "gateway", "1")


@pytest.mark.parametrize(
    ("node", "kind"), [("00112233", "full"), ("zz112233aabbccdd", "full"), ("0" * 16, "boat")]
)
def test_encode_txt_rejects_bad_values(node: str, kind: str) -> None:
    with pytest.raises(ValueError):
        mdns.encode_txt(node, kind)


GOOD = {b"id": b"00112233aabbccdd", b"kind": b"full", b"version": b"1"}


@pytest.mark.parametrize(
    "change",
    [
        {b"id": None},
        {b"id": b"00112233aabbcc"},
        {b"id": b"00112233aabbccdx"},
        {b"id": b"\xff" * 16},
        {b"kind": b"boat"},
        {b"kind": None},
        {b"version": b"2"},
        {b"version": None},
    ],
)
def test_decode_txt_rejects_malformed(change: dict[bytes, bytes | None]) -> None:
    assert mdns.decode_txt({**GOOD, **change}) is None


@pytest.mark.parametrize("missing", [b"id", b"kind", b"version"])
def test_decode_txt_rejects_missing_keys(missing: bytes) -> None:
    assert mdns.decode_txt({k: v for k, v in GOOD.items() if k != missing}) is None


@given(st.dictionaries(st.binary(max_size=12), st.one_of(st.none(), st.binary(max_size=20))))
def test_decode_txt_never_raises(props: dict[bytes, bytes | None]) -> None:
    info = mdns.decode_txt({**props, **GOOD} if len(props) % 2 else props)
    assert info is None or info.kind in mdns.PEER_KINDS


def test_own_id_is_filtered_case_insensitively() -> None:
    hosts = ["127.0.0.1"]
    assert mdns.peer_from_service(GOOD, hosts, 8333, "00112233AABBCCDD") is None
    peer = mdns.peer_from_service(GOOD, hosts, 8333, "ffffffffffffffff")
    assert peer == mdns.MdnsPeer("00112233aabbccdd", "full", [("127.0.0.1", 8333)])
    assert mdns.peer_from_service(GOOD, hosts, 8333, None) == peer


def test_service_addresses_are_filtered_and_capped() -> None:
    hosts = ["0.0.0.0", "224.0.0.251", "fe80::1", "junk", "127.0.0.1", "127.0.0.1"]
    hosts += [f"10.0.0.{i}" for i in range(20)]
    peer = mdns.peer_from_service(GOOD, hosts, 8333, None)
    assert peer is not None
    assert peer.addresses[0] == ("127.0.0.1", 8333)
    assert len(peer.addresses) == mdns.MAX_ADDRESSES_PER_SERVICE
    assert mdns.peer_from_service(GOOD, ["0.0.0.0"], 8333, None) is None
    assert mdns.peer_from_service(GOOD, hosts, 0, None) is None
    assert mdns.peer_from_service(GOOD, hosts, None, None) is None


# --- mDNS for real on loopback -----------------------------------------------------------


def _multicast_loopback_problem() -> str | None:
    """None when an IPv4 multicast datagram sent on 127.0.0.1 comes back; else why not."""
    group = f"239.255.77.{os.getpid() % 250 + 1}"
    try:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
        ):
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            rx.bind(("", 0))
            port = rx.getsockname()[1]
            mreq = socket.inet_aton(group) + socket.inet_aton("127.0.0.1")
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            rx.settimeout(1.0)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, struct.pack("b", 1))
            tx.sendto(b"probe", (group, port))
            data, _ = rx.recvfrom(64)
            return None if data == b"probe" else f"probe got {data!r}"
    except OSError as exc:
        return f"multicast on 127.0.0.1 unavailable: {exc!r}"


@pytest.fixture(scope="module")
def multicast_loopback() -> None:
    problem = _multicast_loopback_problem()
    if problem is not None:
        print(problem)
        pytest.skip(problem)


def _loopback_zc() -> AsyncZeroconf:
    return AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)


async def _closing(*items: Callable[[], Awaitable[None]]) -> None:
    for stop in items:
        await stop()


@pytest.mark.usefixtures("multicast_loopback")
async def test_mdns_advertise_and_browse_on_loopback() -> None:
    own, other = _node_id(), _node_id()
    adv_zc, adv2_zc, browse_zc = _loopback_zc(), _loopback_zc(), _loopback_zc()
    own_ad = mdns.MdnsAdvertiser(own, "127.0.0.1", 41001, "gateway", aiozc=adv_zc)
    other_ad = mdns.MdnsAdvertiser(other, "127.0.0.1", 41002, "light", aiozc=adv2_zc)
    calls, sink = _collector()
    browser = mdns.MdnsBrowser(sink, own_id_hex=own, aiozc=browse_zc)
    try:
        await asyncio.gather(own_ad.start(), other_ad.start())
        await browser.start()
        want = ([("127.0.0.1", 41002)], "127.0.0.1", "light")
        await _until(lambda: want in calls, 10.0, "the other service via mDNS")
        await asyncio.sleep(0.3)
        assert not any(("127.0.0.1", 41001) in addrs for addrs, _, _ in calls), calls
    finally:
        await _closing(browser.stop, own_ad.stop, other_ad.stop)
        for zc in (adv_zc, adv2_zc, browse_zc):
            await zc.async_close()


@pytest.mark.usefixtures("multicast_loopback")
async def test_advertiser_with_own_zeroconf_is_closed_on_stop() -> None:
    calls, sink = _collector()
    browse_zc = _loopback_zc()
    browser = mdns.MdnsBrowser(sink, aiozc=browse_zc)
    node = _node_id()
    advertiser = mdns.MdnsAdvertiser(node, "127.0.0.1", 41003, "full")
    try:
        await browser.start()
        await advertiser.start()
        own_zc = advertiser.zeroconf
        assert own_zc is not None
        await _until(
            lambda: ([("127.0.0.1", 41003)], "127.0.0.1", "full") in calls, 10.0, "the service"
        )
        await advertiser.stop()
        assert own_zc.zeroconf.done
    finally:
        await browser.stop()
        await browse_zc.async_close()


@pytest.mark.usefixtures("multicast_loopback")
async def test_two_gateways_find_each_other_and_not_themselves(tmp_path: Path) -> None:
    before = set(asyncio.all_tasks())
    ids = [_node_id(), _node_id()]
    ports = [41011, 41012]
    sinks = [_collector(), _collector()]
    nodes = [
        disc.Discovery(_cfg(tmp_path, mdns=True), sinks[i][1], ids[i], ports[i]) for i in (0, 1)
    ]
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        assert all(node.mdns_running for node in nodes)
        for me, them in ((0, 1), (1, 0)):
            want = ([("127.0.0.1", ports[them])], "127.0.0.1", "gateway")
            calls = sinks[me][0]
            found = functools.partial(operator.contains, calls, want)
            await _until(found, 10.0, f"gateway {me} finding {them}")
        await asyncio.sleep(0.3)
        for me in (0, 1):
            assert not any(("127.0.0.1", ports[me]) in addrs for addrs, _, _ in sinks[me][0]), (
                "a gateway discovered itself"
            )
        zcs = [node.zeroconf for node in nodes]
    finally:
        for node in nodes:
            await node.stop()
    assert all(zc is not None and zc.zeroconf.done for zc in zcs)
    await asyncio.sleep(0)
    assert _new_tasks(before) == set()


@pytest.mark.usefixtures("multicast_loopback")
async def test_name_conflict_leaves_browsing_running(tmp_path: Path) -> None:
    node = _node_id()
    holder_zc = _loopback_zc()
    holder = mdns.MdnsAdvertiser(node, "127.0.0.1", 41021, "full", aiozc=holder_zc)
    _, sink = _collector()
    discovery = disc.Discovery(_cfg(tmp_path, mdns=True), sink, node, 41022)
    try:
        await holder.start()
        await discovery.start()  # our name is taken: logged, not raised
        assert discovery.mdns_running
        assert not discovery.advertising
    finally:
        await discovery.stop()
        await holder.stop()
        await holder_zc.async_close()


def test_bad_node_id_is_refused_at_construction_when_mdns_is_on(tmp_path: Path) -> None:
    _, sink = _collector()
    with pytest.raises(ValueError):
        disc.Discovery(_cfg(tmp_path, mdns=True), sink, "not-hex", 1)
    disc.Discovery(_cfg(tmp_path), sink, "not-hex", 1)  # the id only matters to mDNS
