"""Regional radio rules: frequency ranges, default channels, duty cycle, dwell time, power.

The host's table: the deploy tool turns it into the few numbers a board's config carries
(its channel's budget, window and dwell limit, lorawire.airtime.Budget), so a board never
imports this module. `DutyCycle` applies the rules per sub-band for the host's own
accounting (the simulator, the bridge shaper, tests).
"""

# One table for the deploy tool, the simulator and the gateway. Plain tuples and dicts,
# unchanged on MicroPython (the unix-port tests import it).
#
# Sources:
#   [RP002]  LoRa Alliance, LoRaWAN Regional Parameters RP002-1.0.x (per-region sections:
#            frequency plan, default channels, default max EIRP, UplinkDwellTime).
#   [ETSI]   ETSI EN 300 220-2 (SRD 25 MHz-1 GHz) with ERC Recommendation 70-03 Annex 1:
#            EU863-870 sub-bands, their duty cycles and ERP limits.
#   [LMN]    Semtech LoRaMac-node src/mac/region/Region*.h (reference implementation of RP002):
#            default channels, default max EIRP, KR920 LBT threshold and carrier-sense time.
#
# Sub-band tuple, indexed by the SB_* constants:
#   (lo_hz, hi_hz, duty_ppm, max_eirp_dbm, dwell_ms)
#   - a channel of centre f and bandwidth bw lies in the sub-band when
#     lo_hz <= f - bw/2 and f + bw/2 <= hi_hz; with bw = 0 the centre alone is tested on the
#     half-open range lo_hz <= f < hi_hz (so a shared edge belongs to the upper sub-band).
#   - duty_ppm: airtime allowed per window in parts per million (1 % = 10000); 1000000
#     means "no duty-cycle limit". Integers keep the arithmetic identical on every runtime.
#   - max_eirp_dbm: highest EIRP (dBm) allowed in that sub-band.
#   - dwell_ms: longest single transmission on one channel, 0 = no dwell limit.
#
# Region dict keys:
#   name, freq_min_hz, freq_max_hz, sub_bands (tuple of sub-band tuples, sorted by lo_hz),
#   channel_plan (default channels as rasters (first_hz, step_hz, count, bw_hz); expand them
#   with default_channels()), bandwidths_hz (LoRa bandwidths the RP002 data-rate table uses),
#   max_eirp_dbm (highest over its sub-bands), default_eirp_dbm (RP002 default max EIRP),
#   dwell_exempt_bw_hz (channels at least this wide are exempt from the dwell limit, 0 = none),
#   lbt (None, or (rssi_threshold_dbm, carrier_sense_ms) a listen-before-talk radio must apply).
# The dicts are shared: treat them as read-only.

SB_LO = 0
SB_HI = 1
SB_DUTY_PPM = 2
SB_EIRP_DBM = 3
SB_DWELL_MS = 4

PPM = 1000000  # duty_ppm meaning "no duty-cycle limit"

# ---- EU868 -----------------------------------------------------------------------
# [ETSI] gives power as ERP: 25 mW ERP = 14 dBm ERP; 500 mW ERP = 27 dBm ERP in 869.4-869.65.
# EIRP = ERP + 2.15 dB; like [RP002] ("default max EIRP +16 dBm") we round down: 16 and 29.
# The gaps 868.6-868.7, 869.2-869.4 and 869.65-869.7 MHz are other SRD uses (alarms etc.)
# and are deliberately absent, so a frequency there is rejected.
_EU868 = {
    "name": "EU868",
    "freq_min_hz": 863000000,
    "freq_max_hz": 870000000,
    "sub_bands": (
        (863000000, 865000000, 1000, 16, 0),  # 0.1 %
        (865000000, 868000000, 10000, 16, 0),  # 1 %
        (868000000, 868600000, 10000, 16, 0),  # 1 % (LoRaWAN default channels live here)
        (868700000, 869200000, 1000, 16, 0),  # 0.1 %
        (869400000, 869650000, 100000, 29, 0),  # 10 %, 500 mW ERP (27 dBm ERP)
        (869700000, 870000000, 10000, 16, 0),  # 1 %
    ),
    "channel_plan": ((868100000, 200000, 3, 125000),),  # [RP002] EU863-870
    "bandwidths_hz": (125000, 250000),
    "max_eirp_dbm": 29,
    "default_eirp_dbm": 16,
    "dwell_exempt_bw_hz": 0,
    "lbt": None,
}

