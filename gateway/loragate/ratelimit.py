"""Token buckets: the per-peer and per-address rate limits of the gateway.

A bucket holds at most `burst` tokens and gains `rate` tokens per second. `take(n)`
spends n tokens when that many are there (True) and spends nothing otherwise (False),
so a peer over its limit is refused without being charged for the refusal.
Time is passed in (monotonic seconds) so that tests can drive it.

`BucketTable` keeps one bucket per key (address, node id, origin) in a bounded table:
a key seen for the first time starts with a full bucket, the least recently used key
is forgotten first when the table is full. `AddressBuckets` is one keyed by peer
network (`netgroup.peer_network`: the IPv4 address, the IPv6 /64), so a host rotating
through its own /64 spends one bucket.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Generic, TypeVar

from loragate.bounded import BoundedDict
from loragate.netgroup import PEER_PREFIX_IPV4, PEER_PREFIX_IPV6, IPNetwork, peer_network

K = TypeVar("K", bound=Hashable)


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        if rate < 0 or burst <= 0:
            raise ValueError("rate must be >= 0 and burst > 0")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic() if now is None else now

    def _refill(self, now: float) -> None:
        dt = now - self.stamp
        if dt > 0:
            self.tokens = min(self.burst, self.tokens + dt * self.rate)
            self.stamp = now

    def take(self, n: float = 1, now: float | None = None) -> bool:
        """Spend n tokens if there are that many; False (nothing spent) otherwise."""
        self._refill(time.monotonic() if now is None else now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def available(self, now: float | None = None) -> float:
        self._refill(time.monotonic() if now is None else now)
        return self.tokens


class BucketTable(Generic[K]):
    """One token bucket per key, at most `maxlen` keys (least recently used forgotten)."""

    __slots__ = ("rate", "burst", "_buckets")

    def __init__(self, rate: float, burst: float, maxlen: int) -> None:
        TokenBucket(rate, burst)  # the same checks as every bucket it will hold
        self.rate = rate
        self.burst = burst
        self._buckets: BoundedDict[K, TokenBucket] = BoundedDict(maxlen)

    def take(self, key: K, n: float = 1, now: float | None = None) -> bool:
        """Spend n tokens of `key`'s bucket (see TokenBucket.take)."""
        if now is None:
            now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
            self._buckets.put(key, bucket)
        else:
            self._buckets.touch(key)
        return bucket.take(n, now)

    def __len__(self) -> int:
        return len(self._buckets)


class AddressBuckets:
    """A BucketTable keyed by the peer network of an address."""

    __slots__ = ("prefixes", "_table")

    def __init__(
        self,
        rate: float,
        burst: float,
        maxlen: int,
        ipv4_prefix: int = PEER_PREFIX_IPV4,
        ipv6_prefix: int = PEER_PREFIX_IPV6,
    ) -> None:
        self.prefixes = (ipv4_prefix, ipv6_prefix)
        self._table: BucketTable[IPNetwork | str] = BucketTable(rate, burst, maxlen)

    def take(self, host: str, n: float = 1, now: float | None = None) -> bool:
        """Spend n tokens of the bucket of `host`'s peer network (a host that is no IP
        literal has a bucket of its own)."""
        key: IPNetwork | str
        try:
            key = peer_network(host, *self.prefixes)
        except ValueError:
            key = host
        return self._table.take(key, n, now)

    def __len__(self) -> int:
        return len(self._table)
