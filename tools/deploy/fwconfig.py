# ruff: noqa: UP031 - printf-style %d keeps the many range messages short and uniform
"""Firmware configuration: schema, defaults and validation, on the host.

A board does not validate its config: it reads what this module accepted. The deploy
tool (and the simulator) validate a user's config here and write `board_config(cfg)` to
the board as config.json: the same dict, complete (every default filled in), plus what
the board would otherwise need the region tables and board presets for -- its channel's
duty-cycle numbers ("duty": budget_ms, window_ms, dwell_ms), the region's index for its
record ("region_index") and the radio wiring ("radio", the board preset). So a board
never loads this module, lorawire.regions or the presets (they held about 25 KB of a
board's heap, most of it identifiers that stay in its qstr pool once loaded).

`validate(dict)` returns a new, complete dict or raises `ConfigError` with ONE line
naming the field, the value and the allowed range:

    config: frequency_hz=915000000 is outside EU868 (863000000..870000000)

Secrets never appear in messages: a bad network_key is described by its length only.

The "node" section holds the peer manager's runtime options (NODE_INTS, NODE_BOOLS,
kind, state_dir); this module is their only schema and range check. `validate` returns
it complete, and loranode.node.Node takes it from the config as it is.
`node_options(section)` checks a section on its own. The "bridge" section holds the
bridge role's options (stats_interval_s); "uart" may name a tty `path` (the unix port).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NoReturn

from lorawire import airtime, regions
from lorawire.frame import DEFAULT_HOP_LIMIT, MAX_HOPS, OVERHEAD_BROADCAST
from tools.deploy import boards


class ConfigError(ValueError):
    """A config value is wrong; str(err) is one line naming field, value and allowed range."""


ROLES = ("node", "bridge")
REGIONS = ("EU868", "US915", "AU915", "AS923", "IN865", "KR920")

# SF6 needs implicit-header mode (fixed payload length, no header CRC). Frames here have
# variable length and rely on the explicit header, so SF6 is rejected.
SF_MIN = 7
SF_MAX = 12
SF_DEFAULT = 9
BANDWIDTHS = (125000, 250000, 500000)
BANDWIDTH_DEFAULT = 125000
CR_MIN = 5  # 4/5
CR_MAX = 8  # 4/8
CR_DEFAULT = 5
TX_POWER_DEFAULT = 14
ANTENNA_GAIN_MAX = 20

NETWORK_KEY_BYTES = 32

ANNOUNCE_MIN_S = 30
ANNOUNCE_MAX_S = 86400
ANNOUNCE_DEFAULT_MIN_S = 300
ANNOUNCE_DEFAULT_MAX_S = 3600

# name: (low, high, default) -- fixed table sizes, preallocated at boot.
CAPACITIES = {
    "peers": (4, 128, 32),
    "bans": (4, 64, 16),
    "seen": (16, 256, 64),
    "reassembly": (1, 8, 4),
    "key_cache": (4, 64, 16),
    "txqueue": (4, 64, 16),
}

SCORE_WEIGHT_KEYS = ("reliability", "performance", "behaviour")
SCORE_WEIGHT_MAX = 100
SCORE_WEIGHT_DEFAULTS = {"reliability": 40, "performance": 30, "behaviour": 30}

# uart id 0 is the USB-serial console (the cable to the Raspberry Pi): no pins to set.
UART_IDS = (0, 1, 2)
UART_BAUDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
UART_DEFAULT_BAUD = 115200

SIM_NAME_MAX = 32

# The "node" section. Integers: name -> (low, high, default). An interval of 0 means:
# status lines only on request; PEX every announce_interval_min_s; pings every four
# times that. flood_rate_per_min 0 turns the per-source flood limit off; while it is on,
# flood_burst must be at least 1 (at most 1000, so a bucket stays a small int on a board).
NODE_INTERVAL_MAX_S = 86400
NODE_INTS = {
    "status_interval_s": (0, NODE_INTERVAL_MAX_S, 60),
    "hop_limit": (0, MAX_HOPS, DEFAULT_HOP_LIMIT),
    "pex_interval_s": (0, NODE_INTERVAL_MAX_S, 0),
    "ping_interval_s": (0, NODE_INTERVAL_MAX_S, 0),
    "flood_rate_per_min": (0, NODE_INTERVAL_MAX_S, 20),
    "flood_burst": (0, 1000, 10),
}
NODE_BOOLS = {"relay": True, "stdin": True}  # relay others' frames; read stdin commands
NODE_KINDS = ("full", "light", "gateway", "mesh")  # lorawire.record.KIND_NAMES
NODE_KIND_DEFAULT = "mesh"
NODE_STATE_DIR_DEFAULT = "."  # key.bin, state.bin, bans.bin live here
NODE_KEYS = tuple(sorted(["kind", "state_dir"] + list(NODE_INTS) + list(NODE_BOOLS)))

TOP_KEYS = (
    "role",
    "board",
    "region",
    "frequency_hz",
    "sf",
    "bandwidth_hz",
    "coding_rate",
    "tx_power_dbm",
    "antenna_gain_dbi",
    "network_key",
    "capacities",
    "announce_interval_min_s",
    "announce_interval_max_s",
    "score_weights",
    "uart",
    "sim",
    "pins",
    "node",
    "bridge",
)

# The largest frame a node sends itself: an ANNOUNCE carrying the largest signed record
# (lorawire.record: 166 bytes; docs/PROTOCOL.md section 7), 187 bytes with the broadcast
# header and tag. Own frames are not fragmented, and the transmit queue drops a frame that
# can never be sent (`tx_never`), so a radio setting under which this frame exceeds the
# dwell limit or the background share of the sub-band's duty-cycle budget would leave the
# node unable to announce: validate refuses it (see _check_airtime).
LARGEST_RECORD_BYTES = 166
LARGEST_OWN_FRAME = OVERHEAD_BROADCAST + LARGEST_RECORD_BYTES

_SHOW_MAX = 40


def _show(value: Any) -> str:
    if isinstance(value, str):
        s = repr(value)
    elif value is True:
        s = "true"
    elif value is False:
        s = "false"
    elif value is None:
        s = "null"
    elif isinstance(value, dict):
        s = "{...}"
    elif isinstance(value, (list, tuple)):
        s = "[...]"
    else:
        s = repr(value)
    if len(s) > _SHOW_MAX:
        s = s[: _SHOW_MAX - 3] + "..."
    return s


def _fail(msg: str) -> NoReturn:
    raise ConfigError("config: " + msg.replace("\n", " "))


def _bad(field: str, value: Any, what: str) -> NoReturn:
    _fail(f"{field}={_show(value)} {what}")


def _is_int(v: Any) -> bool:
    # bool first: isinstance(True, int) is True on CPython, False on MicroPython.
    return not isinstance(v, bool) and isinstance(v, int)


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float))


def _check_keys(section: str, d: Any, allowed: Sequence[str]) -> None:
    if not isinstance(d, dict):
        _bad(section, d, "is not an object (keys: {})".format(", ".join(allowed)))
    unknown = [k for k in d if k not in allowed]
    if unknown:
        unknown.sort(key=str)
        prefix = section + "." if section else ""
        _fail("unknown key {}{} (allowed: {})".format(prefix, unknown[0], ", ".join(allowed)))


def _int(
    d: dict, key: str, field: str, lo: int, hi: int, default: Any = None, required: bool = False
) -> Any:
    if key not in d or d[key] is None:
        if required:
            _fail("%s is missing (an integer %d..%d)" % (field, lo, hi))
        return default
    v = d[key]
    if not _is_int(v):
        _bad(field, v, "is not an integer (%d..%d)" % (lo, hi))
    if v < lo or v > hi:
        _bad(field, v, "is outside %d..%d" % (lo, hi))
    return v


def _number(d: dict, key: str, field: str, lo: float, hi: float, default: Any) -> Any:
    if key not in d or d[key] is None:
        return default
    v = d[key]
    if not _is_number(v):
        _bad(field, v, f"is not a number ({lo}..{hi})")
    if v < lo or v > hi:
        _bad(field, v, f"is outside {lo}..{hi}")
    return v


def _choice(d: dict, key: str, field: str, choices: Sequence[Any], default: Any = None) -> Any:
    if key not in d or d[key] is None:
        if default is None:
            _fail("{} is missing (one of {})".format(field, ", ".join(str(c) for c in choices)))
        return default
    v = d[key]
    for c in choices:
        # same type as well as same value: True == 1 must not pass for an int choice
        if v == c and isinstance(v, bool) == isinstance(c, bool) and type(v) is type(c):
            return v
    _bad(field, v, "is not one of {}".format(", ".join(str(c) for c in choices)))


def _bool(d: dict, key: str, field: str, default: bool) -> bool:
    if key not in d or d[key] is None:
        return default
    v = d[key]
    if not isinstance(v, bool):
        _bad(field, v, "is not true or false")
    return v


def _pin(d: dict, key: str, field: str, required: bool = False) -> int | None:
    return _int(d, key, field, 0, boards.MAX_GPIO, None, required)


def _network_key(d: dict) -> str:
    if "network_key" not in d or d["network_key"] is None:
        _fail("network_key is missing (%d hex characters)" % (2 * NETWORK_KEY_BYTES))
    v = d["network_key"]
    want = 2 * NETWORK_KEY_BYTES
    if not isinstance(v, str):
        _fail("network_key is not a string (%d hex characters)" % want)
    if len(v) != want:
        _fail("network_key has %d characters (need %d hex characters)" % (len(v), want))
    for ch in v:
        if ch not in "0123456789abcdefABCDEF":
            _fail("network_key has a non-hex character (need %d hex characters)" % want)
    return v.lower()


def _capacities(d: dict) -> dict[str, int]:
    sect = d.get("capacities")
    if sect is None:
        sect = {}
    names = sorted(CAPACITIES)
    _check_keys("capacities", sect, names)
    out = {}
    for name in names:
        lo, hi, default = CAPACITIES[name]
        out[name] = _int(sect, name, "capacities." + name, lo, hi, default)
    return out


def _score_weights(d: dict) -> dict[str, int]:
    sect = d.get("score_weights")
    if sect is None:
        sect = {}
    _check_keys("score_weights", sect, SCORE_WEIGHT_KEYS)
    out = {}
    total = 0
    for name in SCORE_WEIGHT_KEYS:
        # integers only: the node's Scorer does integer arithmetic, and a fraction such
        # as 0.5 would become 0 there (all three 0 stops the node at boot)
        w = _int(
            sect, name, "score_weights." + name, 0, SCORE_WEIGHT_MAX, SCORE_WEIGHT_DEFAULTS[name]
        )
        out[name] = w
        total += w
    if total <= 0:
        _fail(
            "score_weights are all 0 (at least one must be above 0, each 0..%d)" % SCORE_WEIGHT_MAX
        )
    return out


def _custom_pins(d: dict, board: str) -> dict[str, Any] | None:
    sect = d.get("pins")
    if board != boards.CUSTOM:
        if sect is not None:
            _bad("board", board, "has fixed pins (pins is only allowed with board='custom')")
        return None
    if sect is None:
        _fail("pins is missing (board='custom' takes every pin from the pins section)")
    _check_keys("pins", sect, boards.CUSTOM_PIN_KEYS)
    chip = _choice(sect, "chip", "pins.chip", boards.CHIPS)
    p = {"chip": chip}
    p["spi_id"] = _int(sect, "spi_id", "pins.spi_id", 1, 2, 1)
    for name in ("sck", "mosi", "miso", "cs"):
        p[name] = _pin(sect, name, "pins." + name, True)
    p["reset"] = _pin(sect, "reset", "pins.reset")
    sx126x = chip == "sx1262"
    if sx126x:
        p["busy"] = _pin(sect, "busy", "pins.busy", True)
        if sect.get("dio0") is not None:
            _bad("pins.dio0", sect["dio0"], "must be null for chip sx1262 (it has no DIO0)")
        p["dio0"] = None
        p["dio1"] = _pin(sect, "dio1", "pins.dio1")
        p["tcxo_mv"] = _int(sect, "tcxo_mv", "pins.tcxo_mv", 1600, 3300)
        p["dio2_rf_sw"] = _bool(sect, "dio2_rf_sw", "pins.dio2_rf_sw", True)
        if sect.get("pa_boost"):
            _bad("pins.pa_boost", True, "must be false for chip sx1262")
        p["pa_boost"] = False
    else:
        if sect.get("busy") is not None:
            _bad("pins.busy", sect["busy"], "must be null for chip sx1276 (it has no BUSY)")
        p["busy"] = None
        p["dio0"] = _pin(sect, "dio0", "pins.dio0")
        p["dio1"] = _pin(sect, "dio1", "pins.dio1")
        if p["dio1"] is not None and p["dio0"] is None:
            _bad("pins.dio1", p["dio1"], "needs pins.dio0 as well (sx1276 driver)")
        if sect.get("tcxo_mv") is not None:
            _bad("pins.tcxo_mv", sect["tcxo_mv"], "must be null for chip sx1276")
        p["tcxo_mv"] = None
        if sect.get("dio2_rf_sw"):
            _bad("pins.dio2_rf_sw", True, "must be false for chip sx1276")
        p["dio2_rf_sw"] = False
        p["pa_boost"] = _bool(sect, "pa_boost", "pins.pa_boost", True)
    lo, hi = boards.CHIP_POWER_RANGE[chip]
    if not p["pa_boost"] and not sx126x:
        hi = 14  # SX1276 RFO output: at most 14 dBm
    p["max_power_dbm"] = _int(sect, "max_power_dbm", "pins.max_power_dbm", lo, hi, hi)
    return p


def _pin_uses(preset: dict, prefix: str) -> list[tuple[str, int]]:
    """(field, pin) pairs of the radio wiring, for the pin-clash check."""
    uses = []
    for name in ("sck", "mosi", "miso", "cs", "reset", "busy", "dio0", "dio1"):
        if preset[name] is not None:
            uses.append((prefix + name, preset[name]))
    return uses


def _check_clashes(uses: list[tuple[str, int]]) -> None:
    seen = {}  # type: ignore[var-annotated]  # pin -> field, types by use only
    for field, pin in uses:
        if pin in seen:
            _bad(field, pin, f"is already used by {seen[pin]} (every pin once)")
        seen[pin] = field


def _uart(d: dict, role: str) -> dict[str, Any] | None:
    sect = d.get("uart")
    if sect is None:
        if role != "bridge":
            return None
        sect = {}
    _check_keys("uart", sect, ("baud", "id", "path", "rx", "tx"))
    path = sect.get("path")
    if path is not None:
        # On the unix port the "UART" is a tty path (a pty in tests and the demo).
        if not isinstance(path, str) or not path:
            _bad("uart.path", path, "is not a tty path")
        baud = _choice(sect, "baud", "uart.baud", UART_BAUDS, UART_DEFAULT_BAUD)
        return {"path": path, "baud": baud, "id": None, "tx": None, "rx": None}
    uid = _choice(sect, "id", "uart.id", UART_IDS, 0)
    out = {"id": uid}
    out["baud"] = _choice(sect, "baud", "uart.baud", UART_BAUDS, UART_DEFAULT_BAUD)
    if uid == 0:
        for name in ("tx", "rx"):
            if sect.get(name) is not None:
                _bad("uart." + name, sect[name], "must be null for uart.id=0 (the USB console)")
        out["tx"] = None
        out["rx"] = None
    else:
        out["tx"] = _pin(sect, "tx", "uart.tx", True)
        out["rx"] = _pin(sect, "rx", "uart.rx", True)
    return out


def _sim(d: dict) -> dict[str, Any] | None:
    sect = d.get("sim")
    if sect is None:
        return None
    _check_keys("sim", sect, ("medium_host", "medium_port", "name"))
    host = sect.get("medium_host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        _bad("sim.medium_host", host, "is not a host name or address")
    port = _int(sect, "medium_port", "sim.medium_port", 1, 65535, None, True)
    name = sect.get("name")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= SIM_NAME_MAX):
        _bad("sim.name", name, "is not a string of 1..%d characters" % SIM_NAME_MAX)
    return {"medium_host": host, "medium_port": port, "name": name}


BRIDGE_STATS_DEFAULT_S = 5


def _bridge(sect: dict | None) -> dict[str, Any]:
    """The bridge role's options: how often RADIO_STATS goes up the UART (0: never)."""
    if sect is None:
        sect = {}
    _check_keys("bridge", sect, ("stats_interval_s",))
    return {
        "stats_interval_s": _int(
            sect,
            "stats_interval_s",
            "bridge.stats_interval_s",
            0,
            NODE_INTERVAL_MAX_S,
            BRIDGE_STATS_DEFAULT_S,
        )
    }


