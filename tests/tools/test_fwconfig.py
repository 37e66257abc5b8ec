"""Firmware config schema and board presets (tools/deploy/fwconfig.py, boards.py).

The host validates a board's config (a board only reads what the deploy tool wrote):
one-line errors naming field, value and range; `board_config` adds what the board needs
instead of the region tables and presets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.deploy import boards
from tools.deploy import fwconfig as config

ROOT = Path(__file__).resolve().parents[2]

KEY = "0123456789abcdef" * 4
PRESETS = sorted(boards.BOARDS)


def base(**kw):
    d = {"board": "heltec-v3", "region": "EU868", "network_key": KEY}
    d.update(kw)
    return d


CUSTOM_1262 = {
    "chip": "sx1262",
    "sck": 9,
    "mosi": 10,
    "miso": 11,
    "cs": 8,
    "reset": 12,
    "busy": 13,
    "dio1": 14,
    "tcxo_mv": 1800,
}

# (id, config, field named in the message, fragment the message must contain)
INVALID = [
    (
        "freq-other-region",
        base(frequency_hz=915000000),
        "frequency_hz=915000000",
        "is outside EU868 (863000000..870000000)",
    ),
    ("freq-gap", base(frequency_hz=868650000), "frequency_hz=868650000", "sub-band"),
    ("freq-edge-bw", base(frequency_hz=869990000), "frequency_hz=869990000", "sub-band"),
    ("freq-float", base(frequency_hz=868.1e6), "frequency_hz=868100000.0", "not an integer"),
    ("power-region", base(tx_power_dbm=20), "tx_power_dbm=20", "-9..16 (EU868 max EIRP 16"),
    (
        "power-board",
        base(board="heltec-v2", region="US915", tx_power_dbm=22),
        "tx_power_dbm=22",
        "2..20 (board heltec-v2 max 20",
    ),
    ("power-gain", base(tx_power_dbm=14, antenna_gain_dbi=6), "tx_power_dbm=14", "-9..10"),
    ("power-low", base(board="tbeam-sx1276", tx_power_dbm=0), "tx_power_dbm=0", "2..16"),
    (
        "power-kr-low-band",
        base(region="KR920", frequency_hz=921100000, tx_power_dbm=14),
        "tx_power_dbm=14",
        "KR920 max EIRP 10",
    ),
    ("sf-high", base(sf=13), "sf=13", "is outside 7..12"),
    ("sf-6", base(sf=6), "sf=6", "is outside 7..12"),
    ("sf-dwell", base(region="US915", sf=12), "sf=12", "over US915's 400 ms dwell limit"),
    # a US915 node at SF9 could never send its 187-byte ANNOUNCE (944 ms > 400 ms dwell)
    (
        "sf-dwell-announce",
        base(region="US915", sf=9),
        "sf=9 with bandwidth_hz=125000",
        "a 187-byte frame takes 944 ms on air, over US915's 400 ms dwell limit (use sf <= 7)",
    ),
    (
        "cr-dwell-no-sf",
        base(region="US915", coding_rate=8),
        "coding_rate=8 with bandwidth_hz=125000",
        "at sf=7 a 187-byte frame takes 464 ms on air, over US915's 400 ms dwell limit (no sf",
    ),
    ("sf-dwell-au-wide", base(region="AU915", bandwidth_hz=500000, sf=10), "sf=10", "sf <= 9"),
    # EU868 0.1 % sub-band: an ANNOUNCE at SF12 (6.9 s) never fits the 1.8 s background share
    (
        "sf-duty-0.1%",
        base(frequency_hz=864100000, sf=12),
        "sf=12 with bandwidth_hz=125000",
        "takes 6890 ms on air, over the 1800 ms background share of EU868's 0.1 % duty cycle"
        " at frequency_hz=864100000 (use sf <= 10)",
    ),
    ("sf-duty-0.1%-cr8", base(frequency_hz=868900000, sf=10, coding_rate=8), "sf=10", "sf <= 9"),
    ("sf-bool", base(sf=True), "sf=true", "not an integer"),
    (
        "weights-fraction",
        base(score_weights={"reliability": 0.5, "performance": 0.25, "behaviour": 0.25}),
        "score_weights.reliability=0.5",
        "is not an integer (0..100)",
    ),
    (
        "weights-float-whole",
        base(score_weights={"reliability": 40.0}),
        "score_weights.reliability=40.0",
        "is not an integer (0..100)",
    ),
    ("sf-string", base(sf="9"), "sf='9'", "not an integer (7..12)"),
    ("bw-odd", base(bandwidth_hz=200000), "bandwidth_hz=200000", "not one of 125000"),
    ("bw-region", base(bandwidth_hz=500000), "bandwidth_hz=500000", "not allowed in EU868"),
    ("cr", base(coding_rate=9), "coding_rate=9", "is outside 5..8"),
    ("region", base(region="EU869"), "region='EU869'", "not one of EU868, US915"),
    ("region-missing", {"board": "heltec-v3", "network_key": KEY}, "region", "is missing"),
    ("board", base(board="heltec-v4"), "board='heltec-v4'", "not one of heltec-v2"),
    ("role", base(role="relay"), "role='relay'", "not one of node, bridge"),
    ("typo", base(spreading_factor=9), "unknown key spreading_factor", "allowed: role"),
    ("typo-section", base(capacities={"peer": 8}), "unknown key capacities.peer", "allowed: bans"),
    ("cap-high", base(capacities={"peers": 129}), "capacities.peers=129", "is outside 4..128"),
    ("cap-low", base(capacities={"reassembly": 0}), "capacities.reassembly=0", "is outside 1..8"),
    ("cap-type", base(capacities=[1, 2]), "capacities=[...]", "not an object"),
    ("key-short", base(network_key=KEY[:-2]), "network_key", "has 62 characters (need 64"),
    ("key-nonhex", base(network_key="zz" + KEY[2:]), "network_key", "non-hex character"),
    ("key-missing", {"board": "heltec-v3", "region": "EU868"}, "network_key", "is missing"),
    ("key-type", base(network_key=5), "network_key", "not a string"),
    (
        "announce-order",
        base(announce_interval_min_s=4000, announce_interval_max_s=3600),
        "announce_interval_min_s=4000",
        "is above announce_interval_max_s=3600",
    ),
    (
        "announce-low",
        base(announce_interval_min_s=10),
        "announce_interval_min_s=10",
        "is outside 30..86400",
    ),
    (
        "weights-zero",
        base(score_weights={"reliability": 0, "performance": 0, "behaviour": 0}),
        "score_weights",
        "all 0",
    ),
    (
        "weight-neg",
        base(score_weights={"behaviour": -1}),
        "score_weights.behaviour=-1",
        "is outside 0..100",
    ),
    ("uart-baud", base(role="bridge", uart={"baud": 12345}), "uart.baud=12345", "not one of"),
    ("uart-pins-missing", base(role="bridge", uart={"id": 1}), "uart.tx", "is missing"),
    (
        "uart-clash",
        base(role="bridge", uart={"id": 1, "tx": 8, "rx": 7}),
        "uart.tx=8",
        "already used by board heltec-v3 cs",
    ),
    (
        "uart0-pins",
        base(role="bridge", uart={"id": 0, "tx": 1}),
        "uart.tx=1",
        "must be null for uart.id=0",
    ),
    ("sim-port", base(sim={"medium_port": 70000}), "sim.medium_port=70000", "is outside 1..65535"),
    ("pins-on-preset", base(pins=CUSTOM_1262), "board='heltec-v3'", "pins is only allowed"),
    ("custom-no-pins", base(board="custom"), "pins", "is missing"),
    (
        "custom-busy-missing",
        base(board="custom", pins={**CUSTOM_1262, "busy": None}),
        "pins.busy",
        "is missing",
    ),
    (
        "custom-dio0-on-1262",
        base(board="custom", pins={**CUSTOM_1262, "dio0": 26}),
        "pins.dio0=26",
        "must be null for chip sx1262",
    ),
    (
        "custom-pin-range",
        base(board="custom", pins={**CUSTOM_1262, "cs": 49}),
        "pins.cs=49",
        "is outside 0..48",
    ),
    (
        "custom-clash",
        base(board="custom", pins={**CUSTOM_1262, "dio1": 8}),
        "pins.dio1=8",
        "already used by pins.cs",
    ),
    (
        "custom-tcxo",
        base(board="custom", pins={**CUSTOM_1262, "tcxo_mv": 5000}),
        "pins.tcxo_mv=5000",
        "is outside 1600..3300",
    ),
    ("not-object", [1, 2, 3], "config", "not a JSON object"),
    # the "node" section: the peer manager's runtime options, one case per option
    ("node-type", base(node=[1]), "node=[...]", "is not an object (keys: flood_burst"),
    ("node-typo", base(node={"hops": 3}), "unknown key node.hops", "allowed: flood_burst"),
    (
        "node-status-neg",
        base(node={"status_interval_s": -1}),
        "node.status_interval_s=-1",
        "is outside 0..86400",
    ),
    (
        "node-status-float",
        base(node={"status_interval_s": 1.5}),
        "node.status_interval_s=1.5",
        "is not an integer (0..86400)",
    ),
    ("node-hop-limit", base(node={"hop_limit": 16}), "node.hop_limit=16", "is outside 0..15"),
    ("node-relay", base(node={"relay": 1}), "node.relay=1", "is not true or false"),
    ("node-stdin", base(node={"stdin": "yes"}), "node.stdin='yes'", "is not true or false"),
    (
        "node-kind",
        base(node={"kind": "king"}),
        "node.kind='king'",
        "is not one of full, light, gateway, mesh",
    ),
    ("node-state-dir", base(node={"state_dir": ""}), "node.state_dir=''", "non-empty string"),
    ("node-state-dir-type", base(node={"state_dir": 5}), "node.state_dir=5", "directory path"),
    (
        "node-pex",
        base(node={"pex_interval_s": 86401}),
        "node.pex_interval_s=86401",
        "is outside 0..86400",
    ),
    (
        "node-ping",
        base(node={"ping_interval_s": True}),
        "node.ping_interval_s=true",
        "is not an integer (0..86400)",
    ),
    (
        "node-flood-rate",
        base(node={"flood_rate_per_min": -1}),
        "node.flood_rate_per_min=-1",
        "is outside 0..86400",
    ),
    (
        "node-flood-burst-off",
        base(node={"flood_burst": 0}),
        "node.flood_burst=0",
        "is outside 1..1000 while node.flood_rate_per_min=20 (0 turns the limit off)",
    ),
    (
        "node-flood-burst-high",
        base(node={"flood_burst": 1001}),
        "node.flood_burst=1001",
        "is outside 0..1000",
    ),
]


def _message(cfg: object) -> str:
    with pytest.raises(config.ConfigError) as err:
        config.validate(cfg)
    return str(err.value)


def test_invalid_table_is_large_enough():
    assert len(INVALID) >= 20
    assert len({case[0] for case in INVALID}) == len(INVALID)


@pytest.mark.parametrize(("name", "cfg", "field", "fragment"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_config_rejected_with_one_line(name, cfg, field, fragment):
    msg = _message(cfg)
    assert "\n" not in msg
    assert msg.startswith("config: ")
    assert field in msg, msg
    assert fragment in msg, msg
    assert isinstance(config.ConfigError(msg), ValueError)


def test_secret_key_never_in_message():
    bad = "g" + KEY[1:]
    msg = _message(base(network_key=bad))
    assert bad not in msg and KEY[1:20] not in msg


@pytest.mark.parametrize("board", PRESETS)
@pytest.mark.parametrize("region", config.REGIONS)
def test_defaults_validate_for_every_board_and_region(board, region):
    cfg = config.validate({"board": board, "region": region, "network_key": KEY.upper()})
    assert cfg["network_key"] == KEY  # normalised to lower case
    assert config.validate(cfg) == cfg  # a normalised config is a fixed point
    assert set(cfg) == set(config.TOP_KEYS)
    assert cfg["role"] == "node" and cfg["uart"] is None and cfg["pins"] is None
    assert config.SF_MIN <= cfg["sf"] <= config.SF_MAX
    assert cfg["tx_power_dbm"] <= boards.BOARDS[board]["max_power_dbm"]
    assert cfg["capacities"] == {k: v[2] for k, v in config.CAPACITIES.items()}


# (region, frequency_hz, bandwidth_hz, coding_rate) -> the SFs under which the largest own
# frame (a 187-byte ANNOUNCE) fits the dwell limit and the background duty-cycle share.
ALLOWED_SF = [
    (("US915", 902300000, 125000, 5), [7]),
    (("US915", 902300000, 125000, 8), []),
    (("US915", 903000000, 500000, 8), [7, 8, 9, 10, 11, 12]),  # dwell-exempt, no duty cycle
    (("AU915", 915200000, 125000, 5), [7]),
    (("AU915", 915900000, 500000, 5), [7, 8, 9]),
    (("AS923", 923200000, 125000, 5), [7]),
    (("AS923", 923200000, 250000, 5), [7, 8]),
    (("EU868", 868100000, 125000, 8), [7, 8, 9, 10, 11, 12]),  # 1 %
    (("EU868", 864100000, 125000, 5), [7, 8, 9, 10]),  # 0.1 %: 1800 ms background share
    (("EU868", 868900000, 125000, 8), [7, 8, 9]),
    (("EU868", 868900000, 250000, 5), [7, 8, 9, 10, 11]),
    (("EU868", 869525000, 125000, 8), [7, 8, 9, 10, 11, 12]),  # 10 %
    (("IN865", 865062500, 125000, 8), [7, 8, 9, 10, 11, 12]),
    (("KR920", 922100000, 125000, 8), [7, 8, 9, 10, 11, 12]),
]


@pytest.mark.parametrize(("channel", "sfs"), ALLOWED_SF, ids=[str(c[0]) for c in ALLOWED_SF])
def test_allowed_sf_is_what_the_node_can_send_its_largest_frame_with(channel, sfs):
    """Accepted sf <=> the node's DutyCycle can ever send a 187-byte background frame."""
    from lorawire import airtime, regions

    region, freq, bw, cr = channel
    assert config.LARGEST_OWN_FRAME == 187
    assert config.allowed_sfs(region, freq, bw, cr) == sfs
    for sf in range(config.SF_MIN, config.SF_MAX + 1):
        air = airtime.time_on_air_ms(config.LARGEST_OWN_FRAME, sf, bw, cr)
        duty = regions.DutyCycle(region)
        never = duty.wait_ms(freq, air, 0, True, bw) == airtime.NEVER  # what tx_never drops
        cfg = base(region=region, frequency_hz=freq, bandwidth_hz=bw, coding_rate=cr, sf=sf)
        if never:
            assert sf not in sfs
            msg = _message(cfg)
            assert msg.startswith(f"config: sf={sf} with bandwidth_hz={bw}: a 187-byte frame")
        else:
            assert sf in sfs
            assert config.validate(cfg)["sf"] == sf


