"""mDNS discovery on the local network with python-zeroconf's asyncio API.

Each gateway registers one service of type ``_lorachain._tcp.local.`` named after its node
id, with TXT properties ``id`` (16 hex digits), ``kind`` (full, light, gateway, mesh) and
``version`` (this TXT schema, currently "1"). ``MdnsBrowser`` browses that type, resolves
each service it sees (added or updated) and hands its addresses to an ``AddressSink``;
services carrying our own id, a malformed TXT record, or no usable address are skipped.

The addresses are attributed to the advertised host itself (``source`` = its first
address): a LAN host that floods the browser with services lands in one source group
of the address book. Resolution work is bounded: at most ``MAX_PENDING`` services wait
for resolution and ``MAX_CONCURRENT`` resolve at once; others are dropped and counted.

One ``AsyncZeroconf`` can be shared by an advertiser and a browser (pass ``aiozc``);
when none is given each creates its own from ``interfaces``/``ip_version`` and closes it
on ``stop()``. ``zeroconf_for_host`` picks interfaces matching the listen address, so a
gateway listening on 127.0.0.1 only talks mDNS on loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import ifaddr
from zeroconf import (
    BadTypeInNameException,
    InterfaceChoice,
    InterfacesType,
    IPVersion,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_lorachain._tcp.local."
TXT_VERSION = "1"
PEER_KINDS = ("full", "light", "gateway", "mesh")
NODE_ID_HEX_LEN = 16
MAX_ADDRESSES_PER_SERVICE = 8
MAX_PENDING = 64
MAX_CONCURRENT = 8
RESOLVE_TIMEOUT_MS = 3000

AddressSink = Callable[[list[tuple[str, int]], str | None, str], None]


@dataclass(frozen=True)
class TxtInfo:
    node_id_hex: str
    kind: str
    version: str


@dataclass(frozen=True)
class MdnsPeer:
    node_id_hex: str
    kind: str
    addresses: list[tuple[str, int]]


def _check_id(node_id_hex: str) -> str:
    text = node_id_hex.lower()
    if len(text) != NODE_ID_HEX_LEN or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"node id must be {NODE_ID_HEX_LEN} hex digits, got {node_id_hex!r}")
    return text


def encode_txt(node_id_hex: str, kind: str, version: str = TXT_VERSION) -> dict[str, str]:
    """TXT properties for our service; ValueError for a bad id or kind."""
    if kind not in PEER_KINDS:
        raise ValueError(f"kind must be one of {PEER_KINDS}, got {kind!r}")
    return {"id": _check_id(node_id_hex), "kind": kind, "version": version}


def decode_txt(props: Mapping[bytes, bytes | None]) -> TxtInfo | None:
    """Parse a peer's TXT properties; None when anything is missing or malformed."""
    try:
        raw_id, raw_kind, raw_version = props[b"id"], props[b"kind"], props[b"version"]
        if raw_id is None or raw_kind is None or raw_version is None:
            return None
        node_id = _check_id(raw_id.decode("ascii"))
        kind = raw_kind.decode("ascii")
        version = raw_version.decode("ascii")
    except (KeyError, UnicodeDecodeError, ValueError):
        return None
    if kind not in PEER_KINDS or version != TXT_VERSION:
        return None
    return TxtInfo(node_id, kind, version)