def node_options(sect: dict | None) -> dict[str, Any]:
    """Check a "node" section (None: all defaults); return it complete."""
    if sect is None:
        sect = {}
    _check_keys("node", sect, NODE_KEYS)
    out = {}
    for name in NODE_KEYS:  # sorted: the first bad field is the same on both runtimes
        if name in NODE_INTS:
            lo, hi, default = NODE_INTS[name]
            out[name] = _int(sect, name, "node." + name, lo, hi, default)
        elif name in NODE_BOOLS:
            out[name] = _bool(sect, name, "node." + name, NODE_BOOLS[name])
    out["kind"] = _choice(sect, "kind", "node.kind", NODE_KINDS, NODE_KIND_DEFAULT)
    sd = sect.get("state_dir")
    if sd is None:
        sd = NODE_STATE_DIR_DEFAULT
    elif not isinstance(sd, str) or not sd:
        _bad("node.state_dir", sd, "is not a directory path (a non-empty string)")
    out["state_dir"] = sd
    rate = out["flood_rate_per_min"]
    if rate and out["flood_burst"] < 1:
        _bad(
            "node.flood_burst",
            out["flood_burst"],
            "is outside 1..%d while node.flood_rate_per_min=%d (0 turns the limit off)"
            % (NODE_INTS["flood_burst"][1], rate),
        )
    return out


