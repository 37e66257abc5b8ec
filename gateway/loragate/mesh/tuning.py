"""Timings and bounds of the mesh wing (tests shorten the timings)."""

from __future__ import annotations

from dataclasses import dataclass

from lorawire import fragment
from lorawire import frame as wframe


@dataclass
class MeshTuning:
    announce_interval_s: float = 900.0
    announce_jitter: float = 0.1
    announce_first_s: float = 2.0
    announce_min_gap_s: float = 60.0
    hop_limit: int = wframe.DEFAULT_HOP_LIMIT
    inv_delay_s: float = 2.0
    inv_pending_max: int = 64
    origin_rate_per_min: float = 6.0
    origin_burst: float = 6.0
    origins_max: int = 1024
    reply_rate_per_min: float = 12.0
    reply_burst: float = 4.0
    request_rate_per_min: float = 12.0
    request_burst: float = 4.0
    requesters_max: int = 256
    serve_dedupe_s: float = 30.0
    served_max: int = 256
    replay_sources: int = 256
    link_keys: int = 64
    records_max: int = 1024
    heard_max: int = 4096
    reassembly_slots: int = 8
    reassembly_timeout_ms: int = fragment.DEFAULT_TIMEOUT_MS
    seq_block: int = 256
    sync_interval_s: float = 1.0
    shaper_capacity: int = 64
    # The downlink's share of the bridge's airtime (mesh.downlink.DownlinkBudget): this
    # much of the budget is kept for the bridge's own traffic and control replies; an
    # offered object's airtime counts as committed this long; ACKs expected per object;
    # one log line about shed objects at most this often.
    downlink_reserve_share: float = 0.3
    downlink_commit_s: float = 120.0
    downlink_acks_per_object: int = 2
    downlink_report_s: float = 60.0

    def hops(self) -> int:
        """The hop limit of what we broadcast (within the header's range)."""
        return max(0, min(self.hop_limit, wframe.MAX_HOPS))