def test_default_sf_is_9_where_it_fits_else_the_highest_that_does():
    assert config.validate(base())["sf"] == config.SF_DEFAULT == 9
    assert config.validate(base(region="US915"))["sf"] == 7
    assert config.validate(base(region="AS923", bandwidth_hz=250000))["sf"] == 8
    assert config.validate(base(region="US915", bandwidth_hz=500000))["sf"] == 9
    assert config.validate(base(frequency_hz=868900000, coding_rate=8))["sf"] == 9


def test_bridge_defaults_to_usb_console_uart():
    cfg = config.validate(base(role="bridge"))
    assert cfg["uart"] == {"id": 0, "baud": 115200, "tx": None, "rx": None}
    cfg = config.validate(base(role="bridge", uart={"id": 2, "tx": 17, "rx": 18, "baud": 921600}))
    assert cfg["uart"] == {"id": 2, "baud": 921600, "tx": 17, "rx": 18}


def test_region_power_follows_sub_band():
    # EU868 869.4-869.65 MHz allows 500 mW ERP: 22 dBm is legal there, not at 868.1 MHz.
    assert config.validate(base(frequency_hz=869525000, tx_power_dbm=22))["tx_power_dbm"] == 22
    _message(base(frequency_hz=868100000, tx_power_dbm=22))