def _bandwidth(d: dict, reg: dict) -> int:
    bw = _choice(d, "bandwidth_hz", "bandwidth_hz", BANDWIDTHS, BANDWIDTH_DEFAULT)
    allowed = reg["bandwidths_hz"]
    if bw not in allowed:
        _bad(
            "bandwidth_hz",
            bw,
            "is not allowed in {} ({})".format(reg["name"], ", ".join(str(b) for b in allowed)),
        )
    return bw


def _fits(reg: dict, f: int, bw: int) -> bool:
    try:
        regions.sub_band_index(reg, f, bw)
        return True
    except ValueError:
        return False


def _default_frequency(reg: dict, bw: int) -> int:
    # Walk the channel rasters (first_hz, step_hz, count, bw_hz) rather than expanding them
    # (US915 has 80 default channels: too many tuples for a board's heap at boot).
    plan = reg["channel_plan"]
    for first, _, _, channel_bw in plan:
        if channel_bw == bw:
            return first
    # a default channel centre that also holds the wider channel (EU868 250 kHz: 868.3 MHz)
    for first, step, count, _ in plan:
        for i in range(count):
            if _fits(reg, first + step * i, bw):
                return first + step * i
    # else the middle of the first sub-band that holds it
    for band in reg["sub_bands"]:
        f = (band[regions.SB_LO] + band[regions.SB_HI]) // 2
        if _fits(reg, f, bw):
            return f
    _bad("bandwidth_hz", bw, "fits no {} sub-band".format(reg["name"]))