# ---- US915 -----------------------------------------------------------------------
# [RP002] US902-928: no duty cycle; 400 ms dwell on the 125 kHz (frequency-hopping) channels,
# 500 kHz channels (FCC 15.247 digital modulation) have no dwell limit; +30 dBm max
# (conducted; FCC allows 36 dBm EIRP with a 6 dBi antenna, we keep the conservative 30).
# Default channels: 64 x 125 kHz from 902.3 MHz step 200 kHz, 8 x 500 kHz from 903.0 MHz
# step 1.6 MHz (uplink), 8 x 500 kHz from 923.3 MHz step 600 kHz (downlink).
_US915 = {
    "name": "US915",
    "freq_min_hz": 902000000,
    "freq_max_hz": 928000000,
    "sub_bands": ((902000000, 928000000, PPM, 30, 400),),
    "channel_plan": (
        (902300000, 200000, 64, 125000),
        (903000000, 1600000, 8, 500000),
        (923300000, 600000, 8, 500000),
    ),
    "bandwidths_hz": (125000, 500000),
    "max_eirp_dbm": 30,
    "default_eirp_dbm": 30,
    "dwell_exempt_bw_hz": 500000,
    "lbt": None,
}

# ---- AU915 -----------------------------------------------------------------------
# [RP002] AU915-928: no duty cycle; UplinkDwellTime = 1 (400 ms) by default ([LMN]
# AU915_DEFAULT_UPLINK_DWELL_TIME 1), which we apply to every bandwidth (conservative);
# default max EIRP +30 dBm. Channels: 64 x 125 kHz from 915.2 MHz step 200 kHz,
# 8 x 500 kHz from 915.9 MHz step 1.6 MHz, downlink 8 x 500 kHz from 923.3 MHz step 600 kHz.
_AU915 = {
    "name": "AU915",
    "freq_min_hz": 915000000,
    "freq_max_hz": 928000000,
    "sub_bands": ((915000000, 928000000, PPM, 30, 400),),
    "channel_plan": (
        (915200000, 200000, 64, 125000),
        (915900000, 1600000, 8, 500000),
        (923300000, 600000, 8, 500000),
    ),
    "bandwidths_hz": (125000, 500000),
    "max_eirp_dbm": 30,
    "default_eirp_dbm": 30,
    "dwell_exempt_bw_hz": 0,
    "lbt": None,
}

# ---- AS923 (AS923-1, frequency offset 0) -------------------------------------------
# [RP002] AS923: 915-928 MHz, default channels 923.2 and 923.4 MHz, default max EIRP +16 dBm,
# UplinkDwellTime = 1 (400 ms) by default. Duty cycle is left to local rules; we model 1 %
# (the band [LMN] defines: AS923_BAND0 duty 1 %) - conservative for the countries that use
# AS923 without a duty-cycle rule. AS923-2/3/4 (offset channel plans) are not modelled.
_AS923 = {
    "name": "AS923",
    "freq_min_hz": 915000000,
    "freq_max_hz": 928000000,
    "sub_bands": ((915000000, 928000000, 10000, 16, 400),),
    "channel_plan": ((923200000, 200000, 2, 125000),),
    "bandwidths_hz": (125000, 250000),
    "max_eirp_dbm": 16,
    "default_eirp_dbm": 16,
    "dwell_exempt_bw_hz": 0,
    "lbt": None,
}

# ---- IN865 -----------------------------------------------------------------------
# [RP002] IN865-867: no duty cycle, no dwell; default channels 865.0625, 865.4025, 865.985 MHz;
# default max EIRP +30 dBm; all data rates are 125 kHz.
_IN865 = {
    "name": "IN865",
    "freq_min_hz": 865000000,
    "freq_max_hz": 867000000,
    "sub_bands": ((865000000, 867000000, PPM, 30, 0),),
    "channel_plan": (
        (865062500, 0, 1, 125000),
        (865402500, 0, 1, 125000),
        (865985000, 0, 1, 125000),
    ),
    "bandwidths_hz": (125000,),
    "max_eirp_dbm": 30,
    "default_eirp_dbm": 30,
    "dwell_exempt_bw_hz": 0,
    "lbt": None,
}

# ---- KR920 -----------------------------------------------------------------------
# [RP002] KR920-923: channel centres 920.9-923.3 MHz on a 200 kHz raster (so the band edges
# are 920.8 and 923.4 MHz); max EIRP 10 dBm for 920.9-921.9 MHz and 14 dBm for 922.1-923.3 MHz
# ([LMN] KR920_DEFAULT_MAX_EIRP_LOW/HIGH); default channels 922.1, 922.3, 922.5 MHz; 125 kHz only.
# No duty cycle; instead listen-before-talk: the channel counts as free when the RSSI stays
# below -65 dBm for the carrier-sense time ([LMN] KR920_RSSI_FREE_TH -65, CARRIER_SENSE_TIME 6 ms).
# LBT needs the radio's RSSI, so this table only carries the parameters: the radio driver must
# sense before each transmission; the DutyCycle accountant does not model it.
_KR920 = {
    "name": "KR920",
    "freq_min_hz": 920800000,
    "freq_max_hz": 923400000,
    "sub_bands": (
        (920800000, 922000000, PPM, 10, 0),
        (922000000, 923400000, PPM, 14, 0),
    ),
    "channel_plan": ((922100000, 200000, 3, 125000),),
    "bandwidths_hz": (125000,),
    "max_eirp_dbm": 14,
    "default_eirp_dbm": 14,
    "dwell_exempt_bw_hz": 0,
    "lbt": (-65, 6),
}

