"""Prometheus metrics of one gateway (prometheus-client), served over HTTP.

Every ``GatewayMetrics`` has its own ``CollectorRegistry`` (never the process-global
one), so several gateways, or tests, in one process do not collide. The peer manager
calls the methods below as things happen; ``attach(bus)`` counts every event of an
``EventBus``. ``start_http(host, port)`` serves ``/metrics`` from a daemon thread
(prometheus_client's own server); the gateway starts it only when ``metrics_port`` is
not 0.

Label values come from the manager (peer kinds, drop reasons, ...). To keep the number
of series bounded even if a caller passes free text, each metric accepts at most
``MAX_LABEL_VALUES`` distinct values per label; later new values are counted as
``"other"``.

Exported (prefix ``loragate_``):

==================================  =======  ============================================
name                                type     labels
==================================  =======  ============================================
peers_connected                     gauge    kind, direction (in/out/mesh)
addrman_addresses                   gauge    table (new/tried)
bans_active                         gauge
misbehaviour_total                  counter  type (one per report)
misbehaviour_points_total           counter  type (points assigned)
frames_total / frame_bytes_total    counter  direction (in/out)
relayed_total                       counter  kind (tx/block/inv/getdata...)
relay_dropped_total                 counter  reason (mesh_... for the downlink)
handshake_failures_total            counter  reason
connections_refused_total           counter  reason (banned, rate, busy, full, ...)
events_total                        counter  kind (EventBus kinds)
bridge_up                           gauge    port (1: the board said HELLO; 0: down)
bridge_airtime_used_seconds         gauge    port (duty-cycle window of the bridge radio)
bridge_airtime_budget_seconds       gauge    port
start_time_seconds                  gauge
build_info                          gauge    version
==================================  =======  ============================================

No stale series: `set_peers` removes the label sets it was not given (a kind that has
no peer any more is gone, not 0 forever); the bridge's series exist only with a bridge
configured. `promtool check metrics` passes on the endpoint (a test runs it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from loragate.events import Event, EventBus

MAX_LABEL_VALUES = 64
OTHER = "other"
# Why a connection was refused (connector.py); anything else is counted as "other".
REFUSAL_REASONS = ("banned", "banned_id", "rate", "busy", "full", "duplicate")


class _Labels:
    """Bounded set of label values seen for one metric label."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self.limit = limit
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, value: object) -> str:
        text = str(value) or "none"
        with self.lock:
            if text in self.seen:
                return text
            if len(self.seen) < self.limit:
                self.seen.add(text)
                return text
        return OTHER


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, version: str = "") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ns = "loragate"
        self.peers = Gauge(
            "peers_connected", "Connected peers", ["kind", "direction"], namespace=ns, registry=r
        )
        self.addrman = Gauge(
            "addrman_addresses", "Address book entries", ["table"], namespace=ns, registry=r
        )
        self.bans = Gauge("bans_active", "Active bans", namespace=ns, registry=r)
        self.misbehaviours = Counter(
            "misbehaviour", "Misbehaviour reports", ["type"], namespace=ns, registry=r
        )
        self.misbehaviour_points = Counter(
            "misbehaviour_points", "Misbehaviour points", ["type"], namespace=ns, registry=r
        )
        self.frames = Counter("frames", "Frames", ["direction"], namespace=ns, registry=r)
        self.frame_bytes = Counter(
            "frame_bytes", "Frame bytes", ["direction"], namespace=ns, registry=r
        )
        self.relayed_items = Counter(
            "relayed", "Items relayed to peers", ["kind"], namespace=ns, registry=r
        )
        self.relay_drops = Counter(
            "relay_dropped", "Relay items dropped", ["reason"], namespace=ns, registry=r
        )
        self.handshake_failures = Counter(
            "handshake_failures", "Failed handshakes", ["reason"], namespace=ns, registry=r
        )
        self.refusals = Counter(
            "connections_refused",
            "Connections refused before or at the handshake",
            ["reason"],
            namespace=ns,
            registry=r,
        )
        for reason in REFUSAL_REASONS:  # known up front: 0 is a fact, not a missing series
            self.refusals.labels(reason=reason)
        self.events = Counter("events", "Events published", ["kind"], namespace=ns, registry=r)
        self.bridge_up = Gauge(
            "bridge_up",
            "1 while the bridge board's link is up (its HELLO came), 0 while down",
            ["port"],
            namespace=ns,
            registry=r,
        )
        self.airtime_used = Gauge(
            "bridge_airtime_used_seconds",
            "LoRa airtime the bridge radio used in its duty-cycle window",
            ["port"],
            namespace=ns,
            registry=r,
        )
        self.airtime_budget = Gauge(
            "bridge_airtime_budget_seconds",
            "LoRa airtime the duty cycle allows the bridge radio per window",
            ["port"],
            namespace=ns,
            registry=r,
        )
        start = Gauge("start_time_seconds", "Gateway start time", namespace=ns, registry=r)
        start.set(time.time())
        info = Gauge("build_info", "Gateway version", ["version"], namespace=ns, registry=r)
        info.labels(version=version or "unknown").set(1)
        self._kind = _Labels()
        self._direction = _Labels()
        self._type = _Labels()
        self._relay_kind = _Labels()
        self._reason = _Labels()
        self._hs_reason = _Labels()
        self._event_kind = _Labels()
        self._http: Any = None
        self._http_thread: threading.Thread | None = None

    # ---- called by the peer manager ---------------------------------------------

    def peer_connected(self, kind: str, direction: str) -> None:
        self.peers.labels(kind=self._kind(kind), direction=self._direction(direction)).inc()

    def peer_disconnected(self, kind: str, direction: str) -> None:
        self.peers.labels(kind=self._kind(kind), direction=self._direction(direction)).dec()

    def set_peers(self, counts: dict[tuple[str, str], int]) -> None:
        """Set every (kind, direction) gauge at once; pairs left out are removed."""
        keep: set[tuple[str, str]] = set()
        for (kind, direction), n in counts.items():
            pair = (self._kind(kind), self._direction(direction))
            keep.add(pair)
            self.peers.labels(*pair).set(n)
        for labels in _label_sets(self.peers):
            old = (labels["kind"], labels["direction"])
            if old not in keep:
                self.peers.remove(*old)

    def set_addrman(self, new: int, tried: int) -> None:
        self.addrman.labels(table="new").set(new)
        self.addrman.labels(table="tried").set(tried)

    def set_bans(self, n: int) -> None:
        self.bans.set(n)

    def misbehaviour(self, kind: str, points: int = 0) -> None:
        t = self._type(kind)
        self.misbehaviours.labels(type=t).inc()
        if points > 0:
            self.misbehaviour_points.labels(type=t).inc(points)

    def frame_in(self, nbytes: int = 0) -> None:
        self.frames.labels(direction="in").inc()
        if nbytes > 0:
            self.frame_bytes.labels(direction="in").inc(nbytes)

    def frame_out(self, nbytes: int = 0) -> None:
        self.frames.labels(direction="out").inc()
        if nbytes > 0:
            self.frame_bytes.labels(direction="out").inc(nbytes)

    def relayed(self, kind: str, n: int = 1) -> None:
        self.relayed_items.labels(kind=self._relay_kind(kind)).inc(n)

    def dropped(self, reason: str, n: int = 1) -> None:
        self.relay_drops.labels(reason=self._reason(reason)).inc(n)

    def handshake_failed(self, reason: str = "unknown") -> None:
        self.handshake_failures.labels(reason=self._hs_reason(reason)).inc()

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason=reason if reason in REFUSAL_REASONS else OTHER).inc()

    def event(self, kind: str) -> None:
        self.events.labels(kind=self._event_kind(kind)).inc()

    def set_airtime(self, port: str, used_ms: float, budget_ms: float) -> None:
        self.airtime_used.labels(port=port).set(used_ms / 1000)
        self.airtime_budget.labels(port=port).set(budget_ms / 1000)

    def set_bridge(self, port: str, up: bool) -> None:
        self.bridge_up.labels(port=port).set(1 if up else 0)

    def attach(self, bus: EventBus) -> Callable[[], None]:
        """Count every event published on ``bus``; returns a function that detaches."""

        def on_event(ev: Event) -> None:
            self.event(ev.kind.value)

        return bus.add_callback(on_event)

    # ---- HTTP --------------------------------------------------------------------

    def start_http(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve /metrics on host:port (0 = any free port) from a thread; the bound port."""
        if self._http is not None:
            raise RuntimeError("metrics HTTP server already started")
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._http, self._http_thread = server, thread
        return int(server.server_address[1])

    def stop_http(self) -> None:
        server, self._http = self._http, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None


def _label_sets(metric: Gauge) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for family in metric.collect():
        for sample in family.samples:
            out.append(dict(sample.labels))
    return out