def test_wide_channel_gets_a_default_frequency_inside_a_sub_band():
    assert config.validate(base(bandwidth_hz=250000))["frequency_hz"] == 868300000
    assert config.validate(base(region="US915", bandwidth_hz=500000))["frequency_hz"] == 903000000


def test_custom_board_takes_every_pin_from_config():
    cfg = config.validate(base(board="custom", pins=CUSTOM_1262))
    radio = config.radio(cfg)
    assert radio["chip"] == "sx1262" and radio["modem_api"] == "async"
    assert (radio["spi_id"], radio["sck"], radio["mosi"], radio["miso"]) == (1, 9, 10, 11)
    assert (radio["cs"], radio["busy"], radio["dio1"], radio["tcxo_mv"]) == (8, 13, 14, 1800)
    assert radio["dio2_rf_sw"] is True and radio["max_power_dbm"] == 22
    assert set(radio) == set(boards.BOARDS["heltec-v3"])  # same shape as a preset
    sx1276 = {"chip": "sx1276", "sck": 5, "mosi": 27, "miso": 19, "cs": 18, "dio0": 26}
    radio = config.radio(config.validate(base(board="custom", pins=sx1276)))
    assert radio["busy"] is None and radio["dio1"] is None and radio["max_power_dbm"] == 20
    assert radio["pa_boost"] is True
    rfo = config.validate(base(board="custom", pins={**sx1276, "pa_boost": False}))
    assert config.radio(rfo)["max_power_dbm"] == 14  # RFO output tops out at 14 dBm


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_consistent(name):
    p = boards.BOARDS[name]
    assert p["chip"] in boards.CHIPS
    assert set(p) == {*boards.CUSTOM_PIN_KEYS, "modem_api"}
    pins = [p[k] for k in ("sck", "mosi", "miso", "cs", "reset", "busy", "dio0", "dio1")]
    used = [x for x in pins if x is not None]
    assert len(used) == len(set(used)), "a pin is wired twice"
    assert all(0 <= x <= boards.MAX_GPIO for x in used)
    if p["chip"] == "sx1262":
        assert p["busy"] is not None and p["dio0"] is None and p["dio1"] is not None
        assert boards.packages(p) == ("lora-sx126x", "lora-async")
        assert not p["pa_boost"]
    else:
        assert p["busy"] is None and p["dio0"] is not None and p["tcxo_mv"] is None
        assert not p["dio2_rf_sw"] and p["pa_boost"]
        assert boards.packages(p) == ("lora-sx127x", "lora-async")
    lo, hi = boards.CHIP_POWER_RANGE[p["chip"]]
    assert lo <= p["max_power_dbm"] <= hi