REGIONS = {
    "EU868": _EU868,
    "US915": _US915,
    "AU915": _AU915,
    "AS923": _AS923,
    "IN865": _IN865,
    "KR920": _KR920,
}
REGION_NAMES = ("EU868", "US915", "AU915", "AS923", "IN865", "KR920")


def region(name):
    """The region dict for `name` (case-insensitive); ValueError naming the allowed names.

    A region dict is accepted too and returned as is, so helpers take either.
    """
    if isinstance(name, dict):
        return name
    if isinstance(name, str):
        found = REGIONS.get(name.upper())
        if found is not None:
            return found
    raise ValueError("unknown region %r; allowed: %s" % (name, ", ".join(REGION_NAMES)))


def _ranges(reg):
    return ", ".join("%d-%d" % (b[SB_LO], b[SB_HI]) for b in reg["sub_bands"])


def sub_band_index(reg, freq_hz, bw_hz=0):
    """Index into region's sub_bands of the band holding the channel; ValueError if none.

    `bw_hz` > 0 requires the whole channel (centre +- bw/2) to fit inside one sub-band.
    """
    reg = region(reg)
    if isinstance(freq_hz, bool) or not isinstance(freq_hz, int):
        raise ValueError("frequency must be an integer in Hz, got %r" % (freq_hz,))
    if isinstance(bw_hz, bool) or not isinstance(bw_hz, int) or bw_hz < 0:
        raise ValueError("bandwidth must be a non-negative integer in Hz, got %r" % (bw_hz,))
    bands = reg["sub_bands"]
    for i in range(len(bands)):
        b = bands[i]
        if bw_hz:
            if 2 * b[SB_LO] <= 2 * freq_hz - bw_hz and 2 * freq_hz + bw_hz <= 2 * b[SB_HI]:
                return i
        elif b[SB_LO] <= freq_hz < b[SB_HI]:
            return i
    if bw_hz:
        raise ValueError(
            "channel %d Hz (bandwidth %d Hz) fits in no %s sub-band; allowed Hz: %s"
            % (freq_hz, bw_hz, reg["name"], _ranges(reg))
        )
    raise ValueError(
        "frequency %d Hz is outside the %s sub-bands; allowed Hz: %s"
        % (freq_hz, reg["name"], _ranges(reg))
    )


def sub_band(reg, freq_hz, bw_hz=0):
    """The sub-band tuple (lo_hz, hi_hz, duty_ppm, max_eirp_dbm, dwell_ms) holding freq_hz."""
    reg = region(reg)
    return reg["sub_bands"][sub_band_index(reg, freq_hz, bw_hz)]


def max_eirp_dbm(reg, freq_hz):
    """Highest EIRP (dBm) allowed at freq_hz in the region."""
    return sub_band(reg, freq_hz)[SB_EIRP_DBM]


def dwell_limit_ms(reg, freq_hz, bw_hz=None):
    """Longest single transmission (ms) at freq_hz, 0 = no limit.

    With bw_hz None (unknown) the limit applies, which is the conservative reading.
    """
    reg = region(reg)
    dwell = sub_band(reg, freq_hz)[SB_DWELL_MS]
    exempt = reg["dwell_exempt_bw_hz"]
    if dwell and exempt and bw_hz is not None and bw_hz >= exempt:
        return 0
    return dwell


def check_bandwidth(reg, bw_hz):
    """ValueError unless bw_hz is one of the region's LoRa bandwidths."""
    reg = region(reg)
    if isinstance(bw_hz, bool) or bw_hz not in reg["bandwidths_hz"]:
        raise ValueError(
            "bandwidth %r Hz not allowed in %s; allowed: %s"
            % (bw_hz, reg["name"], ", ".join(str(b) for b in reg["bandwidths_hz"]))
        )
    return bw_hz


def default_channels(reg):
    """The region's default channels as a tuple of (freq_hz, bw_hz), built on demand."""
    out = []
    for first, step, count, bw in region(reg)["channel_plan"]:
        for i in range(count):
            out.append((first + step * i, bw))
    return tuple(out)


