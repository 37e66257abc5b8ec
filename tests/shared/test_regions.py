"""The region table (lorawire.regions) on CPython and inside the unix port."""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lorawire import regions
from lorawire.regions import (
    REGION_NAMES,
    SB_DUTY_PPM,
    SB_DWELL_MS,
    SB_EIRP_DBM,
    SB_HI,
    SB_LO,
    check_bandwidth,
    default_channels,
    dwell_limit_ms,
    max_eirp_dbm,
    region,
    sub_band,
    sub_band_index,
)
from upy import run_upy


def test_all_six_regions_present() -> None:
    assert REGION_NAMES == ("EU868", "US915", "AU915", "AS923", "IN865", "KR920")
    for name in REGION_NAMES:
        assert region(name)["name"] == name
        assert region(name.lower()) is region(name)


@pytest.mark.parametrize("bad", ["EU433", "", None, 868, b"EU868"])
def test_unknown_region_names_the_allowed_ones(bad: object) -> None:
    with pytest.raises(ValueError, match="allowed: EU868, US915, AU915, AS923, IN865, KR920"):
        region(bad)


@pytest.mark.parametrize(
    ("freq", "lo", "hi", "ppm", "eirp"),
    [
        (863100000, 863000000, 865000000, 1000, 16),  # 0.1 %
        (864999999, 863000000, 865000000, 1000, 16),
        (865000000, 865000000, 868000000, 10000, 16),  # shared edge -> upper band
        (867900000, 865000000, 868000000, 10000, 16),  # 1 %
        (868100000, 868000000, 868600000, 10000, 16),  # 1 %
        (868500000, 868000000, 868600000, 10000, 16),
        (868800000, 868700000, 869200000, 1000, 16),  # 0.1 %
        (869525000, 869400000, 869650000, 100000, 29),  # 10 %, 500 mW ERP
        (869850000, 869700000, 870000000, 10000, 16),  # 1 %
    ],
)
def test_eu868_sub_bands(freq: int, lo: int, hi: int, ppm: int, eirp: int) -> None:
    band = sub_band("EU868", freq)
    assert band == (lo, hi, ppm, eirp, 0)
    assert max_eirp_dbm("EU868", freq) == eirp


@pytest.mark.parametrize("freq", [862999999, 868650000, 869300000, 869675000, 870000000, 915e6])
def test_eu868_gaps_and_outside_rejected(freq: float) -> None:
    with pytest.raises(ValueError) as err:
        sub_band("EU868", freq)
    msg = str(err.value)
    assert "EU868" in msg or "integer" in msg
    if isinstance(freq, int):
        assert str(freq) in msg
        assert "863000000-865000000" in msg and "869700000-870000000" in msg


def test_channel_must_fit_inside_a_sub_band() -> None:
    assert sub_band_index("EU868", 868100000, 125000) == 2
    assert sub_band_index("EU868", 868300000, 250000) == 2  # LoRaWAN DR6 (SF7/BW250) channel
    with pytest.raises(ValueError, match="868100000 Hz .bandwidth 250000 Hz"):
        sub_band("EU868", 868100000, 250000)  # 867.975-868.225 crosses 868.0
    with pytest.raises(ValueError, match="868550000 Hz .bandwidth 125000 Hz"):
        sub_band("EU868", 868550000, 125000)  # 868.4875-868.6125 crosses 868.6
    with pytest.raises(ValueError, match="864950000"):
        sub_band("EU868", 864950000, 125000)  # crosses 865.0 (0.1 % / 1 % boundary)
    assert sub_band("EU868", 864950000)[SB_DUTY_PPM] == 1000  # centre alone: 0.1 % band
    with pytest.raises(ValueError, match="bandwidth"):
        sub_band("EU868", 868100000, -1)


def test_dwell_times() -> None:
    assert dwell_limit_ms("US915", 902300000) == 400
    assert dwell_limit_ms("US915", 902300000, 125000) == 400
    assert dwell_limit_ms("US915", 903000000, 500000) == 0  # 500 kHz: no dwell limit
    assert dwell_limit_ms("AU915", 915900000, 500000) == 400  # applied to every width
    assert dwell_limit_ms("AS923", 923200000) == 400
    for name, f in (("EU868", 868100000), ("IN865", 865062500), ("KR920", 922100000)):
        assert dwell_limit_ms(name, f) == 0


def test_duty_cycle_per_region() -> None:
    assert sub_band("US915", 915000000)[SB_DUTY_PPM] == regions.PPM  # no duty cycle
    assert sub_band("AU915", 920000000)[SB_DUTY_PPM] == regions.PPM
    assert sub_band("IN865", 866000000)[SB_DUTY_PPM] == regions.PPM
    assert sub_band("KR920", 922100000)[SB_DUTY_PPM] == regions.PPM
    assert sub_band("AS923", 923200000)[SB_DUTY_PPM] == 10000  # modelled 1 % (conservative)


