"""Gateway settings: defaults that need no file, a TOML file, then command-line flags.

Every setting has one name used in all three places (`outbound_target` in TOML is
`--outbound-target` on the command line). A bad value raises ConfigError whose message
is one line naming the setting, the value and what is allowed.

This module is the gateway's one source of defaults for what a user may set: the score
weights and half-life (`ScoreSettings`, read by `scoring.ScoreWeights`), the ban policy
and the misbehaviour price list (`BanSettings`, read by `bans.BanPolicy`). A stopped
gateway's view (`loragate peers` with no gateway running) reads the same settings, so it
scores exactly as the running gateway did.

The price list (`[bans.points]` in TOML, points per misbehaviour type) is the
gateway's own. The board firmware keeps a separate one (firmware/loranode/bans.py), on
its own scale (its points fade one a minute, the gateway's halve every
`points_half_life_s`), because each side prices a fault by what it costs that side and
by what it can prove; docs/ARCHITECTURE.md compares the two. The names are the same on
every list that has the type; `[bans.points]` may override any subset of them:

=====================  ======  ==============================================================
type                   points  why
=====================  ======  ==============================================================
bad_signature          100     a forged record or frame: no honest peer produces one
invalid_sync_data      100     the node's validator rejected a tx/block (Core: 100)
protocol_violation      50     absurd length prefix, wrong message in a state, oversize
flooding                25     above the per-peer rate limit (token bucket empty)
malformed_frame         20     undecodable bytes; rare bugs happen, repeated ones do not
bad_tag                 20     wrong HMAC: wrong key or tampering (radio CRC catches noise)
replay                  10     a frame/sequence already seen from that source
handshake_failure       10     failed or timed-out signed-challenge handshake
=====================  ======  ==============================================================
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

DATA_DIR_ENV = "LORAGATE_DATA_DIR"
LOG_LEVELS = ("debug", "info", "warning", "error")
PEER_KINDS = ("full", "light", "gateway", "mesh")
# The rates a bridge board's UART accepts (the firmware's uart.baud; the host validator
# tools/deploy/fwconfig.py has the same list, a test checks they agree): a gateway on any
# other rate would never hear its board.
SERIAL_BAUDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


class ConfigError(ValueError):
    """A setting is wrong; str(error) is a one-line message for the user."""


def default_data_dir() -> Path:
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path(platformdirs.user_data_dir("loragate"))


@dataclass
class ScoreSettings:
    reliability_weight: float = 0.4
    performance_weight: float = 0.3
    behaviour_weight: float = 0.3
    half_life_s: float = 3600.0


# Points per misbehaviour type (see the module docstring); bans.Misbehaviour has the
# same names.
MISBEHAVIOUR_POINTS: dict[str, int] = {
    "bad_signature": 100,
    "invalid_sync_data": 100,
    "protocol_violation": 50,
    "flooding": 25,
    "malformed_frame": 20,
    "bad_tag": 20,
    "replay": 10,
    "handshake_failure": 10,
}


@dataclass
class BanSettings:
    threshold: int = 100
    base_duration_s: int = 3600
    max_duration_s: int = 7 * 24 * 3600
    permanent_after: int = 5
    points_half_life_s: float = 12 * 3600.0
    points: dict[str, int] = field(default_factory=lambda: dict(MISBEHAVIOUR_POINTS))


@dataclass
class RelaySettings:
    """What a gateway accepts to relay without the blockchain: the network's size limits.

    An object above its kind's limit is invalid (the sender earns invalid_sync_data
    points), so every node of a network must use the same values. 3,610 bytes is the
    largest transaction the mesh can carry (16 LoRa fragments); 65,000 bytes leaves a
    block room for its header and tag in a 64 KiB TCP frame.
    """

    max_tx_bytes: int = 3610
    max_block_bytes: int = 65000


@dataclass
class PeerPrefix:
    """How many leading bits of an address name one peer for bans and rate limits.

    IPv4: the address (32). IPv6: the /64 a single host is usually given, so a peer
    rotating through its own /64 stays one peer (RFC 4291 §2.5.4 interface ids).
    """

    ipv4: int = 32
    ipv6: int = 64


@dataclass
class GatewayConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    listen_host: str = "127.0.0.1"
    listen_port: int = 8333
    outbound_target: int = 8
    inbound_cap: int = 32
    max_outbound_per_group: int = 2
    preferred_kinds: list[str] = field(default_factory=lambda: ["full", "gateway"])
    dns_seeds: list[str] = field(default_factory=list)
    dns_resolver: str | None = None
    connect: list[str] = field(default_factory=list)
    mdns: bool = False
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    serial_port: str | None = None
    serial_baud: int = 115200
    network_key: str | None = None
    network_key_file: Path | None = None
    handshake_timeout_s: float = 10.0
    read_timeout_s: float = 90.0
    ping_interval_s: float = 30.0
    log_level: str = "info"
    score: ScoreSettings = field(default_factory=ScoreSettings)
    bans: BanSettings = field(default_factory=BanSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    peer_prefix: PeerPrefix = field(default_factory=PeerPrefix)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "loragate.sqlite3"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "node.key"

    @property
    def control_path(self) -> Path:
        return self.data_dir / "control.sock"

    def network_key_bytes(self) -> bytes:
        """The 32-byte mesh network key, from `network_key` (hex) or `network_key_file`.

        ConfigError when neither is set: there is no default key (an all-zero key would
        let anyone who knows the code talk to the mesh as a member)."""
        if self.network_key is not None:
            return _hex_key("network_key", self.network_key)
        if self.network_key_file is not None:
            return read_key_file("network_key_file", self.network_key_file)
        raise ConfigError(NO_NETWORK_KEY)

    def require_network_key(self) -> None:
        """Check the key the gateway will run with: with a serial port the mesh side
        runs and needs one; a key given without a port is checked all the same."""
        if self.serial_port or self.network_key is not None or self.network_key_file:
            self.network_key_bytes()


NO_NETWORK_KEY = (
    "config: serial_port is set but no network key is: set network_key_file to the mesh's "
    "key file (make one with: python -m tools.deploy keygen --out network.key)"
)
# A network key is 32 random bytes. Random ones have ~30 distinct byte values and ~30
# distinct steps between neighbours; fewer than these are a typed, patterned or
# placeholder key (all zeros, 0x11 * 32, 00 01 02 ...), which anyone could guess.
MIN_DISTINCT_BYTES = 16
MIN_DISTINCT_STEPS = 16


def key_weakness(key: bytes) -> str | None:
    """Why `key` is no secret (None: it looks random). Says nothing about its digits."""
    if not any(key):
        return "is all zeros"
    if len(set(key)) < MIN_DISTINCT_BYTES:
        return f"has only {len(set(key))} distinct byte values (a pattern, not a random key)"
    steps = {(b - a) & 0xFF for a, b in zip(key, key[1:], strict=False)}
    if len(steps) < MIN_DISTINCT_STEPS:
        return "is a regular sequence (a pattern, not a random key)"
    return None


def read_key_file(name: str, path: Path) -> bytes:
    """The key in a hex key file; ConfigError naming the file, never its contents."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"config: {name}={path} does not exist (make one with: "
            f"python -m tools.deploy keygen --out {path})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config: {name}={path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config: {name}={path} {_not_text(exc)}") from None
    return _hex_key(name, text)


