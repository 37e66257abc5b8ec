"""LoRa time on air (Semtech SX127x formula) and a sliding-window duty-cycle accountant."""

# Time on air, from the SX1276/77/78/79 datasheet section 4.1.1.7 (same formula in AN1200.13,
# "LoRa Modem Designer's Guide"):
#
#     T_sym      = 2^SF / BW
#     T_preamble = (n_preamble + 4.25) * T_sym
#     n_payload  = 8 + max(ceil((8 PL - 4 SF + 28 + 16 CRC - 20 IH) / (4 (SF - 2 DE)))
#                          * (CR + 4), 0)
#     T_packet   = T_preamble + n_payload * T_sym
#
# PL payload bytes, IH = 1 for implicit header (no PHY header), CRC = 1 with payload CRC,
# DE = 1 with low data rate optimisation, CR + 4 = `coding_rate` here (5..8 for 4/5..4/8).
# DE is switched on automatically when T_sym >= 16 ms (SF11 and SF12 at 125 kHz, SF12 at 250 kHz),
# as the datasheet mandates, unless the caller forces it with low_data_rate=True/False.
#
# SF6: on SX127x "implicit header mode is the only mode of operation possible" with SF6, so
# SF6 with explicit_header=True raises ValueError; pass explicit_header=False. The formula is
# otherwise the same (the SX126x SF5/SF6 variant with 6.25 preamble symbols does not apply).
#
# For the supported bandwidths a quarter symbol is a whole number of microseconds
# (2^SF * 2, 4 or 8 us / 4), so the time on air is computed exactly in integer microseconds and
# divided once: identical results on CPython and MicroPython.

from lorawire import regions

BANDWIDTHS_HZ = (125000, 250000, 500000)
SF_MIN = 6
SF_MAX = 12
MAX_PAYLOAD = 255
PREAMBLE_MIN = 6  # SX127x RegPreamble: 6..65535 symbols (+4.25 added by the modem)
PREAMBLE_MAX = 65535
LDRO_SYMBOL_US = 16000  # low data rate optimisation is mandated at T_sym >= 16 ms

DEFAULT_WINDOW_MS = 3600000  # regulators (ETSI EN 300 220) measure duty cycle over one hour
MAX_RECORDS = 64  # transmissions remembered per sub-band before merging (see _Ring.add)
NEVER = -1  # wait_ms: this transmission can never be sent (dwell or budget too small)


