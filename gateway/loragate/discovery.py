"""Where the gateway's first addresses come from: DNS seeds, manual peers and mDNS.

Discovery hands what it finds to an ``AddressSink`` — ``sink(addrs, source, kind)``, which
the PeerManager implements as ``add_addresses`` — so this module does not depend on the
manager. ``source`` is None for what we asked for ourselves (DNS seeds, ``connect``
entries) and the announcing host for mDNS. Peer exchange and mesh announcements reach
the address book through the manager, not through here.

DNS seeding runs once at start and then re-runs while the book is small: the loop wakes
every ``small_interval_s`` (10 min) and seeds again when ``book_size()`` is below
``small_book`` (100) or when ``large_interval_s`` (6 h) has passed since the last round.
A seed name contributes at most ``MAX_PER_SEED`` addresses; failures (bad names,
NXDOMAIN, timeouts, no resolver configuration) are logged and skipped, never raised.
Seeds give IPs only; they are paired with ``seed_port`` (default ``cfg.listen_port``, the
network's port). ``cfg.dns_resolver`` ("IP:PORT") replaces the system resolver.

With ``cfg.mdns``, one AsyncZeroconf on the interfaces of ``cfg.listen_host`` advertises
us (``own_port``, our kind) and browses for others; if mDNS cannot start or our name is
taken, that is logged and the gateway goes on without it (or browsing only).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from zeroconf.asyncio import AsyncZeroconf

from loragate.config import GatewayConfig, parse_endpoint
from loragate.mdns import (
    AddressSink,
    MdnsAdvertiser,
    MdnsBrowser,
    encode_txt,
    zeroconf_for_host,
)

log = logging.getLogger(__name__)

MAX_PER_SEED = 256
MAX_CONCURRENT_SEEDS = 16
SMALL_BOOK = 100
SMALL_INTERVAL_S = 600.0
LARGE_INTERVAL_S = 6 * 3600.0
MANUAL_KIND = "full"
SEED_KIND = "full"
OWN_KIND = "gateway"

Endpoint = tuple[str, int]

__all__ = [
    "AddressSink",
    "Discovery",
    "MAX_PER_SEED",
    "resolve_seeds",
]


def _usable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (ip.is_unspecified or ip.is_multicast)


async def _make_resolver(resolver: Endpoint | None, timeout: float) -> dns.asyncresolver.Resolver:
    if resolver is None:
        # Reads /etc/resolv.conf: keep that file access off the event loop.
        res = await asyncio.to_thread(dns.asyncresolver.Resolver)
    else:
        res = dns.asyncresolver.Resolver(configure=False)
        res.nameservers = [dns.nameserver.Do53Nameserver(resolver[0], resolver[1])]
    res.lifetime = timeout
    res.timeout = timeout
    res.cache = None
    return res


def _literal(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


async def _resolve_one(
    res: dns.asyncresolver.Resolver, name: str, port: int, timeout: float
) -> list[Endpoint]:
    """Addresses for one seed name (A then AAAA), capped; [] on any failure."""
    try:
        qname = dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        log.warning("dns seed %r: not a valid name (%s)", name, exc)
        return []

    async def query(rdtype: dns.rdatatype.RdataType) -> list[str]:
        try:
            answer = await asyncio.wait_for(
                res.resolve(qname, rdtype, raise_on_no_answer=False, search=False), timeout
            )
        except dns.resolver.NXDOMAIN:
            log.warning("dns seed %s: no such name", name)
            return []
        except (dns.exception.Timeout, TimeoutError):
            log.warning("dns seed %s %s: timed out after %.1f s", name, rdtype.name, timeout)
            return []
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            log.warning("dns seed %s %s: %s", name, rdtype.name, exc)
            return []
        if answer.rrset is None:
            return []
        return [rdata.address for rdata in answer.rrset]

    results = await asyncio.gather(query(dns.rdatatype.A), query(dns.rdatatype.AAAA))
    found: list[Endpoint] = []
    seen: set[str] = set()
    for text in results[0] + results[1]:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        host = str(ip)
        if host in seen or not _usable(ip):
            continue
        seen.add(host)
        found.append((host, port))
        if len(found) >= MAX_PER_SEED:
            log.info("dns seed %s: capped at %d addresses", name, MAX_PER_SEED)
            break
    return found


async def resolve_seeds(
    names: list[str],
    port: int,
    resolver: Endpoint | None = None,
    timeout: float = 5.0,
) -> list[Endpoint]:
    """Resolve DNS seed names (A and AAAA) to (ip, port), deduplicated, in seed order.

    ``resolver`` is a nameserver (ip, port) to ask instead of the system's. Up to
    ``MAX_CONCURRENT_SEEDS`` names are asked at once, each query bounded by ``timeout``;
    an IP literal among the names is taken as it is. Nothing is raised.
    """
    per_name: list[list[Endpoint]] = [[] for _ in names]
    lookups: list[int] = []
    for i, name in enumerate(names):
        literal = _literal(name)
        if literal is None:
            lookups.append(i)
        elif _usable(literal):
            per_name[i] = [(str(literal), port)]
    if lookups:
        try:
            res = await _make_resolver(resolver, timeout)
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            log.warning("dns seeds: no usable resolver (%s)", exc)
            res = None
        if res is not None:
            limit = asyncio.Semaphore(MAX_CONCURRENT_SEEDS)

            async def bounded(name: str, resolver: dns.asyncresolver.Resolver) -> list[Endpoint]:
                async with limit:
                    return await _resolve_one(resolver, name, port, timeout)

            found = await asyncio.gather(*(bounded(names[i], res) for i in lookups))
            for i, addrs in zip(lookups, found, strict=True):
                per_name[i] = addrs
    out: list[Endpoint] = []
    seen: set[Endpoint] = set()
    for addrs in per_name:
        for addr in addrs:
            if addr not in seen:
                seen.add(addr)
                out.append(addr)
    return out


class Discovery:
    """Runs DNS seeding, manual peers and mDNS for one gateway; ``start()``/``stop()``."""

    def __init__(
        self,
        cfg: GatewayConfig,
        sink: AddressSink,
        node_id_hex: str,
        own_port: int,
        *,
        book_size: Callable[[], int] | None = None,
        kind: str = OWN_KIND,
        seed_port: int | None = None,
        seed_timeout: float = 5.0,
        small_book: int = SMALL_BOOK,
        small_interval_s: float = SMALL_INTERVAL_S,
        large_interval_s: float = LARGE_INTERVAL_S,
    ) -> None:
        self.cfg = cfg
        self.sink = sink
        self.node_id_hex = node_id_hex
        self.own_port = own_port
        self.kind = kind
        self.book_size = book_size if book_size is not None else (lambda: 0)
        self.seed_port = seed_port if seed_port is not None else cfg.listen_port
        self.seed_timeout = seed_timeout
        self.small_book = small_book
        self.small_interval_s = small_interval_s
        self.large_interval_s = large_interval_s
        self.resolver = (
            parse_endpoint(cfg.dns_resolver, "dns_resolver") if cfg.dns_resolver else None
        )
        self.manual = [parse_endpoint(entry, "connect") for entry in cfg.connect]
        if cfg.mdns:
            encode_txt(node_id_hex, kind)  # a bad id or kind is a ValueError now, not at start
        self.seed_rounds = 0
        self._seed_task: asyncio.Task[None] | None = None
        self._advertiser: MdnsAdvertiser | None = None
        self._browser: MdnsBrowser | None = None
        self._aiozc: AsyncZeroconf | None = None
        self._started = False

    @property
    def mdns_running(self) -> bool:
        return self._browser is not None

    @property
    def advertising(self) -> bool:
        """Whether our own mDNS service is registered (a name conflict leaves it off)."""
        return self._advertiser is not None

    @property
    def zeroconf(self) -> AsyncZeroconf | None:
        """The zeroconf instance mDNS runs on while it runs (closed at stop)."""
        return self._aiozc

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.manual:
            self._deliver(list(self.manual), None, MANUAL_KIND)
        if self.cfg.dns_seeds:
            self._seed_task = asyncio.create_task(self._seed_loop(), name="discovery-dns-seeds")
        if self.cfg.mdns:
            await self._start_mdns()

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        task, self._seed_task = self._seed_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._stop_mdns()

    async def seed_once(self) -> list[Endpoint]:
        """One DNS seeding round: resolve every seed and hand the addresses to the sink."""
        addrs = await resolve_seeds(
            self.cfg.dns_seeds, self.seed_port, self.resolver, self.seed_timeout
        )
        self.seed_rounds += 1
        log.info("dns seeds: %d addresses from %d names", len(addrs), len(self.cfg.dns_seeds))
        if addrs:
            self._deliver(addrs, None, SEED_KIND)
        return addrs

    async def _seed_loop(self) -> None:
        loop = asyncio.get_running_loop()
        await self.seed_once()
        last = loop.time()
        while True:
            await asyncio.sleep(self.small_interval_s)
            if self._book_size() < self.small_book or loop.time() - last >= self.large_interval_s:
                await self.seed_once()
                last = loop.time()

    def _book_size(self) -> int:
        try:
            return self.book_size()
        except Exception:
            log.exception("discovery: book_size() failed; assuming a small book")
            return 0

    def _deliver(self, addrs: list[Endpoint], source: str | None, kind: str) -> None:
        try:
            self.sink(addrs, source, kind)
        except Exception:
            log.exception("discovery: address sink failed on %d %s addresses", len(addrs), kind)

    async def _start_mdns(self) -> None:
        """Advertise and browse on the interfaces of the listen address; a failure only logs."""
        try:
            aiozc = zeroconf_for_host(self.cfg.listen_host)
        except Exception as exc:  # zeroconf raises several types; mDNS is optional
            log.warning(
                "mdns: unavailable (%s: %s); continuing without it", type(exc).__name__, exc
            )
            return
        self._aiozc = aiozc
        self._browser = MdnsBrowser(self._deliver, own_id_hex=self.node_id_hex, aiozc=aiozc)
        await self._browser.start()
        advertiser = MdnsAdvertiser(
            self.node_id_hex, self.cfg.listen_host, self.own_port, self.kind, aiozc=aiozc
        )
        try:
            await advertiser.start()
        except Exception as exc:  # zeroconf raises several types; mDNS is optional
            log.warning(
                "mdns: cannot advertise %s (%s: %s); browsing only",
                advertiser.service_name,
                type(exc).__name__,
                exc,
            )
        else:
            self._advertiser = advertiser

    async def _stop_mdns(self) -> None:
        advertiser, self._advertiser = self._advertiser, None
        browser, self._browser = self._browser, None
        aiozc, self._aiozc = self._aiozc, None
        if advertiser is not None:
            await advertiser.stop()
        if browser is not None:
            await browser.stop()
        if aiozc is not None:
            await aiozc.async_close()