def channel_limits(reg, freq_hz, bw_hz, window_ms=None):
    """(budget_ms, window_ms, dwell_ms) of the channel: what a board's config carries."""
    from lorawire.airtime import DEFAULT_WINDOW_MS

    reg = region(reg)
    window = DEFAULT_WINDOW_MS if window_ms is None else window_ms
    band = sub_band(reg, freq_hz, bw_hz)
    return window * band[SB_DUTY_PPM] // PPM, window, dwell_limit_ms(reg, freq_hz, bw_hz)


class DutyCycle:
    """Sliding-window airtime accountant for one region, one airtime.Budget per sub-band.

    Times are integer milliseconds from a monotonic counter the caller supplies (any
    size: they are folded into ticks for the Budget); a now_ms smaller than one seen
    before raises ValueError. The rules are those of airtime.Budget, with each
    sub-band's duty cycle as its budget. Dwell time (US915, AU915, AS923): pass
    bw_hz=500000 to can_send/wait_ms for US915's dwell-exempt 500 kHz channels;
    bw_hz=None means "assume the dwell limit applies". A Budget is allocated when its
    sub-band is first used.
    """

    def __init__(self, region_name, window_ms=None, max_records=None):
        from lorawire import airtime

        self.region = region(region_name)
        self.window_ms = airtime.DEFAULT_WINDOW_MS if window_ms is None else window_ms
        self.max_records = airtime.MAX_RECORDS if max_records is None else max_records
        # the Budget constructor checks both
        airtime.Budget(0, self.window_ms, 0, self.max_records)
        self._budgets = [None] * len(self.region["sub_bands"])
        self._last_now = None

    def _budget(self, freq_hz, now_ms):
        from lorawire import airtime

        idx = sub_band_index(self.region, freq_hz)
        if isinstance(now_ms, bool) or not isinstance(now_ms, int):
            raise ValueError("now_ms must be an integer (monotonic ms), got %r" % (now_ms,))
        if self._last_now is not None and now_ms < self._last_now:
            raise ValueError(
                "now_ms went backwards: %d after %d (pass a monotonic counter)"
                % (now_ms, self._last_now)
            )
        self._last_now = now_ms
        b = self._budgets[idx]
        if b is None:
            ms = self.budget_ms(freq_hz)
            b = airtime.Budget(ms, self.window_ms, 0, self.max_records)
            self._budgets[idx] = b  # type: ignore[call-overload]  # [None] * n preallocates
        return b, now_ms & (airtime.TICKS_PERIOD - 1)

    def budget_ms(self, freq_hz, background=False):
        """Airtime (ms) allowed per window on freq_hz's sub-band (half of it for background)."""
        budget = self.window_ms * sub_band(self.region, freq_hz)[SB_DUTY_PPM] // PPM
        return budget // 2 if background else budget

    def dwell_limit_ms(self, freq_hz, bw_hz=None):
        """Longest single transmission (ms) allowed at freq_hz, 0 = no limit."""
        return dwell_limit_ms(self.region, freq_hz, bw_hz)

    def wait_ms(self, freq_hz, airtime_ms, now_ms, background=False, bw_hz=None):
        """Milliseconds until can_send would be True (0 = now), or NEVER (-1)."""
        from lorawire import airtime

        ms = airtime.ceil_ms(airtime_ms)
        b, now = self._budget(freq_hz, now_ms)
        airtime._flag("background", background)
        dwell = self.dwell_limit_ms(freq_hz, bw_hz)
        if dwell and ms > dwell:
            return airtime.NEVER
        return b.wait_ms(ms, now, background)

    def can_send(self, freq_hz, airtime_ms, now_ms, background=False, bw_hz=None):
        """True if a transmission of airtime_ms starting at now_ms stays within the rules."""
        return self.wait_ms(freq_hz, airtime_ms, now_ms, background, bw_hz) == 0

    def record(self, freq_hz, airtime_ms, now_ms, background=False):
        """Charge a transmission that started at now_ms (call it whether or not it was allowed)."""
        from lorawire import airtime

        ms = airtime.ceil_ms(airtime_ms)
        b, now = self._budget(freq_hz, now_ms)
        airtime._flag("background", background)
        b.record(ms, now, background)

    def used_ms(self, freq_hz, now_ms, background=False):
        """Airtime (ms) charged in the window ending at now_ms (background only if asked)."""
        b, now = self._budget(freq_hz, now_ms)
        return b.used_ms(now, background)

    def records_held(self, freq_hz):
        """Transmissions remembered for freq_hz's sub-band (at most max_records)."""
        b = self._budgets[sub_band_index(self.region, freq_hz)]
        return 0 if b is None else b.n
