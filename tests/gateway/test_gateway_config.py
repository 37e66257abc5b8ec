"""Gateway settings: defaults, TOML, flags, and one-line errors for every mistake."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from loragate.bans import BanManager, BanPolicy, Misbehaviour, node_target, policy_from
from loragate.config import (
    MISBEHAVIOUR_POINTS,
    SERIAL_BAUDS,
    ConfigError,
    GatewayConfig,
    ScoreSettings,
    load,
    parse_endpoint,
)
from loragate.scoring import DEFAULT_WEIGHTS, weights_from


def test_defaults_need_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LORAGATE_DATA_DIR", str(tmp_path / "gw"))
    cfg = load()
    assert (cfg.listen_host, cfg.listen_port) == ("127.0.0.1", 8333)
    assert (cfg.outbound_target, cfg.inbound_cap) == (8, 32)
    assert cfg.db_path == tmp_path / "gw" / "loragate.sqlite3"


def test_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        'listen_port = 9000\noutbound_target = 4\ndns_seeds = ["seed.example"]\n'
        "[bans]\nthreshold = 50\n[score]\nhalf_life_s = 60\n"
    )
    cfg = load(path, {"listen_port": 9001, "inbound_cap": None})
    assert cfg.listen_port == 9001  # the flag wins
    assert cfg.inbound_cap == 32  # a flag not given keeps the file's / default value
    assert cfg.outbound_target == 4
    assert cfg.bans.threshold == 50
    assert cfg.score.half_life_s == 60.0
    assert cfg.dns_seeds == ["seed.example"]


INVALID = [
    ("listen_port = 70000", "listen_port=70000 is outside"),
    ('listen_port = "80"', "listen_port='80' must be an integer"),
    ('listen_host = "localhost"', "listen_host='localhost' must be an IP address"),
    ("outbound_target = -1", "outbound_target=-1 is outside"),
    ("inbound_cap = 5000", "inbound_cap=5000 is outside"),
    ("mdns = 1", "mdns=1 must be true or false"),
    ('log_level = "loud"', "log_level='loud' must be one of"),
    ('prefered_kinds = ["full"]', "unknown setting 'prefered_kinds'"),
    ('preferred_kinds = ["whale"]', "preferred_kinds has 'whale'"),
    ('connect = ["1.2.3.4"]', "connect='1.2.3.4' must be IP:PORT"),
    ('connect = ["host.example:8333"]', "connect='host.example:8333' must be IP:PORT"),
    ("connect = [1]", "connect=[1] must be a list of strings"),
    ('network_key = "abcd"', "network_key must be 64 hex digits"),
    ("[bans]\nthreshold = 0", "bans.threshold=0 is outside"),
    ("[bans]\nbase_duration_s = 100\nmax_duration_s = 10", "bans.base_duration_s=100 exceeds"),
    ("[score]\nhalf_life_s = true", "score.half_life_s=True must be a number"),
    ("[score]\nweight = 1", "unknown setting 'score.weight'"),
    ("bans = 3", "[bans] must be a table"),
    ("serial_baud = 300", "serial_baud=300 is not a rate the bridge firmware accepts"),
    ("serial_baud = 12345", "serial_baud=12345 is not a rate the bridge firmware accepts"),
    ('dns_resolver = "8.8.8.8"', "dns_resolver='8.8.8.8' must be IP:PORT"),
    ("listen_port = ", "is not valid TOML"),
    ("[bans.points]\nforgery = 5", "unknown misbehaviour bans.points.forgery (known: bad_sig"),
    ("[bans.points]\nreplay = -1", "bans.points.replay=-1 is outside"),
    ('[bans.points]\nreplay = "10"', "bans.points.replay='10' must be an integer"),
    ("[bans]\npoints = 3", "[bans.points] must be a table of misbehaviour = points"),
]


@pytest.mark.parametrize(("text", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_settings_give_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.toml")


def test_endpoints_parse_ipv4_and_ipv6() -> None:
    assert parse_endpoint("127.0.0.2:8333") == ("127.0.0.2", 8333)
    assert parse_endpoint("[::1]:18333") == ("::1", 18333)


def test_network_key_from_file(tmp_path: Path) -> None:
    key = hashlib.sha256(b"net").digest()
    key_file = tmp_path / "net.key"
    key_file.write_text(key.hex() + "\n")
    cfg = load(overrides={"network_key_file": str(key_file)})
    assert cfg.network_key_bytes() == key
    key_file.write_text("zz")
    with pytest.raises(ConfigError, match="network_key_file must be 64 hex digits"):
        cfg.network_key_bytes()


def test_the_price_list_is_a_setting_merged_over_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[bans]\npoints_half_life_s = 600\n[bans.points]\nbad_signature = 60\n")
    cfg = load(path)
    assert cfg.bans.points == {**MISBEHAVIOUR_POINTS, "bad_signature": 60}
    policy = policy_from(cfg.bans)
    assert policy.points[Misbehaviour.BAD_SIGNATURE] == 60 and policy.points_half_life_s == 600
    bm = BanManager(policy)
    node = bytes.fromhex("0102030405060708")
    assert not bm.misbehaving(Misbehaviour.BAD_SIGNATURE, node_id=node, now=0.0)
    assert bm.points(node_target(node), now=0.0) == 60  # not the default 100: no ban yet
    assert bm.misbehaving(Misbehaviour.BAD_SIGNATURE, node_id=node, now=0.0)


def test_defaults_are_defined_once_in_the_config() -> None:
    # Every misbehaviour type has a price, and the list names no other.
    assert set(MISBEHAVIOUR_POINTS) == {m.value for m in Misbehaviour}
    assert policy_from(load().bans) == BanPolicy()  # the policy's defaults are the config's
    assert weights_from(ScoreSettings()) == DEFAULT_WEIGHTS
    assert DEFAULT_WEIGHTS.half_life_s == ScoreSettings().half_life_s


def test_the_serial_rates_are_the_firmwares() -> None:
    # The gateway may not import tools/; the two lists are kept equal by this test.
    from tools.deploy import fwconfig

    assert SERIAL_BAUDS == fwconfig.UART_BAUDS
    assert GatewayConfig().serial_baud == fwconfig.UART_DEFAULT_BAUD
