"""Reference strategies for discovery, on the same air as the firmware, same frame sizes.

Every node floods one record (its own, `frame_len` bytes, the size of the firmware's
ANNOUNCE frame), once: after its first-announce delay (0.5..10 s after boot, as the
firmware) plus a uniform random wait in [0, spread_s), so that not every flood starts
in the same ten seconds; the gateways' records are records like any other. What is
measured is what discovery needs: the gateways hear every node's record, and every node
hears a gateway's record (and with it the neighbour it came through: a next hop).
Two ways of flooding:

* `NAIVE`: each node relays each record the first time it hears it, after a random wait
  of 0..RELAY_JITTER_MS (the firmware's relay wait), with no hop limit.
* `MANAGED`: Meshtastic's managed flooding (firmware src/mesh/RadioInterface.cpp and
  FloodingRouter.cpp, read 2026-07): a record leaves with hop_limit HOP_LIMIT (3,
  HOP_RELIABLE); a node that hears a new record with hop_limit > 0 rebroadcasts it with
  hop_limit - 1 after `weighted_delay_ms(snr)` = 2 * CWmax * slot + random(0, 2**CW(snr))
  * slot, CW(snr) = map(snr, -20, 10, CWmin=3, CWmax=8) (Arduino's integer map), slot =
  2.5 symbols + 7.6 ms (computeSlotTimeMsec: CAD of NUM_SYM_CAD + 0.5 symbols plus
  propagation, turnaround and MAC time): the receiver with the weakest signal -- the
  farthest one -- goes first. Hearing the same record again while the rebroadcast waits
  cancels it (perhapsCancelDupe: a CLIENT does). The originator waits random(0, 2**CW)
  slots with CW = map(channel utilisation %, 0, 100, CWmin, CWmax) (getTxDelayMsec; the
  utilisation is the airtime this node heard and sent in the last minute).
  Listen before talk: when the delay is over but a frame is arriving at this radio
  (RadioLibInterface's isActivelyReceiving / channel activity detection), the node backs
  off by the same kind of delay again. (The firmware and naive flooding have no carrier
  sense.) Not modelled: the ROUTER roles, the "upgraded packet" replacement.

Both obey the same duty cycle as a board (lorawire.airtime.Budget with the region's
budget; a frame waits in a FIFO until it fits), and half-duplex radios (a node sends one
frame at a time). Steady state: Meshtastic repeats NodeInfo every 3 h
(`default_node_info_broadcast_secs`), stretched above 40 nodes by 1 + (n - 40) * 2**SF /
(BW_kHz * 100) (Default.h `congestionScalingCoefficient`); `nodeinfo_interval_s` gives it.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from loranode.clock import PERIOD
from loranode.transmit import RELAY_JITTER_MS
from lorawire.airtime import Budget, airtime_ms, time_on_air_ms

from ..meshsim.air import Air, Delivery, Params, Station, Transmission
from ..meshsim.launcher import BANDWIDTH_HZ, duty_limits, region_frequency
from ..meshsim.topology import Topology
from .events import EventQueue
from .world import Frame

NAIVE = "naive"
MANAGED = "managed"
HOP_LIMIT = 3
CW_MIN = 3
CW_MAX = 8
SNR_MIN = -20
SNR_MAX = 10
NODEINFO_S = 3 * 3600
FIRST_MIN_MS = 500  # as the firmware's first announce (loranode.announce)
FIRST_MAX_MS = 10000
UTIL_WINDOW_S = 60.0
_HEAD = struct.Struct(">BHBH")  # marker, origin index, hop_limit, transmitter index
MARK = 0xA5


def arduino_map(x: float, in_min: int, in_max: int, out_min: int, out_max: int) -> int:
    """Arduino's map() on longs: x is truncated first, the division truncates too."""
    xi = int(x)
    num = (xi - in_min) * (out_max - out_min)
    den = in_max - in_min
    q = abs(num) // abs(den)
    if (num < 0) != (den < 0):
        q = -q
    return q + out_min


def slot_ms(sf: int, bw_hz: int) -> int:
    """Meshtastic's computeSlotTimeMsec for an SX126x/SX127x (2.5 symbols + 7.6 ms)."""
    symbol = (1 << sf) / (bw_hz / 1000)
    return int(max(2.25, 2 + 0.5) * symbol + 0.2 + 0.4 + 7)


def cw_size(snr: float) -> int:
    return arduino_map(snr, SNR_MIN, SNR_MAX, CW_MIN, CW_MAX)


