"""Address groups: which addresses one operator can cheaply control together.

An IPv4 address belongs to its /16, an IPv6 address to its /32 (as Bitcoin Core
groups them). IPv6 forms that embed an IPv4 address (IPv4-mapped, 6to4, Teredo)
are grouped by the embedded IPv4 /16, so tunnelling does not buy extra groups.
Loopback and private ranges are *not* collapsed into one group: the test network
runs many peers on distinct 127.x.y.z addresses and needs their groups to differ.

Peers are not groups: `peer_network(host)` names the addresses bans and rate limits
treat as one peer. An IPv4 address is itself (/32); an IPv6 address is its /64, the
subnet a single host is usually given and picks its interface ids from (RFC 4291
§2.5.4, RFC 8981 temporary addresses), so rotating through it does not make a new
peer. A 6to4 address is the /48 its one IPv4 address gives (RFC 3056), a Teredo
address the client in its low 64 bits (its /64 is the relay server, shared by every
client; RFC 4380 §4). Both prefix lengths are settings (`[peer_prefix]`).

Mesh peers have no IP; they are grouped by the bridge (next hop) they arrive through,
since every one of them reaches us through that single radio. Addresses of unknown
origin (DNS seeds, manual config, our own) fall into the ``LOCAL_GROUP``.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

IPV4_PREFIX_BYTES = 2  # /16
IPV6_PREFIX_BYTES = 4  # /32


class NetGroup(NamedTuple):
    """A hashable group value: a family tag and the bytes that identify the group."""

    family: str  # "ipv4", "ipv6", "mesh" or "local"
    prefix: bytes

    def key(self) -> bytes:
        """Unambiguous byte encoding, used as keyed-hash input."""
        fam = self.family.encode()
        return bytes((len(fam),)) + fam + bytes((len(self.prefix),)) + self.prefix


LOCAL_GROUP = NetGroup("local", b"")


def parse_ip(host: str) -> IPAddress:
    """Parse an IP literal; IPv4-mapped IPv6 becomes IPv4. Raises ValueError."""
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def normalize_host(host: str) -> str:
    """Canonical text form of an IP literal (compressed IPv6, mapped -> IPv4)."""
    return str(parse_ip(host))


def ip_group(ip: IPAddress) -> NetGroup:
    """Group of a parsed IP address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is None:
            return NetGroup("ipv6", ip.packed[:IPV6_PREFIX_BYTES])
        ip = embedded
    return NetGroup("ipv4", ip.packed[:IPV4_PREFIX_BYTES])


def group_of(host: str) -> NetGroup:
    """Group of an IP literal string. Raises ValueError for a non-IP string."""
    return ip_group(parse_ip(host))


PEER_PREFIX_IPV4 = 32
PEER_PREFIX_IPV6 = 64
_SIXTOFOUR_BITS = 16  # 2002::/16, then the IPv4 address
_TEREDO = ipaddress.IPv6Network("2001::/32")


def peer_network(
    host: str, ipv4_prefix: int = PEER_PREFIX_IPV4, ipv6_prefix: int = PEER_PREFIX_IPV6
) -> IPNetwork:
    """The network that bans and rate limits treat as the one peer at `host` (an IP
    literal; ValueError otherwise). IPv4-mapped IPv6 is the IPv4 address."""
    ip = parse_ip(host)
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv4Network((ip, ipv4_prefix), strict=False)
    if ip.sixtofour is not None:
        plen = _SIXTOFOUR_BITS + ipv4_prefix
    elif ip in _TEREDO:
        plen = 128
    else:
        plen = ipv6_prefix
    return ipaddress.IPv6Network((ip, plen), strict=False)


def mesh_group(bridge_id: bytes) -> NetGroup:
    """Group of a mesh peer reached through the bridge (next hop) ``bridge_id``."""
    return NetGroup("mesh", bytes(bridge_id))


def source_group(source: str | bytes | NetGroup | None) -> NetGroup:
    """Group of whoever told us about an address.

    ``str`` is the IP of an internet peer, ``bytes`` the id of the bridge a mesh
    announcement came through, a ``NetGroup`` is taken as is, ``None`` means a
    local origin (DNS seed, manual ``--connect``, configuration).
    """
    if source is None:
        return LOCAL_GROUP
    if isinstance(source, NetGroup):
        return source
    if isinstance(source, bytes):
        return mesh_group(source)
    return group_of(source)