def _usable(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not (ip.is_unspecified or ip.is_multicast or ip.is_link_local)


def peer_from_service(
    props: Mapping[bytes, bytes | None], hosts: list[str], port: int | None, own_id_hex: str | None
) -> MdnsPeer | None:
    """What a resolved service tells us, or None to skip it (own id, bad TXT, no address)."""
    txt = decode_txt(props)
    if txt is None or port is None or not 0 < port < 65536:
        return None
    if own_id_hex is not None and txt.node_id_hex == own_id_hex.lower():
        return None
    addrs: list[tuple[str, int]] = []
    for host in hosts:
        if _usable(host) and (host, port) not in addrs:
            addrs.append((host, port))
        if len(addrs) >= MAX_ADDRESSES_PER_SERVICE:
            break
    if not addrs:
        return None
    return MdnsPeer(txt.node_id_hex, txt.kind, addrs)


def zeroconf_for_host(host: str) -> AsyncZeroconf:
    """An AsyncZeroconf on the interfaces that match a listen address."""
    ip = ipaddress.ip_address(host)
    interfaces: InterfacesType
    if ip.is_unspecified:
        interfaces = InterfaceChoice.All
        version = IPVersion.V4Only if ip.version == 4 else IPVersion.All
    elif ip.version == 4:
        interfaces, version = [host], IPVersion.V4Only
    else:
        interfaces, version = InterfaceChoice.All, IPVersion.V6Only
    return AsyncZeroconf(interfaces=interfaces, ip_version=version)


def _local_addresses(version: int | None) -> list[str]:
    """Non-loopback addresses of this machine (for a gateway listening on 0.0.0.0 or ::)."""
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for entry in adapter.ips:
            host = entry.ip if isinstance(entry.ip, str) else entry.ip[0]
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                continue
            if version is not None and ip.version != version:
                continue
            if not ip.is_loopback and _usable(host):
                found.append(host)
    return found


class MdnsAdvertiser:
    """Registers our ``_lorachain._tcp.local.`` service until ``stop()``."""

    def __init__(
        self,
        node_id_hex: str,
        host: str,
        port: int,
        kind: str,
        *,
        aiozc: AsyncZeroconf | None = None,
    ) -> None:
        self.txt = encode_txt(node_id_hex, kind)
        self.node_id_hex = self.txt["id"]
        self.host = host
        self.port = port
        self._aiozc = aiozc
        self._own = aiozc is None
        self._info: AsyncServiceInfo | None = None
        self._broadcast: asyncio.Future[object] | None = None

    @property
    def zeroconf(self) -> AsyncZeroconf | None:
        """The zeroconf instance the service is registered on (None when stopped)."""
        return self._aiozc

    @property
    def service_name(self) -> str:
        return f"{self.node_id_hex}.{SERVICE_TYPE}"

    def _addresses(self) -> list[str]:
        ip = ipaddress.ip_address(self.host)
        if ip.is_unspecified:
            return _local_addresses(4 if ip.version == 4 else None)
        return [self.host]

    async def start(self) -> None:
        """Probe for our name and register; the announcements go on in the background.

        Raises zeroconf's NonUniqueNameException when another host holds our name, and
        OSError when mDNS is unusable.
        """
        addresses = await asyncio.to_thread(self._addresses)
        if self._aiozc is None:
            self._aiozc = zeroconf_for_host(self.host)
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            self.service_name,
            parsed_addresses=addresses,
            port=self.port,
            properties=dict(self.txt),
            server=f"lorachain-{self.node_id_hex}.local.",
        )
        broadcast = await self._aiozc.async_register_service(info)
        self._info = info
        self._broadcast = asyncio.ensure_future(broadcast)
        log.info("mdns: advertising %s on %s port %d", self.service_name, addresses, self.port)

    async def stop(self) -> None:
        aiozc, info, broadcast = self._aiozc, self._info, self._broadcast
        self._info = self._broadcast = None
        if broadcast is not None:
            broadcast.cancel()
            await asyncio.gather(broadcast, return_exceptions=True)
        if aiozc is None:
            return
        try:
            if info is not None:
                await (await aiozc.async_unregister_service(info))
        except Exception:  # a dead socket must not stop the shutdown
            log.warning("mdns: unregister of %s failed", self.service_name, exc_info=True)
        if self._own:
            await aiozc.async_close()
            self._aiozc = None


class MdnsBrowser:
    """Browses ``_lorachain._tcp.local.`` and feeds resolved peers to ``sink``."""

    def __init__(
        self,
        sink: AddressSink,
        *,
        own_id_hex: str | None = None,
        aiozc: AsyncZeroconf | None = None,
        interfaces: InterfacesType = InterfaceChoice.All,
        ip_version: IPVersion | None = None,
    ) -> None:
        self.sink = sink
        self.own_id_hex = None if own_id_hex is None else _check_id(own_id_hex)
        self._aiozc = aiozc
        self._own = aiozc is None
        self._interfaces = interfaces
        self._ip_version = ip_version
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._limit = asyncio.Semaphore(MAX_CONCURRENT)
        self._running = False
        self.dropped = 0
        self.peers_seen = 0

    async def start(self) -> None:
        if self._aiozc is None:
            self._aiozc = AsyncZeroconf(interfaces=self._interfaces, ip_version=self._ip_version)
        # The browser may call the handler from its constructor (cached records).
        self._running = True
        self._browser = AsyncServiceBrowser(
            self._aiozc.zeroconf, SERVICE_TYPE, handlers=[self._on_change]
        )

    async def stop(self) -> None:
        self._running = False
        browser, self._browser = self._browser, None
        if browser is not None:
            await browser.async_cancel()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._own and self._aiozc is not None:
            await self._aiozc.async_close()
            self._aiozc = None

    def _on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if state_change not in (ServiceStateChange.Added, ServiceStateChange.Updated):
            return
        if not self._running or name in self._tasks:
            return
        if len(self._tasks) >= MAX_PENDING:
            self.dropped += 1
            log.debug("mdns: too many services pending, dropped %s", name)
            return
        task = asyncio.get_running_loop().create_task(self._resolve(zeroconf, service_type, name))
        self._tasks[name] = task
        task.add_done_callback(lambda _t: self._tasks.pop(name, None))

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        async with self._limit:
            try:
                info = AsyncServiceInfo(service_type, name)
                if not await info.async_request(zeroconf, RESOLVE_TIMEOUT_MS):
                    log.debug("mdns: %s did not resolve", name)
                    return
            except (BadTypeInNameException, OSError, ValueError) as exc:
                log.debug("mdns: cannot resolve %s: %s", name, exc)
                return
        peer = peer_from_service(
            info.properties, info.parsed_addresses(), info.port, self.own_id_hex
        )
        if peer is None:
            return
        self.peers_seen += 1
        log.info("mdns: found %s (%s) at %s", peer.node_id_hex, peer.kind, peer.addresses)
        try:
            self.sink(peer.addresses, peer.addresses[0][0], peer.kind)
        except Exception:
            log.exception("mdns: address sink failed for %s", name)


__all__ = [
    "SERVICE_TYPE",
    "AddressSink",
    "MdnsAdvertiser",
    "MdnsBrowser",
    "MdnsPeer",
    "TxtInfo",
    "decode_txt",
    "encode_txt",
    "peer_from_service",
    "zeroconf_for_host",
]