def _frequency(d: dict, reg: dict, bw: int) -> int:
    name = reg["name"]
    lo = reg["freq_min_hz"]
    hi = reg["freq_max_hz"]
    if "frequency_hz" not in d or d["frequency_hz"] is None:
        return _default_frequency(reg, bw)
    f = d["frequency_hz"]
    if not _is_int(f):
        _bad("frequency_hz", f, "is not an integer in Hz (%s %d..%d)" % (name, lo, hi))
    if f < lo or f > hi:
        _bad("frequency_hz", f, "is outside %s (%d..%d)" % (name, lo, hi))
    if not _fits(reg, f, bw):
        bands = ", ".join("%d..%d" % (b[regions.SB_LO], b[regions.SB_HI]) for b in reg["sub_bands"])
        _bad(
            "frequency_hz",
            f,
            "with bandwidth_hz=%d fits no %s sub-band (%s)" % (bw, name, bands),
        )
    return f


def _air_ms(sf: int, bw: int, cr: int) -> int:
    # whole ms rounded up, as DutyCycle charges and compares a transmission
    return -(-airtime.time_on_air_us(LARGEST_OWN_FRAME, sf, bw, cr) // 1000)


def _limits(reg: dict, f: int, bw: int) -> tuple[int, int]:
    """(dwell_ms or 0, background budget ms) for the channel, from DutyCycle's rules."""
    duty = regions.DutyCycle(reg["name"])
    return duty.dwell_limit_ms(f, bw), duty.budget_ms(f, True)


def allowed_sfs(
    region: str | dict, frequency_hz: int, bandwidth_hz: int, coding_rate: int
) -> list[int]:
    """The spreading factors under which LARGEST_OWN_FRAME fits the channel's limits."""
    reg = regions.region(region)
    dwell, bg = _limits(reg, frequency_hz, bandwidth_hz)
    ok = []
    for s in range(SF_MIN, SF_MAX + 1):
        ms = _air_ms(s, bandwidth_hz, coding_rate)
        if (not dwell or ms <= dwell) and ms <= bg:
            ok.append(s)
    return ok


def _check_airtime(d: dict, reg: dict, f: int, bw: int, cr: int) -> int:
    """The configured (or default) sf, refused when the node's largest frame cannot be sent.

    Dwell limit: a single transmission longer than it is never allowed. Duty cycle: own
    announces are background traffic, which DutyCycle holds to half of the sub-band's
    budget per window. The default sf is SF_DEFAULT or, where that does not fit, the
    highest sf that does.
    """
    sf = _int(d, "sf", "sf", SF_MIN, SF_MAX)
    ok = allowed_sfs(reg, f, bw, cr)
    if sf is None:
        if ok:
            return SF_DEFAULT if SF_DEFAULT in ok else ok[-1]
        sf = SF_MIN
        head = "coding_rate=%d with bandwidth_hz=%d: at sf=%d" % (cr, bw, sf)
    elif sf in ok:
        return sf
    else:
        head = "sf=%d with bandwidth_hz=%d:" % (sf, bw)
    dwell, bg = _limits(reg, f, bw)
    ms = _air_ms(sf, bw, cr)
    if dwell and ms > dwell:
        limit = "%s's %d ms dwell limit" % (reg["name"], dwell)
    else:
        duty = regions.sub_band(reg, f, bw)[regions.SB_DUTY_PPM]
        limit = "the %d ms background share of %s's %d.%d %% duty cycle at frequency_hz=%d" % (
            bg,
            reg["name"],
            duty // 10000,
            duty // 1000 % 10,
            f,
        )
    if ok:
        hint = "use sf <= %d" % ok[-1]
    else:
        hint = "no sf fits at coding_rate=%d: use a lower coding_rate" % cr
        if bw != reg["bandwidths_hz"][-1]:
            hint += " or a wider bandwidth_hz"
    _fail(
        "%s a %d-byte frame takes %d ms on air, over %s (%s)"
        % (head, LARGEST_OWN_FRAME, ms, limit, hint)
    )


def _tx_power(d: dict, reg: dict, f: int, bw: int, board: str, preset: dict, gain: float) -> int:
    name = reg["name"]
    chip = preset["chip"]
    lo = boards.CHIP_POWER_RANGE[chip][0]
    board_max = preset["max_power_dbm"]
    eirp = regions.sub_band(reg, f, bw)[regions.SB_EIRP_DBM]
    region_max = eirp - gain
    hi = board_max if board_max <= region_max else region_max
    if hi < lo:
        _bad(
            "antenna_gain_dbi",
            gain,
            "leaves no legal power (%s max EIRP %d dBm, radio minimum %d dBm)" % (name, eirp, lo),
        )
    if "tx_power_dbm" not in d or d["tx_power_dbm"] is None:
        return TX_POWER_DEFAULT if lo <= TX_POWER_DEFAULT <= hi else hi
    p = d["tx_power_dbm"]
    if not _is_int(p):
        _bad("tx_power_dbm", p, "is not an integer (%d..%d dBm)" % (lo, hi))
    if p < lo or p > hi:
        if p > region_max:
            why = "%s max EIRP %d dBm at %d Hz, antenna_gain_dbi %s" % (name, eirp, f, gain)
        elif p > board_max:
            why = "board %s max %d dBm" % (board, board_max)
        else:
            why = "%s minimum %d dBm" % (chip, lo)
        _bad("tx_power_dbm", p, "is outside %d..%d (%s)" % (lo, hi, why))
    return p


def validate(d: Any) -> dict[str, Any]:
    """Check config dict `d`; return a new dict with every key set (defaults filled in)."""
    if not isinstance(d, dict):
        _fail("the config is not a JSON object")
    _check_keys("", d, TOP_KEYS)
    out = {}
    role = _choice(d, "role", "role", ROLES, "node")
    out["role"] = role
    board = _choice(d, "board", "board", boards.names())
    out["board"] = board
    region = _choice(d, "region", "region", REGIONS)
    out["region"] = region
    pins = _custom_pins(d, board)
    out["pins"] = pins
    preset = boards.get(board, pins)
    reg = regions.region(region)
    bw = _bandwidth(d, reg)
    out["bandwidth_hz"] = bw
    f = _frequency(d, reg, bw)
    out["frequency_hz"] = f
    _int(d, "sf", "sf", SF_MIN, SF_MAX)  # type and range first: its message names sf
    cr = _int(d, "coding_rate", "coding_rate", CR_MIN, CR_MAX, CR_DEFAULT)
    out["coding_rate"] = cr
    out["sf"] = _check_airtime(d, reg, f, bw, cr)
    gain = _number(d, "antenna_gain_dbi", "antenna_gain_dbi", 0, ANTENNA_GAIN_MAX, 0)
    out["antenna_gain_dbi"] = gain
    out["tx_power_dbm"] = _tx_power(d, reg, f, bw, board, preset, gain)
    out["network_key"] = _network_key(d)
    out["capacities"] = _capacities(d)
    amin = _int(
        d,
        "announce_interval_min_s",
        "announce_interval_min_s",
        ANNOUNCE_MIN_S,
        ANNOUNCE_MAX_S,
        ANNOUNCE_DEFAULT_MIN_S,
    )
    amax = _int(
        d,
        "announce_interval_max_s",
        "announce_interval_max_s",
        ANNOUNCE_MIN_S,
        ANNOUNCE_MAX_S,
        ANNOUNCE_DEFAULT_MAX_S,
    )
    if amin > amax:
        _bad(
            "announce_interval_min_s",
            amin,
            "is above announce_interval_max_s=%d (need min <= max)" % amax,
        )
    out["announce_interval_min_s"] = amin
    out["announce_interval_max_s"] = amax
    out["score_weights"] = _score_weights(d)
    uart = _uart(d, role)
    out["uart"] = uart
    out["sim"] = _sim(d)
    out["node"] = node_options(d.get("node"))
    out["bridge"] = _bridge(d.get("bridge"))
    uses = _pin_uses(preset, "pins." if pins is not None else f"board {board} ")
    if uart is not None and uart["id"] not in (0, None):
        uses.append(("uart.tx", uart["tx"]))
        uses.append(("uart.rx", uart["rx"]))
    _check_clashes(uses)
    return out


def loads(text: str) -> dict[str, Any]:
    """Parse JSON text and validate it."""
    try:
        data = json.loads(text)
    except ValueError as e:
        _fail(f"not valid JSON ({str(e)[:_SHOW_MAX]})")
    return validate(data)


def load(path: str) -> dict[str, Any]:
    """Read and validate the JSON config file at `path`."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        _fail(f"cannot read {path} ({e})")
    except UnicodeDecodeError as e:
        _fail(f"{path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})")
    return loads(text)


def radio(cfg: dict) -> dict[str, Any]:
    """The board preset (pins, chip, power limit) for a validated config."""
    return boards.get(cfg["board"], cfg["pins"])


def board_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """What the board reads (config.json): the validated `cfg` with its channel's
    duty-cycle numbers, the region's index and the board preset added."""
    out = dict(cfg)
    budget, window, dwell = regions.channel_limits(
        cfg["region"], cfg["frequency_hz"], cfg["bandwidth_hz"]
    )
    out["duty"] = {"budget_ms": budget, "window_ms": window, "dwell_ms": dwell}
    out["region_index"] = regions.REGION_NAMES.index(cfg["region"])
    out["radio"] = None if cfg["sim"] else radio(cfg)
    return out


def network_key_bytes(cfg: dict) -> bytes:
    """The network key of a validated config as 32 bytes."""
    import binascii

    return binascii.unhexlify(cfg["network_key"])