def weighted_delay_ms(snr: float, slot: int, rng: random.Random) -> int:
    """getTxDelayMsecWeighted for a CLIENT: low SNR (far away) waits least."""
    return 2 * CW_MAX * slot + rng.randrange(0, 1 << cw_size(snr)) * slot


def nodeinfo_interval_s(n: int, sf: int, bw_hz: int) -> float:
    coef = 1.0 if n <= 40 else 1.0 + (n - 40) * (1 << sf) / (bw_hz / 1000 * 100.0)
    return NODEINFO_S * coef


@dataclass
class _Pending:
    origin: int
    hop_limit: int
    snr: float | None = None  # the SNR it was heard with (a relay), None for our own
    cancelled: bool = False


class FloodAgent:
    """One node flooding records by `strategy` (see the module docstring)."""

    def __init__(self, mesh: ReferenceMesh, index: int, name: str) -> None:
        self.mesh = mesh
        self.index = index
        self.name = name
        self.station = Station(name, struct.pack(">Q", index), mesh.params, owner=self)
        d = mesh.duty
        self.budget = Budget(d["budget_ms"], d["window_ms"], d["dwell_ms"])
        self.known: dict[int, float] = {}  # origin -> time first heard (own: boot)
        self.via: dict[int, int] = {}  # origin -> the neighbour it first came through
        self.pending: dict[int, _Pending] = {}  # relays waiting out their delay
        self.fifo: deque[_Pending] = deque()
        self.busy = False
        self.heard: deque[tuple[float, float]] = deque()  # (end, airtime s) heard or sent

    # -- time and airtime ----------------------------------------------------------

    def _tick(self) -> int:
        return self.mesh.queue.now_ms & (PERIOD - 1)

    def utilisation_pct(self) -> float:
        now = self.mesh.queue.now
        h = self.heard
        while h and h[0][0] < now - UTIL_WINDOW_S:
            h.popleft()
        return 100.0 * sum(a for _, a in h) / UTIL_WINDOW_S

    # -- flooding ------------------------------------------------------------------

    def _tx_delay_ms(self) -> int:
        """getTxDelayMsec: random(0, 2**CW) slots, CW from the channel utilisation."""
        m = self.mesh
        cw = arduino_map(self.utilisation_pct(), 0, 100, CW_MIN, CW_MAX)
        return m.rng.randrange(0, 1 << cw) * m.slot

    def channel_active(self) -> bool:
        """A frame is arriving (Meshtastic's isActivelyReceiving / CAD): any reception
        under way at this radio, whether it will survive or not."""
        now = self.mesh.queue.now
        return any(r.start <= now < r.end for r in self.station.receptions)

    def boot(self) -> None:
        m = self.mesh
        m.air.join(self.station)
        self.known[self.index] = m.queue.now
        wait = m.rng.randint(FIRST_MIN_MS, FIRST_MAX_MS) + int(m.rng.uniform(0, m.spread_s) * 1000)
        if m.strategy == MANAGED:
            wait += self._tx_delay_ms()
        m.queue.after_ms(wait, self._enqueue, _Pending(self.index, m.hop_limit))

    def deliver(self, d: Delivery) -> None:
        if d.corrupted:
            return
        self.heard.append((d.end, d.end - d.start))
        mark, origin, hop_limit, sender = _HEAD.unpack_from(d.payload)
        if mark != MARK:
            return
        m = self.mesh
        if origin in self.known:
            p = self.pending.get(origin)
            if p is not None and m.strategy == MANAGED:
                p.cancelled = True  # someone else already rebroadcast it
                del self.pending[origin]
            return
        self.known[origin] = m.queue.now
        self.via[origin] = sender
        m.on_learn(self, origin)
        if m.strategy == NAIVE:
            wait = m.rng.randint(0, RELAY_JITTER_MS)
            p = _Pending(origin, 0)
        else:
            if hop_limit <= 0:
                return
            snr = d.snr_q / 4
            wait = weighted_delay_ms(snr, m.slot, m.rng)
            p = _Pending(origin, hop_limit - 1, snr)
        self.pending[origin] = p
        m.queue.after_ms(wait, self._enqueue, p)

    def _enqueue(self, p: _Pending) -> None:
        if not p.cancelled:
            self.fifo.append(p)  # still cancellable (Router::cancelSending) until it goes
            self._pump()

    def _pump(self) -> None:
        if self.busy:
            return
        m = self.mesh
        while self.fifo and self.fifo[0].cancelled:
            self.fifo.popleft()
        if not self.fifo:
            return
        ms = airtime_ms(m.frame_len, m.params.sf, m.params.bw_hz, m.params.cr)
        w = self.budget.wait_ms(ms, self._tick())
        if w != 0:
            if w > 0:
                self.busy = True
                m.queue.after_ms(w, self._unblock)
            return
        if m.strategy == MANAGED and self.channel_active():
            # listen before talk: back off again, as RadioLibInterface does when the
            # channel is busy at the end of the transmit delay
            p = self.fifo[0]
            if p.snr is None:
                back = self._tx_delay_ms()
            else:
                back = weighted_delay_ms(p.snr, m.slot, m.rng)
            self.busy = True
            m.queue.after_ms(max(back, 1), self._unblock)
            return
        p = self.fifo.popleft()
        if self.pending.get(p.origin) is p:
            del self.pending[p.origin]
        head = _HEAD.pack(MARK, p.origin, p.hop_limit, self.index)
        data = head + bytes(m.frame_len - len(head))
        self.budget.record(ms, self._tick())
        tx = m.air.begin(self.station, 0, m.params, data, m.queue.now, m.airtime)
        self.busy = True
        m.frames.append(Frame(tx.start, self.index, 0, 0 if p.origin == self.index else 1,
                              tx.airtime_ms, len(data)))  # fmt: skip
        m.queue.at(tx.end, self._tx_end, tx)

    def _unblock(self) -> None:
        self.busy = False
        self._pump()

    def _tx_end(self, tx: Transmission) -> None:
        self.busy = False
        self.heard.append((tx.end, tx.airtime_ms / 1000.0))
        for d in self.mesh.air.finish(tx):
            d.station.owner.deliver(d)
        self._pump()


