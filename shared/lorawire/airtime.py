"""LoRa time on air (Semtech SX127x formula) and a sliding-window duty-cycle budget.

`Budget` keeps one channel's airtime over a sliding window in ticks: millisecond times
that wrap every TICKS_PERIOD (2**30 ms, about 12.4 days, as `time.ticks_ms` does on an
ESP32) and are compared only as differences, so a board that runs for months never
handles a long integer here. A board builds it from the numbers its config carries
(budget, dwell); the region tables that produce those numbers (lorawire.regions) stay on
the host, where `lorawire.regions.DutyCycle` applies them per sub-band.
"""

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
# SF6 with explicit_header=True raises ValueError; pass explicit_header=False.
#
# For the supported bandwidths a quarter symbol is a whole number of microseconds
# (2^SF * 2, 4 or 8 us / 4), so the time on air is computed exactly in integer microseconds and
# divided once: identical results on CPython and MicroPython.

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int


BANDWIDTHS_HZ = (125000, 250000, 500000)
SF_MIN = 6
SF_MAX = 12
MAX_PAYLOAD = 255
PREAMBLE_MIN = 6  # SX127x RegPreamble: 6..65535 symbols (+4.25 added by the modem)
PREAMBLE_MAX = 65535
LDRO_SYMBOL_US = 16000  # low data rate optimisation is mandated at T_sym >= 16 ms

DEFAULT_WINDOW_MS = 3600000  # regulators (ETSI EN 300 220) measure duty cycle over one hour
MAX_RECORDS = 64  # transmissions remembered per budget before merging (see Budget._merge)
NEVER = -1  # wait_ms: this transmission can never be sent (dwell or budget too small)
TICKS_PERIOD = 1 << 30
WINDOW_MAX_MS = (1 << 29) - 1  # a window must stay within half a ticks period

_MASK = const(0x3FFFFFFF)
_HALF = const(0x20000000)


