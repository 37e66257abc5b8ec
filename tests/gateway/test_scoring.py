"""Peer scores: components, lazy decay, weights, bounded history, persistence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loragate.scoring import PeerScore, ScoreWeights

T0 = 1_700_000_000.0
H = 3600.0


def test_unknown_peer_is_neutral() -> None:
    s = PeerScore(now=T0)
    assert s.components(T0) == (0.5, 0.5, 0.5)
    assert s.score(T0) == pytest.approx(50.0)


def test_counters_halve_after_half_life() -> None:
    w = ScoreWeights(half_life_s=2 * H)
    s = PeerScore(w, now=T0)
    s.message(False, T0, count=8)
    s.message(True, T0, count=40)
    s.handshake(True, T0)
    s.components(T0 + 2 * H)
    assert s.invalid == pytest.approx(4.0)
    assert s.valid == pytest.approx(20.0)
    assert s.hs_ok == pytest.approx(0.5)
    s.components(T0 + 6 * H)  # two more half-lives, applied lazily from the last update
    assert s.invalid == pytest.approx(1.0)


def test_decay_pulls_score_back_towards_neutral() -> None:
    s = PeerScore(ScoreWeights(half_life_s=H), now=T0)
    s.message(False, T0, count=5)
    bad = s.score(T0)
    later = s.score(T0 + 10 * H)
    assert bad < 40 < later < 50
    assert later == pytest.approx(50, abs=1.0)


def test_invalid_messages_lower_behaviour() -> None:
    s = PeerScore(now=T0)
    s.message(True, T0, count=50)
    r0, p0, b_clean = s.components(T0)
    s.message(False, T0, count=3)
    r1, p1, b_dirty = s.components(T0)
    # (50 + 1) / (50 + 2) before, (50 + 1) / (50 + 30 + 2) after
    assert b_clean == pytest.approx(51 / 52)
    assert b_dirty == pytest.approx(51 / 82)
    assert (r0, p0) == (r1, p1)


def test_reliability_from_handshakes_and_uptime() -> None:
    s = PeerScore(now=T0)
    for _ in range(8):
        s.handshake(True, T0)
    s.handshake(False, T0)
    s.handshake(False, T0)
    s.uptime(up_s=900, down_s=100, now=T0)
    rel = s.components(T0)[0]
    assert rel == pytest.approx(((8 + 1) / (10 + 2) + 0.9) / 2)


def test_performance_latency_and_link_quality() -> None:
    w = ScoreWeights(latency_ref_ms=200, ewma_alpha=0.5)
    fast, slow = PeerScore(w, now=T0), PeerScore(w, now=T0)
    fast.latency(50, T0)
    slow.latency(800, T0)
    assert fast.components(T0)[1] == pytest.approx(200 / 250)
    assert slow.components(T0)[1] == pytest.approx(200 / 1000)
    slow.latency(0, T0)  # EWMA: 800 + 0.5 * (0 - 800)
    assert slow.latency_ms == pytest.approx(400)
    mesh = PeerScore(w, now=T0)
    mesh.link(rssi=-90, snr=-5, now=T0)  # both exactly mid-range
    assert mesh.components(T0)[1] == pytest.approx(0.5)
    mesh.link(rssi=-200, snr=50, now=T0)
    assert 0.0 <= mesh.components(T0)[1] <= 1.0


def test_weights_change_the_outcome() -> None:
    def peer(w: ScoreWeights) -> float:
        s = PeerScore(w, now=T0)
        s.latency(20, T0)  # very fast ...
        s.message(False, T0, count=4)  # ... but sends garbage
        return s.score(T0)

    perf_heavy = peer(ScoreWeights(reliability=0, performance=1, behaviour=0))
    behaviour_heavy = peer(ScoreWeights(reliability=0, performance=0, behaviour=1))
    assert perf_heavy == pytest.approx(100 * 200 / 220)
    assert behaviour_heavy == pytest.approx(100 * 1 / (40 + 2))
    assert peer(ScoreWeights()) != perf_heavy


def test_bad_weights_rejected() -> None:
    with pytest.raises(ValueError):
        ScoreWeights(reliability=0, performance=0, behaviour=0)
    with pytest.raises(ValueError):
        ScoreWeights(half_life_s=0)


def test_round_trip_dict() -> None:
    s = PeerScore(now=T0)
    s.handshake(True, T0)
    s.latency(120, T0)
    s.message(False, T0)
    s2 = PeerScore.from_dict(s.to_dict())
    assert s2.score(T0 + H) == pytest.approx(s.score(T0 + H))


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["hs", "up", "lat", "resp", "tput", "link", "msg"]),
        st.floats(0, 1e6, allow_nan=False),
        st.booleans(),
        st.floats(0, 1e5, allow_nan=False),
    ),
    max_size=200,
)


@given(EVENTS, st.integers(1, 20))
def test_history_bounded_and_score_in_range(events, history_len) -> None:
    s = PeerScore(ScoreWeights(history_len=history_len), now=T0)
    now = T0
    for kind, x, flag, dt in events:
        now += dt
        if kind == "hs":
            s.handshake(flag, now)
        elif kind == "up":
            s.uptime(x, x / 2 if flag else 0.0, now)
        elif kind == "lat":
            s.latency(x, now)
        elif kind == "resp":
            s.response_time(x, now)
        elif kind == "tput":
            s.throughput(x, now)
        elif kind == "link":
            s.link(-x / 1000, x / 1e5 - 5, now)
        else:
            s.message(flag, now)
        assert len(s.history) <= history_len
        assert 0.0 <= s.score(now) <= 100.0
    assert len(s.history) == min(len(events), history_len)