def _int_arg(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError("%s must be an integer %d..%d, got %r" % (name, lo, hi, value))
    return value


def _bool_arg(name, value):
    if value is not True and value is not False:
        raise ValueError("%s must be True or False, got %r" % (name, value))
    return value


def symbol_time_us(sf, bw_hz):
    """One LoRa symbol in microseconds (exact integer for 125/250/500 kHz)."""
    _int_arg("sf", sf, SF_MIN, SF_MAX)
    if isinstance(bw_hz, bool) or not isinstance(bw_hz, int) or bw_hz not in BANDWIDTHS_HZ:
        raise ValueError("bw_hz must be one of 125000, 250000, 500000, got %r" % (bw_hz,))
    return (1 << sf) * (1000000 // bw_hz)


def payload_symbols(
    payload_len, sf, coding_rate=5, explicit_header=True, crc=True, low_data_rate=False
):
    """Symbols after the preamble (PHY header + payload + CRC) per the datasheet formula."""
    ih = 0 if explicit_header else 1
    de = 1 if low_data_rate else 0
    num = 8 * payload_len - 4 * sf + 28 + (16 if crc else 0) - 20 * ih
    den = 4 * (sf - 2 * de)
    blocks = -(-num // den)  # ceil for a positive denominator
    if blocks < 0:
        blocks = 0
    return 8 + blocks * coding_rate


def time_on_air_us(
    payload_len,
    sf,
    bw_hz,
    coding_rate=5,
    preamble=8,
    explicit_header=True,
    crc=True,
    low_data_rate=None,
):
    """Time on air in whole microseconds (exact). Arguments as for time_on_air_ms."""
    _int_arg("payload_len", payload_len, 0, MAX_PAYLOAD)
    tsym = symbol_time_us(sf, bw_hz)
    _int_arg("coding_rate", coding_rate, 5, 8)
    _int_arg("preamble", preamble, PREAMBLE_MIN, PREAMBLE_MAX)
    _bool_arg("explicit_header", explicit_header)
    _bool_arg("crc", crc)
    if low_data_rate is None:
        low_data_rate = tsym >= LDRO_SYMBOL_US
    else:
        _bool_arg("low_data_rate", low_data_rate)
    if sf == 6 and explicit_header:
        raise ValueError("SF6 needs an implicit header on SX127x: pass explicit_header=False")
    n = payload_symbols(payload_len, sf, coding_rate, explicit_header, crc, low_data_rate)
    # (preamble + 4.25 + n) symbols, counted in quarter symbols (tsym is divisible by 4).
    return (4 * preamble + 17 + 4 * n) * (tsym // 4)


def time_on_air_ms(
    payload_len,
    sf,
    bw_hz,
    coding_rate=5,
    preamble=8,
    explicit_header=True,
    crc=True,
    low_data_rate=None,
):
    """Time on air of one LoRa packet in milliseconds (float).

    payload_len 0..255 bytes; sf 6..12; bw_hz 125000, 250000 or 500000; coding_rate 5..8
    (4/5..4/8); preamble 6..65535 symbols; low_data_rate None = automatic (T_sym >= 16 ms).
    Invalid arguments raise ValueError naming the argument and the allowed values.
    """
    us = time_on_air_us(
        payload_len, sf, bw_hz, coding_rate, preamble, explicit_header, crc, low_data_rate
    )
    return us / 1000


def _ceil_ms(airtime_ms):
    # Budgets are whole milliseconds; rounding each transmission up never under-counts.
    if isinstance(airtime_ms, bool) or not isinstance(airtime_ms, (int, float)):
        raise ValueError("airtime_ms must be a number >= 0, got %r" % (airtime_ms,))
    if not airtime_ms >= 0:  # also rejects NaN
        raise ValueError("airtime_ms must be a number >= 0, got %r" % (airtime_ms,))
    ms = int(airtime_ms)
    if ms < airtime_ms:
        ms += 1
    return ms


class _Ring:
    """Recent transmissions of one sub-band, oldest first, in preallocated lists.

    Each record holds (end, duration, background duration). Ends are kept non-decreasing:
    a record's end is raised to the previous record's end if smaller (it then counts a bit
    longer - conservative), so expired records are always at the head.
    """

    def __init__(self, cap):
        self.cap = cap
        self.end = [0] * cap
        self.dur = [0] * cap
        self.bg = [0] * cap
        self.head = 0
        self.n = 0
        self.used = 0
        self.bg_used = 0
        self.last_end = None

    def prune(self, horizon):
        """Drop records that ended at or before `horizon` (now - window)."""
        end = self.end
        while self.n and end[self.head] <= horizon:
            h = self.head
            self.used -= self.dur[h]
            self.bg_used -= self.bg[h]
            self.head = (h + 1) % self.cap
            self.n -= 1

    def add(self, end, dur, bg):
        if self.last_end is not None and end < self.last_end:
            end = self.last_end
        self.last_end = end
        if self.n == self.cap:
            self._merge()
        i = (self.head + self.n) % self.cap
        self.end[i] = end
        self.dur[i] = dur
        self.bg[i] = bg
        self.n += 1
        self.used += dur
        self.bg_used += bg

    def _merge(self):
        """Free one slot: merge the adjacent pair whose ends are closest.

        The merged record keeps the later end and the sum of both durations, so no airtime is
        lost and none of it expires earlier than it would have: the accountant may
        over-count for a while, it never under-counts.
        """
        cap = self.cap
        head = self.head
        end = self.end
        best = 0
        best_gap = None
        for k in range(self.n - 1):
            gap = end[(head + k + 1) % cap] - end[(head + k) % cap]
            if best_gap is None or gap < best_gap:
                best_gap = gap
                best = k
        i = (head + best) % cap
        j = (head + best + 1) % cap
        self.dur[j] += self.dur[i]
        self.bg[j] += self.bg[i]
        # Shift the older records up by one so the ring stays contiguous.
        for k in range(best, 0, -1):
            dst = (head + k) % cap
            src = (head + k - 1) % cap
            end[dst] = end[src]
            self.dur[dst] = self.dur[src]
            self.bg[dst] = self.bg[src]
        self.head = (head + 1) % cap
        self.n -= 1


class DutyCycle:
    """Sliding-window airtime accountant for one region, one budget per sub-band.

    Times are plain integer milliseconds from a monotonic, non-wrapping counter the caller
    supplies (on a board: accumulate time.ticks_diff into an int; never pass raw ticks_ms,
    which wraps). A now_ms smaller than one seen before raises ValueError.

    A transmission of d ms at time t occupies [t, t + d). The rule enforced: in every interval
    of window_ms, the airtime of transmissions touching it stays within
    budget_ms = window_ms * duty / 100 % (rounded down), and background traffic (announces,
    peer exchange: background=True) within half of that. Each transmission is charged whole,
    rounded up to a millisecond, for as long as any part of it lies in the window.

    Dwell time (US915, AU915, AS923): a single transmission longer than the sub-band's dwell
    limit is never allowed: can_send returns False and wait_ms returns NEVER (-1). The same
    holds for a transmission larger than the (background) budget. Callers drop such frames.
    In US915, pass bw_hz=500000 to can_send/wait_ms for the dwell-exempt 500 kHz channels;
    bw_hz=None means "assume the dwell limit applies".

    Memory: at most `max_records` (MAX_RECORDS) transmissions per sub-band, allocated once
    when a sub-band is first used; when full, the two adjacent records with the closest end
    times are merged (conservative, see _Ring._merge).
    """

    def __init__(self, region_name, window_ms=DEFAULT_WINDOW_MS, max_records=MAX_RECORDS):
        self.region = regions.region(region_name)
        self.window_ms = _int_arg("window_ms", window_ms, 1, 1 << 40)
        self.max_records = _int_arg("max_records", max_records, 2, 4096)
        self._rings = [None] * len(self.region["sub_bands"])
        self._last_now = None

    def _clock(self, now_ms):
        if isinstance(now_ms, bool) or not isinstance(now_ms, int):
            raise ValueError("now_ms must be an integer (monotonic ms), got %r" % (now_ms,))
        if self._last_now is not None and now_ms < self._last_now:
            raise ValueError(
                "now_ms went backwards: %d after %d (pass a monotonic, non-wrapping counter)"
                % (now_ms, self._last_now)
            )
        self._last_now = now_ms

    def _ring(self, idx, now_ms):
        ring = self._rings[idx]
        if ring is None:
            # _rings is preallocated [None] * n; mypy takes it for a list of None only
            ring = self._rings[idx] = _Ring(self.max_records)  # type: ignore[call-overload]
        ring.prune(now_ms - self.window_ms)
        return ring

    def budget_ms(self, freq_hz, background=False):
        """Airtime (ms) allowed per window on freq_hz's sub-band (half of it for background)."""
        band = regions.sub_band(self.region, freq_hz)
        budget = self.window_ms * band[regions.SB_DUTY_PPM] // regions.PPM
        return budget // 2 if background else budget

    def dwell_limit_ms(self, freq_hz, bw_hz=None):
        """Longest single transmission (ms) allowed at freq_hz, 0 = no limit."""
        return regions.dwell_limit_ms(self.region, freq_hz, bw_hz)

    def _never(self, freq_hz, ms, background, bw_hz):
        dwell = regions.dwell_limit_ms(self.region, freq_hz, bw_hz)
        if dwell and ms > dwell:
            return True
        return ms > self.budget_ms(freq_hz, background)

    def _fits(self, ring, ms, budget, background):
        if ring.used + ms > budget:
            return False
        return not background or ring.bg_used + ms <= budget // 2

    def can_send(self, freq_hz, airtime_ms, now_ms, background=False, bw_hz=None):
        """True if a transmission of airtime_ms starting at now_ms stays within the rules."""
        idx = regions.sub_band_index(self.region, freq_hz)
        ms = _ceil_ms(airtime_ms)
        self._clock(now_ms)
        _bool_arg("background", background)
        if self._never(freq_hz, ms, background, bw_hz):
            return False
        return self._fits(self._ring(idx, now_ms), ms, self.budget_ms(freq_hz), background)

    def wait_ms(self, freq_hz, airtime_ms, now_ms, background=False, bw_hz=None):
        """Milliseconds until can_send would be True (0 = now), or NEVER (-1).

        Assumes nothing else is recorded meanwhile; the answer is exact for the records held.
        """
        idx = regions.sub_band_index(self.region, freq_hz)
        ms = _ceil_ms(airtime_ms)
        self._clock(now_ms)
        _bool_arg("background", background)
        if self._never(freq_hz, ms, background, bw_hz):
            return NEVER
        ring = self._ring(idx, now_ms)
        budget = self.budget_ms(freq_hz)
        used = ring.used
        bg_used = ring.bg_used
        if used + ms <= budget and (not background or bg_used + ms <= budget // 2):
            return 0
        cap = ring.cap
        for k in range(ring.n):
            i = (ring.head + k) % cap
            used -= ring.dur[i]
            bg_used -= ring.bg[i]
            if used + ms <= budget and (not background or bg_used + ms <= budget // 2):
                return ring.end[i] + self.window_ms - now_ms
        return NEVER  # unreachable: with every record expired the transmission fits

    def record(self, freq_hz, airtime_ms, now_ms, background=False):
        """Charge a transmission that started at now_ms (call it whether or not it was allowed)."""
        idx = regions.sub_band_index(self.region, freq_hz)
        ms = _ceil_ms(airtime_ms)
        self._clock(now_ms)
        _bool_arg("background", background)
        if ms == 0:
            return
        self._ring(idx, now_ms).add(now_ms + ms, ms, ms if background else 0)

    def used_ms(self, freq_hz, now_ms, background=False):
        """Airtime (ms) charged in the window ending at now_ms (background only if asked)."""
        idx = regions.sub_band_index(self.region, freq_hz)
        self._clock(now_ms)
        ring = self._ring(idx, now_ms)
        return ring.bg_used if background else ring.used