def _not_text(exc: UnicodeDecodeError) -> str:
    bad = exc.object[exc.start : exc.start + 1].hex()
    return f"is not UTF-8 text (byte 0x{bad} at offset {exc.start})"


def _check_serial_port(port: str) -> None:
    """A port that does not exist yet is fine (it is retried until plugged in); a path that
    exists must be a character device (a tty or pty), not a file or a directory."""
    try:
        mode = os.stat(port).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(
            f"config: serial_port={port!r} cannot be checked: {exc.strerror or exc}"
        ) from None
    if not stat.S_ISCHR(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "not a device"
        raise ConfigError(
            f"config: serial_port={port!r} is {what} (expected a serial device such as "
            "/dev/ttyUSB0)"
        )


def _hex_key(name: str, text: str) -> bytes:
    """32 bytes from 64 hex digits; the error describes the text by its length only, so
    not one digit of a secret reaches a terminal or the journal."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(
            f"config: {name} must be 64 hex digits (32 bytes); it has {len(text)} "
            "characters, not all of them hex digits"
        ) from None
    if len(key) != 32:
        raise ConfigError(
            f"config: {name} must be 64 hex digits (32 bytes); it has {len(key)} bytes"
        )
    weak = key_weakness(key)
    if weak is not None:
        raise ConfigError(
            f"config: {name} {weak}: make a random one with: python -m tools.deploy keygen "
            "--out network.key"
        )
    return key


_SECTIONS: dict[str, type] = {
    "score": ScoreSettings,
    "bans": BanSettings,
    "relay": RelaySettings,
    "peer_prefix": PeerPrefix,
}
_RANGES: dict[str, tuple[float, float]] = {
    "listen_port": (0, 65535),
    "metrics_port": (0, 65535),
    "outbound_target": (0, 64),
    "inbound_cap": (0, 1024),
    "max_outbound_per_group": (1, 64),
    "handshake_timeout_s": (0.1, 600),
    "read_timeout_s": (1, 3600),
    "ping_interval_s": (1, 3600),
    "score.reliability_weight": (0, 100),
    "score.performance_weight": (0, 100),
    "score.behaviour_weight": (0, 100),
    "score.half_life_s": (1, 10**8),
    "bans.threshold": (1, 10**6),
    "bans.base_duration_s": (1, 10**8),
    "bans.max_duration_s": (1, 10**9),
    "bans.permanent_after": (1, 1000),
    "bans.points_half_life_s": (1, 10**8),
    "bans.points.*": (0, 10**6),
    "relay.max_tx_bytes": (1, 65000),
    "relay.max_block_bytes": (1, 65000),
    "peer_prefix.ipv4": (8, 32),
    "peer_prefix.ipv6": (16, 128),
}


def _coerce(name: str, value: Any, target: Any, *, range_name: str | None = None) -> Any:
    """Check `value` against the declared type of the setting `name`."""
    kind = str(target)
    if kind in ("int", "<class 'int'>"):
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "an integer"
    elif kind in ("float", "<class 'float'>"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
        expected = "a number"
    elif kind in ("bool", "<class 'bool'>"):
        ok = isinstance(value, bool)
        expected = "true or false"
    elif kind in ("str", "<class 'str'>", "str | None"):
        ok = isinstance(value, str) or (value is None and "None" in kind)
        expected = "a string"
    elif kind in ("Path", "Path | None"):
        ok = isinstance(value, str | Path)
        value = Path(value).expanduser() if ok else value
        expected = "a path"
    elif kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        expected = "a list of strings"
    elif kind == "dict[str, int]":
        return _price_list(name, value)
    else:  # pragma: no cover - a new field type needs a rule here
        raise AssertionError(f"no rule for {name}: {kind}")
    if not ok:
        raise ConfigError(f"config: {name}={value!r} must be {expected}")
    low_high = _RANGES.get(range_name or name)
    if low_high and not low_high[0] <= value <= low_high[1]:
        raise ConfigError(
            f"config: {name}={value!r} is outside the allowed range {low_high[0]}..{low_high[1]}"
        )
    return value


def _price_list(name: str, value: Any) -> dict[str, int]:
    """A `[bans.points]` table: known misbehaviour names, integer points each."""
    if not isinstance(value, dict):
        raise ConfigError(f"config: [{name}] must be a table of misbehaviour = points")
    for key, points in value.items():
        if key not in MISBEHAVIOUR_POINTS:
            known = ", ".join(sorted(MISBEHAVIOUR_POINTS))
            raise ConfigError(f"config: unknown misbehaviour {name}.{key} (known: {known})")
        _coerce(f"{name}.{key}", points, int, range_name=f"{name}.*")
    return {str(k): int(v) for k, v in value.items()}


def _apply(obj: Any, values: dict[str, Any], prefix: str = "") -> None:
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        name = prefix + key
        if key not in fields:
            allowed = ", ".join(sorted(fields))
            raise ConfigError(f"config: unknown setting {name!r} (known: {allowed})")
        if key in _SECTIONS and not prefix:
            if not isinstance(value, dict):
                raise ConfigError(f"config: [{key}] must be a table")
            _apply(getattr(obj, key), value, prefix=f"{key}.")
            continue
        coerced = _coerce(name, value, fields[key].type)
        held = getattr(obj, key)
        if isinstance(held, dict):  # a table merges over the defaults, key by key
            coerced = {**held, **coerced}
        setattr(obj, key, coerced)


def _check_whole(cfg: GatewayConfig) -> None:
    for name in ("listen_host", "metrics_host"):
        try:
            ipaddress.ip_address(getattr(cfg, name))
        except ValueError:
            raise ConfigError(
                f"config: {name}={getattr(cfg, name)!r} must be an IP address"
            ) from None
    if cfg.log_level not in LOG_LEVELS:
        raise ConfigError(f"config: log_level={cfg.log_level!r} must be one of {LOG_LEVELS}")
    for kind in cfg.preferred_kinds:
        if kind not in PEER_KINDS:
            raise ConfigError(f"config: preferred_kinds has {kind!r}; allowed: {PEER_KINDS}")
    for entry in cfg.connect:
        parse_endpoint(entry, "connect")
    if cfg.dns_resolver is not None:
        parse_endpoint(cfg.dns_resolver, "dns_resolver")
    if cfg.network_key is not None:
        _hex_key("network_key", cfg.network_key)
    if cfg.serial_port:
        _check_serial_port(cfg.serial_port)
    if cfg.serial_baud not in SERIAL_BAUDS:
        rates = ", ".join(str(b) for b in SERIAL_BAUDS)
        raise ConfigError(
            f"config: serial_baud={cfg.serial_baud} is not a rate the bridge firmware "
            f"accepts ({rates}; the board's uart.baud must be the same)"
        )
    if cfg.bans.base_duration_s > cfg.bans.max_duration_s:
        raise ConfigError(
            f"config: bans.base_duration_s={cfg.bans.base_duration_s} exceeds "
            f"bans.max_duration_s={cfg.bans.max_duration_s}"
        )


def parse_endpoint(text: str, setting: str = "address") -> tuple[str, int]:
    """'1.2.3.4:8333' or '[::1]:8333' -> (host, port); ConfigError naming `setting`."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
        if not sep or not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"config: {setting}={text!r} must be IP:PORT (e.g. 127.0.0.1:8333 or [::1]:8333)"
        ) from None
    return host, port


def load(path: Path | None = None, overrides: dict[str, Any] | None = None) -> GatewayConfig:
    """Defaults, then the TOML file at `path`, then `overrides` (flags; None = not given)."""
    cfg = GatewayConfig()
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config: {path} {_not_text(exc)}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {path} is not valid TOML: {exc}") from None
        _apply(cfg, values)
    if overrides:
        _apply(cfg, {k: v for k, v in overrides.items() if v is not None})
    _check_whole(cfg)
    return cfg
