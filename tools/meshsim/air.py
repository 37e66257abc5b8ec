"""The physics of the simulated LoRa medium, without I/O or a clock of its own.

`Air` decides, per transmission, who hears it, with which RSSI/SNR, and whether it
survives collisions, half-duplex and link loss. Two simulators drive it: the meshsim
medium (`medium.py`: UDP datagrams, the asyncio loop's clock scaled by a speed factor)
and the discrete-event simulator (`tools/dessim`: a virtual clock, many nodes in one
process). Times are simulated seconds (floats) given by the caller.

Who receives
------------
Every other station present on the same channel (SF and bandwidth equal, frequencies
within CHANNEL_TOLERANCE_HZ: a chip's synthesizer lands one step -- 61 Hz on the
SX1276, 1 Hz on the SX1262 -- from the frequency asked for) for which the topology
gives a link whose SNR (after the sender's power offset) clears the SF's demodulation
floor. Transmissions on another frequency/SF/BW do not interfere (LoRa spreading
factors are treated as orthogonal; a simplification). What a sender reaches depends
only on the topology, its SF and its power, so it is computed once per (sender, SF,
power) and kept (`audible`).

Fates of one reception (a frame at one receiver), decided in this order:
  half_duplex  the receiver was transmitting when the frame began, or began to
               transmit before it ended.
  collided     another reception overlapped it in time at the same receiver.
               Capture rule, per overlapping pair (E earlier, N later):
                 - E >= 6 dB stronger than N: E survives, N is lost;
                 - N >= 6 dB stronger than E and N began within E's preamble
                   (preamble + 4.25 symbols): the receiver re-locks onto N,
                   N survives, E is lost;
                 - otherwise (closer than 6 dB, or the stronger one arrived after
                   the receiver locked onto the weaker's header): both are lost.
               A reception survives only if it survives every overlap.
  lost         the per-link loss probability, drawn from a random stream per
               directed link seeded from (seed, sender, receiver), so the pattern
               is reproducible whatever the interleaving of other links.
  corrupted    the per-link corruption probability (topology link option "corrupt"),
               from a second stream per directed link: the frame arrives, but its
               payload CRC fails.
  delivered    otherwise.
Out-of-range pairs are not counted (they never were receptions).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .topology import Link, Topology

CAPTURE_DB = 6.0
PREAMBLE_SYMBOLS = 8
CHANNEL_TOLERANCE_HZ = 1000
FATES = ("delivered", "collided", "lost", "half_duplex", "corrupted")


@dataclass
class Params:
    freq_hz: int
    sf: int
    bw_hz: int
    power_dbm: int
    cr: int

    @property
    def channel(self) -> tuple[int, int, int]:
        return (self.freq_hz, self.sf, self.bw_hz)

    def preamble_s(self) -> float:
        return (PREAMBLE_SYMBOLS + 4.25) * (2**self.sf) / self.bw_hz


def same_channel(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    """Two (freq_hz, sf, bw_hz) channels a receiver cannot tell apart."""
    return a[1:] == b[1:] and abs(a[0] - b[0]) <= CHANNEL_TOLERANCE_HZ


@dataclass
class StationStats:
    tx: int = 0
    tx_airtime_ms: float = 0.0
    delivered: int = 0
    collided: int = 0
    lost: int = 0
    half_duplex: int = 0
    corrupted: int = 0


@dataclass(eq=False)
class Station:
    """One radio on the air, known to the topology by `name`. `owner` is whatever the
    simulator keeps with it (the medium: the node's UDP address)."""

    name: str
    node_id: bytes
    params: Params
    owner: Any = None
    tx_until: float = -1.0  # sim time the current transmission ends
    present: bool = True  # False once it left or was replaced (restart)
    receptions: list[Reception] = field(default_factory=list)
    stats: StationStats = field(default_factory=StationStats)


@dataclass(eq=False)
class Reception:
    station: Station
    rssi: float
    snr: float
    loss: float
    corrupt: float
    start: float
    end: float
    preamble_end: float
    channel: tuple[int, int, int]
    fate: str | None = None


@dataclass(eq=False)
class Transmission:
    sender: Station
    seq: int
    params: Params
    payload: bytes
    start: float
    end: float
    airtime_ms: float
    receptions: list[Reception]
    handle: Any = None  # the simulator's timer for the end


@dataclass
class Delivery:
    """A frame that reached a receiver: its payload (garbled when `corrupted`), and the
    RSSI (dBm) and SNR (quarter dB) as a radio reports them (whole numbers)."""

    station: Station
    payload: bytes
    rssi: int
    snr_q: int
    start: float
    end: float
    corrupted: bool


def garble(payload: bytes) -> bytes:
    """What a receiver makes of a payload its CRC rejects: here, the middle byte flipped."""
    b = bytearray(payload)
    b[len(b) // 2] ^= 0xFF
    return bytes(b)


def _clamp16(x: float) -> int:
    return max(-32768, min(32767, round(x)))


class Air:
    """Stations by name, the topology, the fates of every transmission, the counters."""

    def __init__(self, topology: Topology, seed: int = 0) -> None:
        self.topology = topology
        self.seed = seed
        self.by_name: dict[str, Station] = {}
        self._rngs: dict[tuple[str, str], random.Random] = {}
        self.counters = dict.fromkeys(("sent", *FATES), 0)

    # -- stations ----------------------------------------------------------------

    def join(self, station: Station) -> None:
        """Put `station` on the air; one of the same name already there leaves."""
        old = self.by_name.get(station.name)
        if old is not None and old is not station:
            old.present = False
        station.present = True
        self.by_name[station.name] = station

    def leave(self, station: Station) -> None:
        station.present = False
        if self.by_name.get(station.name) is station:
            del self.by_name[station.name]

    def audible(self, name: str, sf: int, power_dbm: int) -> list[tuple[str, Link]]:
        """Who in the topology hears `name` sending at SF `sf` and `power_dbm`, with the link."""
        return self.topology.hearers(name, sf, power_dbm)

    # -- the physics ---------------------------------------------------------------

    def begin(
        self,
        sender: Station,
        seq: int,
        params: Params,
        payload: bytes,
        now: float,
        airtime_ms: float,
    ) -> Transmission:
        """`sender` starts to transmit at `now`; the caller calls `finish` at `tx.end`."""
        end = now + airtime_ms / 1000.0
        sender.tx_until = end
        sender.stats.tx += 1
        sender.stats.tx_airtime_ms += airtime_ms
        self.counters["sent"] += 1
        # Half-duplex: whatever this station was receiving is lost.
        for r in sender.receptions:
            if r.end > now and r.fate is None:
                r.fate = "half_duplex"
        channel = params.channel
        preamble_end = now + params.preamble_s()
        receptions: list[Reception] = []
        by_name = self.by_name
        for name, link in self.audible(sender.name, params.sf, params.power_dbm):
            other = by_name.get(name)
            if other is None or other is sender or not same_channel(other.params.channel, channel):
                continue
            held = [r for r in other.receptions if r.end > now]
            other.receptions = held
            rec = Reception(
                other,
                link.rssi,
                link.snr,
                link.loss,
                link.corrupt,
                now,
                end,
                preamble_end,
                channel,
            )
            if other.tx_until > now:
                rec.fate = "half_duplex"
            for e in held:
                if same_channel(e.channel, channel):
                    self._collide(e, rec)
            held.append(rec)
            receptions.append(rec)
        return Transmission(sender, seq, params, payload, now, end, airtime_ms, receptions)

    @staticmethod
    def _collide(e: Reception, n: Reception) -> None:
        """Apply the capture rule to an earlier reception e and a new overlapping one n."""
        if e.rssi - n.rssi >= CAPTURE_DB:
            n.fate = n.fate or "collided"
        elif n.rssi - e.rssi >= CAPTURE_DB and n.start <= e.preamble_end:
            e.fate = e.fate or "collided"
        else:
            e.fate = e.fate or "collided"
            n.fate = n.fate or "collided"

    def _rng(self, a: str, b: str, what: str = "") -> random.Random:
        key = (a, b) if not what else (a, b + "/" + what)
        rng = self._rngs.get(key)
        if rng is None:
            seed = f"{self.seed}/{a}/{b}" + (f"/{what}" if what else "")
            rng = self._rngs[key] = random.Random(seed)
        return rng

    def finish(self, tx: Transmission) -> list[Delivery]:
        """The transmission ended: decide the open fates, count them, and return what
        reached a receiver (corrupted frames included, flagged)."""
        out: list[Delivery] = []
        sender = tx.sender
        counters = self.counters
        for r in tx.receptions:
            st = r.station
            fate = r.fate
            if fate is None:
                if not st.present or not same_channel(st.params.channel, r.channel):
                    continue  # left or retuned mid-frame: not a reception any more
                if r.loss > 0 and self._rng(sender.name, st.name).random() < r.loss:
                    fate = "lost"
                elif r.corrupt > 0 and self._rng(sender.name, st.name, "crc").random() < r.corrupt:
                    fate = "corrupted"
                else:
                    fate = "delivered"
            r.fate = fate
            counters[fate] += 1
            s = st.stats
            setattr(s, fate, getattr(s, fate) + 1)
            if fate == "delivered" or fate == "corrupted":
                bad = fate == "corrupted"
                out.append(
                    Delivery(
                        st,
                        garble(tx.payload) if bad else tx.payload,
                        _clamp16(r.rssi),
                        _clamp16(r.snr * 4),
                        r.start,
                        r.end,
                        bad,
                    )
                )
        return out
