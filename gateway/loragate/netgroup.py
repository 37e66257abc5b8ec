"""Address groups: which addresses one operator can cheaply control together.

An IPv4 address belongs to its /16, an IPv6 address to its /32 (as Bitcoin Core
groups them). IPv6 forms that embed an IPv4 address (IPv4-mapped, 6to4, Teredo)
are grouped by the embedded IPv4 /16, so tunnelling does not buy extra groups.
Loopback and private ranges are *not* collapsed into one group: the test network
runs many peers on distinct 127.x.y.z addresses and needs their groups to differ.

Mesh peers have no IP; they are grouped by the bridge (next hop) they arrive through,
since every one of them reaches us through that single radio. Addresses of unknown
origin (DNS seeds, manual config, our own) fall into the ``LOCAL_GROUP``.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

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
