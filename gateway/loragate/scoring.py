"""Per-peer score from reliability, performance and behaviour, 0..100 (50 = unknown).

Components, each in 0..1:

* **reliability** = mean of the handshake success ratio and the uptime fraction
  (those that have data). Ratios use a Beta prior of ``prior`` pseudo-events split
  evenly, so a peer with no history sits at 0.5 and a single event does not swing it.
* **performance** = mean of the sub-metrics that have samples: latency
  ``ref/(ref+x)``, getdata response time ``ref/(ref+x)``, throughput ``x/(x+ref)``,
  and for mesh peers RSSI and SNR mapped linearly onto 0..1 over
  ``rssi_range``/``snr_range``. EWMAs with factor ``ewma_alpha``. No samples: 0.5.
* **behaviour** = ``(valid + prior/2) / (valid + invalid_weight*invalid + prior)``.

Score = 100 x weighted mean of the three components (``ScoreWeights``; weights are
normalised, so only their ratios matter). The weights and the half-life are settings:
their defaults are ``config.ScoreSettings``'s, and ``weights_from(cfg.score)`` gives the
weights a gateway scores with (running or stopped); the other fields are constants of
the method.

**Decay:** every evidence counter (handshake successes/failures, up/down seconds,
valid/invalid messages) is multiplied by ``0.5 ** (dt / half_life_s)`` lazily, when the
peer is next touched or read: O(1), no timer rescans. Old evidence fades, so the score
drifts back towards 50 for a peer we have not heard from. Link EWMAs are averages,
not evidence, and do not decay.

``history`` keeps the last ``history_len`` events (time, name, value) for diagnostics.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from loragate.config import ScoreSettings

SCORE_MAX = 100.0
_SETTINGS = ScoreSettings()  # the defaults of the settings, from the one place
NEUTRAL = 0.5


@dataclass(frozen=True)
class ScoreWeights:
    reliability: float = _SETTINGS.reliability_weight
    performance: float = _SETTINGS.performance_weight
    behaviour: float = _SETTINGS.behaviour_weight
    half_life_s: float = _SETTINGS.half_life_s
    prior: float = 2.0
    invalid_weight: float = 10.0
    ewma_alpha: float = 0.2
    latency_ref_ms: float = 200.0
    response_ref_ms: float = 500.0
    throughput_ref_bps: float = 10_000.0
    rssi_range: tuple[float, float] = (-120.0, -60.0)
    snr_range: tuple[float, float] = (-20.0, 10.0)
    history_len: int = 32

    def __post_init__(self) -> None:
        ws = (self.reliability, self.performance, self.behaviour)
        if min(ws) < 0 or sum(ws) <= 0:
            raise ValueError("score weights must be >= 0 and not all zero")
        if self.half_life_s <= 0 or self.history_len < 1 or not 0 < self.ewma_alpha <= 1:
            raise ValueError("half-life, history length and EWMA factor must be positive")


DEFAULT_WEIGHTS = ScoreWeights()


def node_key(node_id: bytes) -> str:
    """The score key of a node, on TCP and on the mesh alike (``node:<16 hex>``)."""
    return f"node:{bytes(node_id).hex()}"


def weights_from(settings: ScoreSettings) -> ScoreWeights:
    """The weights the `[score]` settings describe."""
    return ScoreWeights(
        reliability=settings.reliability_weight,
        performance=settings.performance_weight,
        behaviour=settings.behaviour_weight,
        half_life_s=settings.half_life_s,
    )


_COUNTERS = ("hs_ok", "hs_fail", "up_s", "down_s", "valid", "invalid")
_EWMAS = ("latency_ms", "response_ms", "throughput_bps", "rssi", "snr")


def _ratio(good: float, bad: float, prior: float) -> float:
    return (good + prior / 2) / (good + bad + prior)


def _linear(x: float, lo: float, hi: float) -> float:
    return min(1.0, max(0.0, (x - lo) / (hi - lo)))


class PeerScore:
    """Score state of one peer. ``now`` is wall-clock seconds (time.time())."""

    __slots__ = ("weights", "updated", "history", *_COUNTERS, *_EWMAS)

    def __init__(self, weights: ScoreWeights = DEFAULT_WEIGHTS, now: float | None = None) -> None:
        self.weights = weights
        self.updated = time.time() if now is None else now
        self.history: deque[tuple[float, str, float]] = deque(maxlen=weights.history_len)
        self.hs_ok = self.hs_fail = self.up_s = self.down_s = 0.0
        self.valid = self.invalid = 0.0
        self.latency_ms: float | None = None
        self.response_ms: float | None = None
        self.throughput_bps: float | None = None
        self.rssi: float | None = None
        self.snr: float | None = None

    # ---- decay -------------------------------------------------------------------

    def _decay(self, now: float | None) -> float:
        if now is None:
            now = time.time()
        dt = now - self.updated
        if dt > 0:
            f = 0.5 ** (dt / self.weights.half_life_s)
            self.hs_ok *= f
            self.hs_fail *= f
            self.up_s *= f
            self.down_s *= f
            self.valid *= f
            self.invalid *= f
            self.updated = now
        return now

    def _event(self, now: float, name: str, value: float) -> None:
        self.history.append((now, name, value))

    def _ewma(self, old: float | None, x: float) -> float:
        return x if old is None else old + self.weights.ewma_alpha * (x - old)

    # ---- events ------------------------------------------------------------------

    def handshake(self, ok: bool, now: float | None = None) -> None:
        t = self._decay(now)
        if ok:
            self.hs_ok += 1
        else:
            self.hs_fail += 1
        self._event(t, "handshake_ok" if ok else "handshake_fail", 1.0)

    def uptime(self, up_s: float, down_s: float = 0.0, now: float | None = None) -> None:
        """Time the peer was reachable / unreachable when we wanted it."""
        if up_s < 0 or down_s < 0:
            raise ValueError("durations must be >= 0")
        t = self._decay(now)
        self.up_s += up_s
        self.down_s += down_s
        self._event(t, "uptime", up_s / (up_s + down_s) if up_s + down_s else 1.0)

    def latency(self, ms: float, now: float | None = None) -> None:
        t = self._decay(now)
        self.latency_ms = self._ewma(self.latency_ms, max(0.0, ms))
        self._event(t, "latency_ms", ms)

    def response_time(self, ms: float, now: float | None = None) -> None:
        """Time from our getdata to the data arriving."""
        t = self._decay(now)
        self.response_ms = self._ewma(self.response_ms, max(0.0, ms))
        self._event(t, "response_ms", ms)

    def throughput(self, bps: float, now: float | None = None) -> None:
        t = self._decay(now)
        self.throughput_bps = self._ewma(self.throughput_bps, max(0.0, bps))
        self._event(t, "throughput_bps", bps)

    def link(self, rssi: float, snr: float, now: float | None = None) -> None:
        """Mesh link quality of one received frame."""
        t = self._decay(now)
        self.rssi = self._ewma(self.rssi, rssi)
        self.snr = self._ewma(self.snr, snr)
        self._event(t, "rssi", rssi)

    def message(self, valid: bool, now: float | None = None, count: int = 1) -> None:
        t = self._decay(now)
        if valid:
            self.valid += count
        else:
            self.invalid += count
        self._event(t, "valid" if valid else "invalid", float(count))

    # ---- read out ----------------------------------------------------------------

    def components(self, now: float | None = None) -> tuple[float, float, float]:
        """(reliability, performance, behaviour), each 0..1."""
        self._decay(now)
        w = self.weights
        rel: list[float] = []
        if self.hs_ok + self.hs_fail > 0:
            rel.append(_ratio(self.hs_ok, self.hs_fail, w.prior))
        if self.up_s + self.down_s > 0:
            rel.append(self.up_s / (self.up_s + self.down_s))
        reliability = sum(rel) / len(rel) if rel else NEUTRAL
        perf: list[float] = []
        if self.latency_ms is not None:
            perf.append(w.latency_ref_ms / (w.latency_ref_ms + self.latency_ms))
        if self.response_ms is not None:
            perf.append(w.response_ref_ms / (w.response_ref_ms + self.response_ms))
        if self.throughput_bps is not None:
            perf.append(self.throughput_bps / (self.throughput_bps + w.throughput_ref_bps))
        if self.rssi is not None:
            perf.append(_linear(self.rssi, *w.rssi_range))
        if self.snr is not None:
            perf.append(_linear(self.snr, *w.snr_range))
        performance = sum(perf) / len(perf) if perf else NEUTRAL
        behaviour = (self.valid + w.prior / 2) / (
            self.valid + w.invalid_weight * self.invalid + w.prior
        )
        return reliability, performance, behaviour

    def score(self, now: float | None = None) -> float:
        """Weighted score in 0..100."""
        r, p, b = self.components(now)
        w = self.weights
        total = w.reliability + w.performance + w.behaviour
        return SCORE_MAX * (w.reliability * r + w.performance * p + w.behaviour * b) / total

    # ---- persistence -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"updated": self.updated}
        for name in (*_COUNTERS, *_EWMAS):
            d[name] = getattr(self, name)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], weights: ScoreWeights = DEFAULT_WEIGHTS) -> PeerScore:
        s = cls(weights, float(data.get("updated", time.time())))
        for name in _COUNTERS:
            setattr(s, name, float(data.get(name, 0.0)))
        for name in _EWMAS:
            v = data.get(name)
            setattr(s, name, None if v is None else float(v))
        return s