def test_published_pin_maps():
    """Spot checks against the cited pin maps (see comments in boards.py)."""
    v3 = boards.BOARDS["heltec-v3"]
    assert (v3["sck"], v3["mosi"], v3["miso"]) == (9, 10, 11)
    assert (v3["cs"], v3["reset"], v3["busy"], v3["dio1"]) == (8, 12, 13, 14)
    assert v3["tcxo_mv"] == 1800 and v3["dio2_rf_sw"]
    v2 = boards.BOARDS["heltec-v2"]
    assert (v2["sck"], v2["mosi"], v2["miso"]) == (5, 27, 19)
    assert (v2["cs"], v2["reset"], v2["dio0"], v2["dio1"]) == (18, 14, 26, 35)
    tb = boards.BOARDS["tbeam-sx1262"]
    assert (tb["cs"], tb["reset"], tb["busy"], tb["dio1"]) == (18, 23, 32, 33)


def test_load_reads_json_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(base(sf=10)))
    assert config.load(str(path))["sf"] == 10
    path.write_text("{not json")
    msg = str(pytest.raises(config.ConfigError, config.load, str(path)).value)
    assert msg.startswith("config: not valid JSON") and "\n" not in msg
    msg = str(pytest.raises(config.ConfigError, config.load, str(tmp_path / "nope.json")).value)
    assert msg.startswith("config: cannot read") and "\n" not in msg
    path.write_bytes(b'{"board": "heltec-v3\xff"}')  # found by tools/fuzz
    msg = str(pytest.raises(config.ConfigError, config.load, str(path)).value)
    assert msg.endswith("is not UTF-8 text (byte 0xff at offset 20)") and "\n" not in msg