def test_power_limits() -> None:
    assert max_eirp_dbm("KR920", 921100000) == 10
    assert max_eirp_dbm("KR920", 922100000) == 14
    assert max_eirp_dbm("US915", 902300000) == 30
    assert max_eirp_dbm("AU915", 915200000) == 30
    assert max_eirp_dbm("AS923", 923200000) == 16
    assert max_eirp_dbm("IN865", 865062500) == 30
    assert region("EU868")["default_eirp_dbm"] == 16


def test_kr920_listen_before_talk_parameters() -> None:
    assert region("KR920")["lbt"] == (-65, 6)
    for name in REGION_NAMES:
        if name != "KR920":
            assert region(name)["lbt"] is None


@pytest.mark.parametrize(
    ("name", "count", "first"),
    [
        ("EU868", 3, (868100000, 125000)),
        ("US915", 80, (902300000, 125000)),
        ("AU915", 80, (915200000, 125000)),
        ("AS923", 2, (923200000, 125000)),
        ("IN865", 3, (865062500, 125000)),
        ("KR920", 3, (922100000, 125000)),
    ],
)
def test_default_channels_fit_their_region(name: str, count: int, first: tuple) -> None:
    chans = default_channels(name)
    assert len(chans) == count
    assert chans[0] == first
    for f, bw in chans:
        sub_band(name, f, bw)  # whole channel inside one sub-band, else ValueError
        check_bandwidth(name, bw)
    if name == "US915":
        assert chans[63] == (914900000, 125000)
        assert chans[64] == (903000000, 500000)
        assert chans[-1] == (927500000, 500000)


@pytest.mark.parametrize("name", REGION_NAMES)
def test_table_is_consistent(name: str) -> None:
    reg = region(name)
    bands = reg["sub_bands"]
    assert bands, name
    prev_hi = reg["freq_min_hz"]
    for band in bands:
        assert len(band) == 5
        assert prev_hi <= band[SB_LO] < band[SB_HI] <= reg["freq_max_hz"]  # sorted, disjoint
        assert 0 < band[SB_DUTY_PPM] <= regions.PPM
        assert band[SB_DWELL_MS] >= 0
        assert band[SB_EIRP_DBM] <= reg["max_eirp_dbm"]
        prev_hi = band[SB_HI]
    assert reg["max_eirp_dbm"] == max(b[SB_EIRP_DBM] for b in bands)
    assert bands[0][SB_LO] == reg["freq_min_hz"] and bands[-1][SB_HI] == reg["freq_max_hz"]


def test_check_bandwidth() -> None:
    assert check_bandwidth("EU868", 250000) == 250000
    with pytest.raises(ValueError, match="500000 Hz not allowed in EU868; allowed: 125000, 250000"):
        check_bandwidth("EU868", 500000)
    with pytest.raises(ValueError, match="KR920"):
        check_bandwidth("KR920", 250000)


@given(name=st.sampled_from(REGION_NAMES), freq=st.integers(800000000, 1000000000))
def test_lookup_total(name: str, freq: int) -> None:
    """Any frequency either lands in a band that contains it or raises ValueError."""
    try:
        band = sub_band(name, freq)
    except ValueError as err:
        assert str(freq) in str(err)
        reg = region(name)
        assert not any(b[SB_LO] <= freq < b[SB_HI] for b in reg["sub_bands"])
        return
    assert band[SB_LO] <= freq < band[SB_HI]


SUMMARY = """
from lorawire import regions
for name in regions.REGION_NAMES:
    r = regions.region(name)
    print(name, r["freq_min_hz"], r["freq_max_hz"], r["max_eirp_dbm"], r["lbt"])
    for b in r["sub_bands"]:
        print(" ", b)
    ch = regions.default_channels(name)
    print(" ", len(ch), ch[0], ch[-1], sum(f for f, _ in ch))
for f in (862999999, 868100000, 868650000, 869525000, 870000000):
    try:
        print(f, regions.sub_band("EU868", f))
    except ValueError as e:
        print("ValueError", e)
print(regions.dwell_limit_ms("US915", 903000000, 500000))
print(regions.dwell_limit_ms("US915", 902300000))
"""


@pytest.mark.upy
def test_summary_identical_on_both_runtimes() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(SUMMARY, "<summary>", "exec"), {"__name__": "__summary__"})
    expected = out.getvalue()
    assert "ValueError frequency 868650000 Hz is outside the EU868 sub-bands" in expected
    # the region tables are host code (a board gets its channel's numbers in its config)
    assert run_upy(SUMMARY, heap="256K").stdout == expected
