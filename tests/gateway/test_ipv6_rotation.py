"""Bans and rate limits name a peer by its network: the IPv4 address, the IPv6 /64
(issue 15, finding 5). Before, both were per exact address, so an IPv6 peer rotating
through its own /64 was a new peer every time: 40 of 40 handshakes from one /64 got
through a per-address burst of 5, and 20 of 20 after a ban of one of its addresses.

The adversarial test runs on real sockets in a network namespace of its own (`unshare
-rn`, which needs user namespaces; as root `unshare -n` is tried too), with addresses
it adds to `lo` there; where neither works it skips, naming what failed, unless
LORACHAIN_REQUIRE_NETNS=1 (then it fails).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loragate import config
from loragate.bans import (
    Ban,
    BanManager,
    BanPolicy,
    BanTarget,
    Misbehaviour,
    net_target,
    policy_from,
)
from loragate.netgroup import peer_network
from loragate.ratelimit import AddressBuckets

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REQUIRE_ENV = "LORACHAIN_REQUIRE_NETNS"


def namespace_command() -> tuple[list[str] | None, str]:
    """A command prefix that runs a program in a new network namespace, or why not."""
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        return None, f"needs {' and '.join(missing)} (Debian: apt-get install util-linux iproute2)"
    errors = []
    for prefix in (["unshare", "-rn"], ["unshare", "-n"]):
        probe = subprocess.run(
            [*prefix, "ip", "link", "set", "lo", "up"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            return prefix, ""
        errors.append(f"'{' '.join(prefix)}': {probe.stderr.strip() or probe.returncode}")
    return None, "needs a network namespace: " + "; ".join(errors)


def test_an_ipv6_peer_rotating_through_its_64_escapes_neither_ban_nor_rate_limit() -> None:
    prefix, why = namespace_command()
    if prefix is None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{why} ({REQUIRE_ENV} is set)")
        pytest.skip(why)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        str(ROOT / p) for p in (".", "tests", "shared", "gateway", "tests/gateway")
    )
    proc = subprocess.run(
        [*prefix, sys.executable, str(HERE / "ipv6_rotation.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"rotation through fd15::/64: {r['rate_accepted']} of {r['rate_attempts']} handshakes "
        f"accepted (burst 5), banned as {r['rate_ban']}; after a ban of fd17::1 "
        f"({r['ban_target']}): {r['banned_accepted']} of {r['banned_attempts']} accepted"
    )
    assert r["rate_accepted"] == 5  # the burst of the /64, not one per address
    assert r["refused_rate"] == 4  # 4 x 25 flooding points ban the /64
    assert r["rate_ban"] == ["fd15::/64"]
    assert r["ban_target"] == "fd17::/64"
    assert r["banned_accepted"] == 0 and r["refused_banned_after_ban"] == 20
    # Neither reaches past the /64: ::1 and fd16::2 complete their handshakes and stay.
    assert r["honest_accepted"] == 2 and r["connected"] == ["::1", "fd16::2"]


@pytest.mark.parametrize(
    ("host", "network"),
    [
        ("192.0.2.7", "192.0.2.7/32"),
        ("::ffff:192.0.2.7", "192.0.2.7/32"),  # IPv4-mapped: the IPv4 address
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2002:c000:207::1", "2002:c000:207::/48"),  # 6to4: the one IPv4 address behind it
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:4136:e378:8000:63bf:3fff:fdd2/128"),
    ],
)
def test_the_peer_network_of_an_address(host: str, network: str) -> None:
    assert str(peer_network(host)) == network


def test_prefix_lengths_come_from_the_config(tmp_path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text("[peer_prefix]\nipv4 = 24\nipv6 = 56\n")
    cfg = config.load(path)
    policy = policy_from(cfg.bans, cfg.peer_prefix)
    bm = BanManager(policy)
    assert str(bm.address_target("192.0.2.7")) == "192.0.2.0/24"
    assert str(bm.address_target("2001:db8:0:ff::1")) == "2001:db8::/56"
    with pytest.raises(config.ConfigError, match="peer_prefix.ipv6=129 is outside"):
        config.load(overrides={"peer_prefix": {"ipv6": 129}})


def test_points_from_addresses_of_one_64_add_up_to_one_ban() -> None:
    bm = BanManager(BanPolicy(threshold=100))
    for i in range(1, 4):
        assert bm.misbehaving(Misbehaviour.FLOODING, host=f"2001:db8::{i}", now=0) == []
    assert round(bm.points(net_target("2001:db8::99"), now=0)) == 75
    assert bm.misbehaving(Misbehaviour.FLOODING, host="2001:db8::4", now=0)
    assert bm.is_banned(host="2001:db8::ffff:1", now=1)
    assert not bm.is_banned(host="2001:db8:0:1::1", now=1)  # the next /64 is another peer
    assert not bm.is_banned(host="192.0.2.1", now=1)


def test_a_manual_ban_of_one_address_bans_its_peer_and_unban_lifts_it() -> None:
    bm = BanManager()
    ban = bm.ban(net_target("2001:db8::5"), now=0, duration_s=60)
    assert str(ban.target) == "2001:db8::/64" and bm.is_banned(host="2001:db8::6", now=1)
    assert bm.get(net_target("2001:db8::7")) is ban
    assert bm.unban(net_target("2001:db8::8"), now=2)
    assert not bm.is_banned(host="2001:db8::5", now=3)
    v4 = bm.ban(net_target("192.0.2.5"), now=0, duration_s=60)
    assert str(v4.target) == "192.0.2.5" and not bm.is_banned(host="192.0.2.6", now=1)


def test_a_single_address_ban_from_an_older_gateway_is_still_found_and_lifted() -> None:
    bm = BanManager()
    old = BanTarget("net", "2001:db8::5/128")
    bm.restore([Ban(old, 0, 60, "old", 1)])  # as an older gateway stored it
    assert bm.is_banned(host="2001:db8::5", now=1) and not bm.is_banned(host="2001:db8::6", now=1)
    assert bm.get(net_target("2001:db8::5")) is not None
    assert bm.unban(net_target("2001:db8::5"), now=2)
    assert not bm.is_banned(host="2001:db8::5", now=3)


def test_connection_buckets_are_per_peer_network_and_bounded() -> None:
    b = AddressBuckets(rate=0.0001, burst=3, maxlen=4)
    took = [b.take(f"2001:db8::{i:x}", now=0) for i in range(1, 10)]
    assert took == [True] * 3 + [False] * 6  # one /64, one burst
    assert b.take("2001:db8:0:1::1", now=0)  # the next /64 has its own
    assert [b.take("192.0.2.1", now=0), b.take("192.0.2.2", now=0)] == [True, True]
    for i in range(10):
        b.take(f"198.51.100.{i}", now=0)
    assert len(b) == 4
    assert b.take("::1", now=0) and b.take("not-an-ip", now=0)