class ReferenceMesh:
    """Every node of `topology` a FloodAgent of `strategy`; `run(until_s)`."""

    def __init__(
        self,
        topology: Topology,
        gateways: Sequence[str],
        strategy: str,
        frame_len: int,
        sf: int = 7,
        seed: int = 0,
        region: str = "EU868",
        boot_spread_s: float = 2.0,
        hop_limit: int = HOP_LIMIT,
        spread_s: float = 0.0,
    ) -> None:
        if strategy not in (NAIVE, MANAGED):
            raise ValueError(f"strategy {strategy!r} is not {NAIVE!r} or {MANAGED!r}")
        self.topology = topology
        self.names = list(topology.nodes)
        self.n = len(self.names)
        self.strategy = strategy
        self.frame_len = frame_len
        self.hop_limit = hop_limit
        self.spread_s = spread_s
        self.rng = random.Random(f"reference/{strategy}/{seed}")
        self.queue = EventQueue()
        self.air = Air(topology, seed)
        freq = region_frequency(region, BANDWIDTH_HZ)
        self.params = Params(freq, sf, BANDWIDTH_HZ, int(topology.model.tx_power_dbm), 5)
        self.duty = duty_limits(region, freq, BANDWIDTH_HZ)
        self.airtime = float(time_on_air_ms(frame_len, sf, BANDWIDTH_HZ, coding_rate=5))
        self.slot = slot_ms(sf, BANDWIDTH_HZ)
        self.frames: list[Frame] = []
        index = {x: i for i, x in enumerate(self.names)}
        self.gateways = [index[g] for g in gateways]
        self.agents = [FloodAgent(self, i, x) for i, x in enumerate(self.names)]
        self.gateway_known = 0  # node records the gateways hold, all gateways together
        self.routed = 0  # nodes that hold a gateway's record
        self._gw_set = set(self.gateways)
        self._gw_known: set[int] = set(self.gateways)
        self._routed: set[int] = set(self.gateways)
        for a in self.agents:
            self.queue.at(self.rng.uniform(0.0, boot_spread_s), a.boot)

    def on_learn(self, agent: FloodAgent, origin: int) -> None:
        if agent.index in self._gw_set:
            self._gw_known.add(origin)
        if origin in self._gw_set:
            self._routed.add(agent.index)

    @property
    def now(self) -> float:
        return self.queue.now

    def run(self, until_s: float) -> None:
        self.queue.run(until_s)

    def gateway_share(self) -> float:
        """Share of the nodes whose record some gateway holds."""
        return len(self._gw_known) / self.n

    def routed_share(self) -> float:
        """Share of the nodes holding some gateway's record (so a next hop toward it)."""
        return len(self._routed) / self.n

    def quiet(self) -> bool:
        return self.queue.pending() == 0

    def airtime_ms(self, since: float = 0.0, until: float | None = None) -> float:
        return sum(
            f.airtime_ms for f in self.frames if f.t >= since and (until is None or f.t < until)
        )
