"""Timings and limits of the peer manager that are not user settings (tests shorten them).

User settings (targets, caps, timeouts, weights) are in `config`; these are the inner
workings' bounds, shared by the manager's parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loragate.relay import RelayLimits
from loragate.session import SessionLimits


@dataclass
class ManagerTuning:
    outbound_interval_s: float = 1.0
    feeler_interval_s: float = 120.0
    maintenance_interval_s: float = 5.0
    persist_interval_s: float = 60.0
    connect_timeout_s: float = 5.0
    frame_timeout_s: float = 10.0  # a started frame must be complete by then (slow-loris)
    good_session_s: float = 10.0
    conn_rate: float = 1.0  # inbound connections per second per address
    conn_burst: float = 10.0
    conn_buckets_max: int = 4096
    max_pending_inbound: int = 64
    max_pending_outbound: int = 8
    pex_answer_max: int = 16
    records_max: int = 4096
    scores_max: int = 10_000
    mesh_max: int = 1024
    backoff_base_s: float = 2.0
    backoff_max_s: float = 600.0
    backoff_jitter: float = 0.25
    throughput_min_bytes: int = 4096  # a maintenance interval with less is "idle"
    session: SessionLimits = field(default_factory=SessionLimits)
    relay: RelayLimits = field(default_factory=RelayLimits)