def _arg(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError("%s must be an integer %d..%d, got %r" % (name, lo, hi, value))
    return value


def _flag(name, value):
    if value is not True and value is not False:
        raise ValueError("%s must be True or False, got %r" % (name, value))
    return value


def symbol_time_us(sf, bw_hz):
    """One LoRa symbol in microseconds (exact integer for 125/250/500 kHz)."""
    _arg("sf", sf, SF_MIN, SF_MAX)
    if isinstance(bw_hz, bool) or not isinstance(bw_hz, int) or bw_hz not in BANDWIDTHS_HZ:
        raise ValueError("bw_hz must be one of 125000, 250000, 500000, got %r" % (bw_hz,))
    return (1 << sf) * (1000000 // bw_hz)


def payload_symbols(
    payload_len, sf, coding_rate=5, explicit_header=True, crc=True, low_data_rate=False
):
    """Symbols after the preamble (PHY header + payload + CRC) per the datasheet formula."""
    num = 8 * payload_len - 4 * sf + 28 + (16 if crc else 0) - (0 if explicit_header else 20)
    den = 4 * (sf - (2 if low_data_rate else 0))
    blocks = -(-num // den)  # ceil for a positive denominator
    return 8 + (blocks if blocks > 0 else 0) * coding_rate


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
    _arg("payload_len", payload_len, 0, MAX_PAYLOAD)
    tsym = symbol_time_us(sf, bw_hz)
    _arg("coding_rate", coding_rate, 5, 8)
    _arg("preamble", preamble, PREAMBLE_MIN, PREAMBLE_MAX)
    _flag("explicit_header", explicit_header)
    _flag("crc", crc)
    if low_data_rate is None:
        low_data_rate = tsym >= LDRO_SYMBOL_US
    else:
        _flag("low_data_rate", low_data_rate)
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
    return (
        time_on_air_us(
            payload_len, sf, bw_hz, coding_rate, preamble, explicit_header, crc, low_data_rate
        )
        / 1000
    )


def airtime_ms(payload_len, sf, bw_hz, coding_rate=5):
    """Time on air in whole milliseconds, rounded up: what a Budget charges."""
    return -(-time_on_air_us(payload_len, sf, bw_hz, coding_rate) // 1000)


def ceil_ms(airtime):
    """A transmission's charge: whole milliseconds, rounded up (never under-counts)."""
    if isinstance(airtime, bool) or not isinstance(airtime, (int, float)) or not airtime >= 0:
        raise ValueError("airtime_ms must be a number >= 0, got %r" % (airtime,))
    ms = int(airtime)
    return ms + 1 if ms < airtime else ms


# Tick arithmetic that never leaves the 31-bit small-int range of a 32-bit board: a
# temporary of 2**30 or more (t + ms near the wrap, or now - then + 2**29) would be a
# long int allocated on every call. Both take ticks in 0..2**30 - 1.


def ticks_since(now, then):
    """now - then for ticks (signed, correct while the distance is below 2**29 ms)."""
    d = (now - then) & _MASK
    return d - _HALF - _HALF if d >= _HALF else d


def ticks_add(t, ms):
    """The tick `ms` after tick t (before it for ms < 0), for |ms| <= 2**29."""
    r = t - _HALF + ms
    if r >= _HALF:
        return r - _HALF
    r += _HALF
    return r if r >= 0 else r + _HALF + _HALF


class Budget:
    """The airtime of one channel within a sliding window, with a dwell limit.

    A transmission of d ms at tick t occupies [t, t + d). The rule enforced: in every
    interval of window_ms, the airtime of the transmissions touching it stays within
    budget_ms, and background traffic (announces, peer exchange) within half of that.
    Each transmission is charged whole, rounded up to a millisecond, for as long as any
    part of it lies in the window. A single transmission longer than dwell_ms (0: no
    limit), or than the (background) budget, is never allowed: wait_ms says NEVER.

    Times are ticks (wrapping at TICKS_PERIOD, see the module docstring). At most
    `max_records` transmissions are remembered, in preallocated lists; when full, the two
    adjacent records with the closest ends are merged into one that keeps the later end
    and the sum of both durations: it may over-count for a while, never under-count. No
    method allocates.
    """

    def __init__(self, budget_ms, window_ms=DEFAULT_WINDOW_MS, dwell_ms=0, max_records=MAX_RECORDS):
        self.window_ms = _arg("window_ms", window_ms, 1, WINDOW_MAX_MS)
        self.budget = _arg("budget_ms", budget_ms, 0, window_ms)
        self.dwell_ms = _arg("dwell_ms", dwell_ms, 0, window_ms)
        self.cap = _arg("max_records", max_records, 2, 4096)
        self.end = [0] * self.cap
        self.dur = [0] * self.cap
        self.bg = [0] * self.cap
        self.head = 0
        self.n = 0
        self.used = 0
        self.bg_used = 0

    def budget_ms(self, background=False):
        return self.budget // 2 if background else self.budget

    def _prune(self, now):
        cap = self.cap
        while self.n and ticks_since(now, self.end[self.head]) >= self.window_ms:
            h = self.head
            self.used -= self.dur[h]
            self.bg_used -= self.bg[h]
            self.head = (h + 1) % cap
            self.n -= 1

    def _never(self, ms, background):
        return (self.dwell_ms and ms > self.dwell_ms) or ms > self.budget_ms(background)

    def _fits(self, used, bg_used, ms, background):
        return used + ms <= self.budget and (not background or bg_used + ms <= self.budget // 2)

    def wait_ms(self, ms, now, background=False):
        """Milliseconds until a transmission of `ms` (whole ms) fits: 0 now, NEVER never.

        Exact for the records held, assuming nothing else is charged meanwhile."""
        if self._never(ms, background):
            return NEVER
        self._prune(now)
        used = self.used
        bg_used = self.bg_used
        if self._fits(used, bg_used, ms, background):
            return 0
        cap = self.cap
        for k in range(self.n):
            i = (self.head + k) % cap
            used -= self.dur[i]
            bg_used -= self.bg[i]
            if self._fits(used, bg_used, ms, background):
                return ticks_since(self.end[i], now) + self.window_ms
        return NEVER  # unreachable: with every record expired the transmission fits

    def can_send(self, ms, now, background=False):
        return self.wait_ms(ms, now, background) == 0

    def record(self, ms, now, background=False):
        """Charge a transmission of `ms` whole ms that started at tick `now`."""
        if ms <= 0:
            return
        self._prune(now)
        end = ticks_add(now, ms)
        cap = self.cap
        if self.n:
            last = self.end[(self.head + self.n - 1) % cap]
            if ticks_since(end, last) < 0:
                end = last  # ends stay ordered, so expired records are at the head
        if self.n == cap:
            self._merge()
        i = (self.head + self.n) % cap
        b = ms if background else 0
        self.end[i] = end
        self.dur[i] = ms
        self.bg[i] = b
        self.n += 1
        self.used += ms
        self.bg_used += b

    def used_ms(self, now, background=False):
        """Airtime charged in the window ending at `now` (background only if asked)."""
        self._prune(now)
        return self.bg_used if background else self.used

    def _merge(self):
        cap = self.cap
        head = self.head
        end = self.end
        best = 0
        best_gap = -1
        for k in range(self.n - 1):
            gap = ticks_since(end[(head + k + 1) % cap], end[(head + k) % cap])
            if best_gap < 0 or gap < best_gap:
                best_gap = gap
                best = k
        i = (head + best) % cap
        j = (i + 1) % cap
        self.dur[j] += self.dur[i]
        self.bg[j] += self.bg[i]
        for k in range(best, 0, -1):  # shift the older records up: the ring stays contiguous
            dst = (head + k) % cap
            src = (head + k - 1) % cap
            end[dst] = end[src]
            self.dur[dst] = self.dur[src]
            self.bg[dst] = self.bg[src]
        self.head = (head + 1) % cap
        self.n -= 1