def test_network_key_bytes():
    assert config.network_key_bytes(config.validate(base())) == bytes.fromhex(KEY)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from(
    [
        *config.TOP_KEYS,
        "capacities.peers",
        "uart.id",
        "uart.tx",
        "pins.cs",
        "sim.name",
        "node.hop_limit",
        "node.kind",
        "node.flood_burst",
        "zzz",
    ]
)


@given(st.dictionaries(field_names, json_values, max_size=6))
def test_any_mutation_is_accepted_or_one_line_config_error(changes):
    cfg = base(role="bridge")
    for dotted, value in changes.items():
        head, _, tail = dotted.partition(".")
        if tail:
            section = cfg.get(head)
            if not isinstance(section, dict):
                section = {}
                cfg[head] = section
            section[tail] = value
        else:
            cfg[head] = value
    try:
        out = config.validate(cfg)
    except config.ConfigError as e:
        assert str(e).startswith("config: ") and "\n" not in str(e)
    else:
        assert config.validate(out) == out
        assert config.SF_MIN <= out["sf"] <= config.SF_MAX
        radio = config.radio(out)
        assert out["tx_power_dbm"] <= radio["max_power_dbm"]


def test_bridge_uart_may_be_a_tty_path_on_the_unix_port():
    cfg = config.validate(base(role="bridge", uart={"path": "/dev/pts/7"}))
    assert cfg["uart"]["path"] == "/dev/pts/7" and cfg["uart"]["id"] is None
    with pytest.raises(config.ConfigError, match="uart.path"):
        config.validate(base(role="bridge", uart={"path": ""}))


