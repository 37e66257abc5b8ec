"""Peer scoring: integer fixed point, updated incrementally, decayed lazily.

score (0..1000) = weighted mean of
  reliability  (S + 1) / (S + F + 2)     S: pings answered + unicasts acknowledged,
                                         F: pings and unicasts that went unanswered
  link         weighted mean of RSSI, SNR and ping RTT, each mapped linearly to 0..1000
               between a configured floor and ceiling (unknown -> 500)
  behaviour    (V + 1) / (V + I + 2)     V: valid frames heard, I: invalid ones reported
The +1/+2 (Laplace) terms give a newcomer 500 on reliability and behaviour, so it has to
earn more than that.

Event counters are kept in Q8 (x256) and decay with a half-life: when an event arrives,
the counters of that one peer are first decayed for the time elapsed since their last
decay, then the event is added and the score recomputed — O(1) per event, no timer and
no rescan. The decay factor 2**(-t/half_life) comes from a 16-entry table (steps of a
sixteenth of a half-life) and shifts, never `math.exp`; all intermediate values stay
below 2**30 so nothing becomes a heap-allocated long int on the ESP32.

RSSI and SNR are moving averages (EWMA, alpha 1/8) in Q4 (x16) dBm / dB; RTT is an EWMA
in ms.
"""

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int


Q = const(256)  # counter scale: one event adds Q
COUNT_CAP = 255 * Q  # counters saturate, so decay products stay small ints
SCORE_MAX = const(1000)
NEUTRAL = const(500)
RSSI_NONE = const(-32768)  # no direct reception yet (Q4 value)
SNR_NONE = const(-32768)
RTT_NONE = const(-1)
EWMA_SHIFT = const(3)  # alpha = 1/8

# round(4096 * 2**(-k/16)) for k in 0..15
_FRAC = (
    4096,
    3922,
    3756,
    3597,
    3444,
    3298,
    3158,
    3025,
    2896,
    2774,
    2656,
    2543,
    2435,
    2332,
    2233,
    2139,
)

DEFAULTS = {
    "w_reliability": 4,
    "w_link": 3,
    "w_behaviour": 3,
    "w_rssi": 1,
    "w_snr": 1,
    "w_rtt": 1,
    "half_life_ms": 3600000,
    "rssi_floor": -130,
    "rssi_ceil": -60,
    "snr_floor": -20,
    "snr_ceil": 10,
    "rtt_good_ms": 500,
    "rtt_bad_ms": 20000,
}


def ewma(avg, sample, shift=EWMA_SHIFT):
    """Integer EWMA step; callers store the first sample as is (no average yet)."""
    return avg + ((sample - avg) >> shift)


def _linear(value, floor, ceil):
    if value <= floor:
        return 0
    if value >= ceil:
        return SCORE_MAX
    return (value - floor) * SCORE_MAX // (ceil - floor)


class Scorer:
    """Weights and decay parameters; `config` overrides any key of DEFAULTS."""

    def __init__(self, config=None):
        c = {}
        for k in DEFAULTS:
            c[k] = DEFAULTS[k]
        if config:
            for k in config:
                if k not in DEFAULTS:
                    raise ValueError("unknown score setting: " + str(k))
                c[k] = config[k]
        self.config = c
        hl = int(c["half_life_ms"])
        if hl < 16:
            raise ValueError("half_life_ms too small")
        self.half_life_ms = hl
        self.step_ms = hl // 16
        self._wr = c["w_reliability"]
        self._wl = c["w_link"]
        self._wb = c["w_behaviour"]
        self._wsum = self._wr + self._wl + self._wb
        self._w_rssi = c["w_rssi"]
        self._w_snr = c["w_snr"]
        self._w_rtt = c["w_rtt"]
        self._lsum = self._w_rssi + self._w_snr + self._w_rtt
        if self._wsum <= 0 or self._lsum <= 0:
            raise ValueError("score weights must add up to more than 0")
        self._rssi_lo = c["rssi_floor"] * 16
        self._rssi_hi = c["rssi_ceil"] * 16
        self._snr_lo = c["snr_floor"] * 16
        self._snr_hi = c["snr_ceil"] * 16
        self._rtt_good = c["rtt_good_ms"]
        self._rtt_bad = c["rtt_bad_ms"]

    def steps(self, dt_ms):
        """Whole sixteenths of a half-life in dt_ms (0 for negative)."""
        if dt_ms <= 0:
            return 0
        return dt_ms // self.step_ms

    def decay(self, value, steps):
        """value * 2**(-steps/16), for non-negative value < 2**18."""
        if steps <= 0 or value <= 0:
            return value
        whole = steps >> 4
        if whole >= 24:
            return 0
        return ((value >> whole) * _FRAC[steps & 15]) >> 12

    def link(self, rssi_q4, snr_q4, rtt_ms):
        if rssi_q4 == RSSI_NONE:
            r = NEUTRAL
        else:
            r = _linear(rssi_q4, self._rssi_lo, self._rssi_hi)
        if snr_q4 == SNR_NONE:
            s = NEUTRAL
        else:
            s = _linear(snr_q4, self._snr_lo, self._snr_hi)
        if rtt_ms < 0:
            t = NEUTRAL
        else:
            t = SCORE_MAX - _linear(rtt_ms, self._rtt_good, self._rtt_bad)
        return (self._w_rssi * r + self._w_snr * s + self._w_rtt * t) // self._lsum

    def compute(self, succ, fail, valid, invalid, rssi_q4, snr_q4, rtt_ms):
        """Score 0..1000 from Q8 counters and link averages."""
        rel = (succ + Q) * SCORE_MAX // (succ + fail + 2 * Q)
        beh = (valid + Q) * SCORE_MAX // (valid + invalid + 2 * Q)
        lnk = self.link(rssi_q4, snr_q4, rtt_ms)
        return (self._wr * rel + self._wl * lnk + self._wb * beh) // self._wsum
