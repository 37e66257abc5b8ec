"""The simulated LoRa medium: an asyncio UDP server on loopback.

Each simulated node (a `SimRadio`, on the unix port or CPython) is a UDP client.
The medium decides, per transmission, who hears it, with which RSSI/SNR, and
whether it survives collisions, half-duplex and link loss.

Datagram protocol: `lorawire.simproto` (one definition for the medium and the
firmware's SimRadio).

Simulated time
--------------
sim_now = (real monotonic time since start) * speed. A transmission of airtime T ms
(lorawire.airtime.time_on_air_ms with the sender's SF/BW/CR, 8-symbol preamble,
explicit header, CRC on) occupies [t, t + T/1000] simulated seconds and ends
T / speed real milliseconds later, when TX_DONE goes to the sender and RX to the
receivers that got it.

Who receives
------------
Every other registered node on the same channel (SF and bandwidth equal, frequencies
within CHANNEL_TOLERANCE_HZ: a chip's synthesizer lands one step -- 61 Hz on the
SX1276, 1 Hz on the SX1262 -- from the frequency asked for) for which the
topology gives a link whose SNR (after the sender's power offset) clears the SF's
demodulation floor. Transmissions on another frequency/SF/BW do not interfere
(LoRa spreading factors are treated as orthogonal; a simplification).

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
               payload CRC fails; sent as RX_CRC.
  delivered    otherwise.
Out-of-range pairs are not counted (they never were receptions).
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from lorawire.simproto import (
    MAX_NAME,
    REGISTER_FMT,
    REGISTERED_FMT,
    RX_FMT,
    ST_BAD_PARAMS,
    ST_BUSY,
    ST_OK,
    ST_UNREGISTERED,
    STATS_FMT,
    T_BYE,
    T_REGISTER,
    T_REGISTERED,
    T_RX,
    T_RX_CRC,
    T_STATS,
    T_STATS_JSON,
    T_STATS_JSON_REPLY,
    T_STATS_REPLY,
    T_TX,
    T_TX_DONE,
    T_TX_TIMED,
    TX_DONE_FMT,
    TX_FMT,
    TX_TIMED_FMT,
)

from .topology import Topology

CAPTURE_DB = 6.0
PREAMBLE_SYMBOLS = 8
MAX_PAYLOAD = 255
MAX_NODES = 4096  # registrations beyond this are refused (no unbounded growth)
MAX_JSON = 60000  # bytes of STATS_JSON_REPLY; beyond it the per-node detail is left out
CHANNEL_TOLERANCE_HZ = 1000

_REG_LEN = struct.calcsize(REGISTER_FMT)
_TX_LEN = struct.calcsize(TX_FMT)
_TX_TIMED_LEN = struct.calcsize(TX_TIMED_FMT)

AirtimeFn = Callable[..., float]


def _default_airtime() -> AirtimeFn:
    from lorawire.airtime import time_on_air_ms

    return time_on_air_ms


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
class NodeStats:
    tx: int = 0
    tx_airtime_ms: float = 0.0
    delivered: int = 0
    collided: int = 0
    lost: int = 0
    half_duplex: int = 0
    corrupted: int = 0


@dataclass
class Node:
    name: str
    node_id: bytes
    addr: tuple[str, int]
    params: Params
    tx_until: float = -1.0  # sim time the current transmission ends
    receptions: list[Reception] = field(default_factory=list)
    stats: NodeStats = field(default_factory=NodeStats)


@dataclass
class Reception:
    node: Node
    rssi: float
    snr: float
    loss: float
    corrupt: float
    start: float
    end: float
    preamble_end: float
    channel: tuple[int, int, int]
    fate: str | None = None


@dataclass
class Transmission:
    sender: Node
    seq: int
    params: Params
    payload: bytes
    start: float
    end: float
    airtime_ms: float
    receptions: list[Reception]
    handle: asyncio.TimerHandle | None = None


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, medium: Medium) -> None:
        self.medium = medium

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.medium._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.medium.handle(data, addr)


class Medium:
    """The medium. `await start()`, then nodes talk to `address`; `close()` to stop."""

    def __init__(
        self,
        topology: Topology,
        *,
        speed: float = 1.0,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        airtime_fn: AirtimeFn | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.topology = topology
        self.speed = float(speed)
        self.seed = seed
        self.host = host
        self.port = port
        self._airtime = airtime_fn or _default_airtime()
        self._log = log or (lambda msg: None)
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self.by_addr: dict[tuple[str, int], Node] = {}
        self.by_name: dict[str, Node] = {}
        self._rngs: dict[tuple[str, str], random.Random] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self.counters = {
            "sent": 0,
            "delivered": 0,
            "collided": 0,
            "lost": 0,
            "half_duplex": 0,
            "rejected": 0,
            "corrupted": 0,
        }
        self.address: tuple[str, int] = (host, port)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        await self._loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port)
        )
        assert self._transport is not None
        self.address = self._transport.get_extra_info("sockname")[:2]
        return self.address

    def close(self) -> None:
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def now(self) -> float:
        """Simulated seconds since start."""
        assert self._loop is not None
        return (self._loop.time() - self._t0) * self.speed

    # -- datagrams -------------------------------------------------------------

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, addr)

    def handle(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data:
            return
        t = data[0]
        try:
            if t == T_REGISTER:
                self._on_register(data, addr)
            elif t == T_TX:
                self._on_tx(data, addr)
            elif t == T_TX_TIMED:
                self._on_tx(data, addr, timed=True)
            elif t == T_STATS:
                c = self.counters
                self._send(
                    struct.pack(
                        STATS_FMT,
                        T_STATS_REPLY,
                        c["sent"],
                        c["delivered"],
                        c["collided"],
                        c["lost"],
                        c["half_duplex"],
                        c["rejected"],
                        self.now(),
                    ),
                    addr,
                )
            elif t == T_STATS_JSON:
                stats = self.stats()
                blob = json.dumps(stats, sort_keys=True).encode()
                if len(blob) > MAX_JSON:  # too many nodes for one datagram: totals only
                    stats["nodes"] = None
                    stats["nodes_omitted"] = len(self.by_addr)
                    blob = json.dumps(stats, sort_keys=True).encode()
                self._send(bytes([T_STATS_JSON_REPLY]) + blob, addr)
            elif t == T_BYE:
                node = self.by_addr.pop(addr, None)
                if node is not None and self.by_name.get(node.name) is node:
                    del self.by_name[node.name]
            # anything else: ignored (a stray datagram never stops the medium)
        except (struct.error, UnicodeDecodeError, ValueError) as e:
            self._log(f"meshsim: bad datagram from {addr}: {e}")

    def _on_register(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) <= _REG_LEN or len(data) > _REG_LEN + MAX_NAME:
            raise ValueError("REGISTER length")
        _, node_id, freq, sf, bw, power, cr = struct.unpack(REGISTER_FMT, data[:_REG_LEN])
        name = data[_REG_LEN:].decode()
        params = Params(freq, sf, bw, power, cr)
        old = self.by_name.get(name)
        if old is not None and old.addr != addr:
            self.by_addr.pop(old.addr, None)  # same node restarted on a new port
        node = self.by_addr.get(addr)
        if node is None or node.name != name:
            if len(self.by_addr) >= MAX_NODES and addr not in self.by_addr:
                raise ValueError("too many nodes")
            node = Node(name, node_id, addr, params)
            self.by_addr[addr] = node
            if name not in self.topology.nodes:
                self._log(f"meshsim: node {name!r} is not in the topology: it hears nobody")
        else:
            node.params = params
            node.node_id = node_id
        self.by_name[name] = node
        self._send(struct.pack(REGISTERED_FMT, T_REGISTERED, self.now(), self.speed), addr)

    def _done(
        self, addr: tuple[str, int], seq: int, status: int, airtime: float, end: float
    ) -> None:
        self._send(struct.pack(TX_DONE_FMT, T_TX_DONE, seq, status, airtime, end), addr)

    def _on_tx(self, data: bytes, addr: tuple[str, int], timed: bool = False) -> None:
        head = _TX_TIMED_LEN if timed else _TX_LEN
        if len(data) < head:
            raise ValueError("TX length")
        given_us = None
        if timed:
            _, seq, freq, sf, bw, power, cr, given_us = struct.unpack(TX_TIMED_FMT, data[:head])
        else:
            _, seq, freq, sf, bw, power, cr = struct.unpack(TX_FMT, data[:head])
        payload = data[head:]
        now = self.now()
        node = self.by_addr.get(addr)
        if node is None:
            self.counters["rejected"] += 1
            self._done(addr, seq, ST_UNREGISTERED, 0.0, now)
            return
        if node.tx_until > now:
            self.counters["rejected"] += 1
            self._done(addr, seq, ST_BUSY, 0.0, now)
            return
        params = Params(freq, sf, bw, power, cr)
        try:
            if not 1 <= len(payload) <= MAX_PAYLOAD:
                raise ValueError("payload length")
            if given_us is not None:
                if given_us == 0:
                    raise ValueError("airtime 0")
                airtime = given_us / 1000.0
            else:
                airtime = float(self._airtime(len(payload), sf, bw, coding_rate=cr))
        except (ValueError, TypeError):
            self.counters["rejected"] += 1
            self._done(addr, seq, ST_BAD_PARAMS, 0.0, now)
            return
        node.params = params
        self.transmit(node, seq, params, payload, now, airtime)

    # -- the physics -----------------------------------------------------------

    def transmit(
        self, node: Node, seq: int, params: Params, payload: bytes, now: float, airtime_ms: float
    ) -> Transmission:
        end = now + airtime_ms / 1000.0
        node.tx_until = end
        node.stats.tx += 1
        node.stats.tx_airtime_ms += airtime_ms
        self.counters["sent"] += 1
        # Half-duplex: whatever this node was receiving is lost.
        for r in node.receptions:
            if r.end > now and r.fate is None:
                r.fate = "half_duplex"
        receptions: list[Reception] = []
        for other in list(self.by_addr.values()):
            if other is node or not same_channel(other.params.channel, params.channel):
                continue
            link = self.topology.reception(node.name, other.name, params.sf, params.power_dbm)
            if link is None:
                continue
            other.receptions = [r for r in other.receptions if r.end > now]
            rec = Reception(
                other,
                link.rssi,
                link.snr,
                link.loss,
                link.corrupt,
                now,
                end,
                now + params.preamble_s(),
                params.channel,
            )
            if other.tx_until > now:
                rec.fate = "half_duplex"
            for e in other.receptions:
                if not same_channel(e.channel, rec.channel):
                    continue
                self._collide(e, rec)
            other.receptions.append(rec)
            receptions.append(rec)
        tx = Transmission(node, seq, params, payload, now, end, airtime_ms, receptions)
        assert self._loop is not None
        tx.handle = self._loop.call_at(self._t0 + end / self.speed, self._finish, tx)
        self._timers.add(tx.handle)
        return tx

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

    def _finish(self, tx: Transmission) -> None:
        if tx.handle is not None:
            self._timers.discard(tx.handle)
        sender = tx.sender
        if self.by_addr.get(sender.addr) is sender:
            self._done(sender.addr, tx.seq, ST_OK, tx.airtime_ms, tx.end)
        for r in tx.receptions:
            node = r.node
            fate = r.fate
            if fate is None:
                current = self.by_addr.get(node.addr) is node
                if not current or not same_channel(node.params.channel, r.channel):
                    continue  # left or retuned mid-frame: not a reception any more
                if r.loss > 0 and self._rng(sender.name, node.name).random() < r.loss:
                    fate = "lost"
                elif (
                    r.corrupt > 0 and self._rng(sender.name, node.name, "crc").random() < r.corrupt
                ):
                    fate = "corrupted"
            if fate is None or fate == "corrupted":
                rssi = max(-32768, min(32767, round(r.rssi)))
                snr_q = max(-32768, min(32767, round(r.snr * 4)))
                kind, payload = T_RX, tx.payload
                if fate is None:
                    self.counters["delivered"] += 1
                    node.stats.delivered += 1
                else:
                    self.counters["corrupted"] += 1
                    node.stats.corrupted += 1
                    kind, payload = T_RX_CRC, garble(tx.payload)
                hdr = struct.pack(RX_FMT, kind, rssi, snr_q, r.start, r.end)
                self._send(hdr + payload, node.addr)
            else:
                self.counters[fate] += 1
                setattr(node.stats, fate, getattr(node.stats, fate) + 1)

    # -- reporting -------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        now = self.now() if self._loop is not None else 0.0
        return {
            "sim_time_s": now,
            "speed": self.speed,
            **self.counters,
            "nodes": {
                n.name: {
                    "tx": n.stats.tx,
                    "tx_airtime_ms": round(n.stats.tx_airtime_ms, 3),
                    "delivered": n.stats.delivered,
                    "collided": n.stats.collided,
                    "lost": n.stats.lost,
                    "half_duplex": n.stats.half_duplex,
                    "corrupted": n.stats.corrupted,
                }
                for n in self.by_addr.values()
            },
        }

    def summary(self) -> str:
        c = self.counters
        return (
            f"meshsim: sent {c['sent']} delivered {c['delivered']} collided {c['collided']} "
            f"lost {c['lost']} half_duplex {c['half_duplex']} rejected {c['rejected']} "
            f"sim_time {self.now():.3f}s"
        )


def garble(payload: bytes) -> bytes:
    """What a receiver makes of a payload its CRC rejects: here, the middle byte flipped."""
    b = bytearray(payload)
    b[len(b) // 2] ^= 0xFF
    return bytes(b)


def parse_stats(data: bytes) -> dict[str, float]:
    """Decode a STATS_REPLY datagram (for tools and tests)."""
    if len(data) != struct.calcsize(STATS_FMT) or data[0] != T_STATS_REPLY:
        raise ValueError("not a STATS_REPLY datagram")
    _, sent, delivered, collided, lost, half, rejected, now = struct.unpack(STATS_FMT, data)
    return {
        "sent": sent,
        "delivered": delivered,
        "collided": collided,
        "lost": lost,
        "half_duplex": half,
        "rejected": rejected,
        "sim_time_s": now,
    }


async def serve(
    topology: Topology,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    speed: float = 1.0,
    seed: int = 0,
    ready: Callable[[tuple[str, int]], None] | None = None,
    stop: asyncio.Event | None = None,
) -> Medium:
    """Run a medium until `stop` is set (or the task is cancelled); returns it, closed."""
    medium = Medium(
        topology,
        speed=speed,
        seed=seed,
        host=host,
        port=port,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    await medium.start()
    if ready is not None:
        ready(medium.address)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        medium.close()
    return medium