# ------------------------------------------------------------------ the "node" section

NODE_DEFAULTS = {
    "status_interval_s": 60,
    "state_dir": ".",
    "hop_limit": 3,
    "relay": True,
    "kind": "mesh",
    "pex_interval_s": 0,
    "ping_interval_s": 0,
    "stdin": True,
    "flood_rate_per_min": 20,
    "flood_burst": 10,
}


def test_node_section_defaults_and_values_kept():
    assert config.validate(base())["node"] == NODE_DEFAULTS
    assert config.node_options(None) == NODE_DEFAULTS
    given_ = {"kind": "gateway", "hop_limit": 0, "relay": False, "state_dir": "/st"}
    out = config.validate(base(node=dict(given_, flood_rate_per_min=0, flood_burst=0)))
    assert out["node"] == dict(NODE_DEFAULTS, **given_, flood_rate_per_min=0, flood_burst=0)
    assert config.validate(out) == out


def test_node_kinds_are_the_record_kinds():
    from lorawire import record

    assert config.NODE_KINDS == record.KIND_NAMES


def test_node_takes_its_options_from_the_validated_config(tmp_path):
    from loranode.node import Node
    from lorawire.identity import Identity

    class Radio:
        speed = 1.0
        name = "t"

    opts = {"kind": "gateway", "hop_limit": 5, "flood_rate_per_min": 30, "flood_burst": 2}
    cfg = config.validate(base(node=dict(opts, state_dir=str(tmp_path), stdin=False)))
    n = Node(config.board_config(cfg), Identity(bytes(range(32))), Radio())
    assert (n.kind, n.hop_limit, n.flood.rate, n.flood.full) == ("gateway", 5, 30, 2 * 60000)
    assert (tmp_path / "state.bin").exists()


