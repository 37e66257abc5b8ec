"""Token buckets: the per-peer and per-address rate limits of the gateway.

A bucket holds at most `burst` tokens and gains `rate` tokens per second. `take(n)`
spends n tokens when that many are there (True) and spends nothing otherwise (False),
so a peer over its limit is refused without being charged for the refusal.
Time is passed in (monotonic seconds) so that tests can drive it.

`AddressBuckets` keeps one bucket per peer network (`netgroup.peer_network`: the IPv4
address, the IPv6 /64), at most `max_buckets` of them, least recently used dropped.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from loragate.netgroup import PEER_PREFIX_IPV4, PEER_PREFIX_IPV6, IPNetwork, peer_network


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


class AddressBuckets:
    """A token bucket per peer network, bounded in number."""

    def __init__(
        self,
        rate: float,
        burst: float,
        max_buckets: int,
        ipv4_prefix: int = PEER_PREFIX_IPV4,
        ipv6_prefix: int = PEER_PREFIX_IPV6,
    ) -> None:
        if max_buckets < 1:
            raise ValueError("max_buckets must be positive")
        self.rate = rate
        self.burst = burst
        self.max_buckets = max_buckets
        self.prefixes = (ipv4_prefix, ipv6_prefix)
        self._buckets: OrderedDict[IPNetwork | str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, host: str, n: float = 1, now: float | None = None) -> bool:
        """Spend n tokens of the bucket of `host`'s peer network (a host that is no IP
        literal has a bucket of its own)."""
        key: IPNetwork | str
        try:
            key = peer_network(host, *self.prefixes)
        except ValueError:
            key = host
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        return bucket.take(n, now)