node_sections = st.one_of(
    json_values,
    st.dictionaries(
        st.sampled_from([*config.NODE_KEYS, "zzz"]),
        json_values | st.integers(-5, 90000) | st.sampled_from(config.NODE_KINDS),
        max_size=5,
    ),
)


@given(node_sections)
def test_any_node_section_validates_or_is_one_line_config_error(sect):
    try:
        out = config.validate(base(node=sect))
    except config.ConfigError as e:
        msg = str(e)
        assert msg.startswith("config: ") and "\n" not in msg and "node" in msg
        with pytest.raises(config.ConfigError) as again:
            config.node_options(sect)
        assert str(again.value) == msg
        return
    opts = out["node"]
    assert tuple(sorted(opts)) == config.NODE_KEYS
    for name, (lo, hi, _) in config.NODE_INTS.items():
        assert type(opts[name]) is int and lo <= opts[name] <= hi
    for name in config.NODE_BOOLS:
        assert type(opts[name]) is bool
    assert opts["kind"] in config.NODE_KINDS
    assert isinstance(opts["state_dir"], str) and opts["state_dir"]
    assert opts["flood_burst"] >= 1 or opts["flood_rate_per_min"] == 0
    if isinstance(sect, dict):
        assert all(opts[k] == v for k, v in sect.items() if v is not None)
    assert config.validate(out) == out
    assert config.node_options(sect) == opts


def test_board_config_carries_the_channel_numbers_and_the_preset():
    cfg = config.validate(base(region="EU868", frequency_hz=869525000, sf=9))
    out = config.board_config(cfg)
    assert out["duty"] == {"budget_ms": 360000, "window_ms": 3600000, "dwell_ms": 0}  # 10 %
    assert out["region_index"] == 0 and out["radio"] == boards.get("heltec-v3")
    us = config.board_config(config.validate(base(region="US915", sf=7)))
    assert us["duty"]["dwell_ms"] == 400 and us["duty"]["budget_ms"] == 3600000
    sim = config.validate(base(sim={"medium_port": 9, "name": "n0"}))
    assert config.board_config(sim)["radio"] is None


def test_the_demo_bridges_config_passes_the_host_validator(tmp_path):
    # issue 13: the host validator refused the `bridge` section the demo's bridge uses.
    from tools.demo.network import Network
    from tools.ptycable import PtyCable

    net = Network(tmp_path / "demo", nodes=2)
    net.mesh.port = 47000  # where the medium would listen once started
    net.cable = PtyCable(net.link_path).start()  # the bridge's UART is a real pty
    try:
        cfg = net.bridge_config()
    finally:
        net.cable.close()
    assert cfg["role"] == "bridge" and cfg["bridge"] == {"stats_interval_s": 5}
    assert config.validate(base(role="bridge", bridge={"stats_interval_s": 5}))["bridge"] == {
        "stats_interval_s": 5
    }
    with pytest.raises(config.ConfigError, match="bridge.stats_interval_s"):
        config.validate(base(role="bridge", bridge={"stats_interval_s": -1}))
