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

Who receives, and the fate of each reception (half-duplex, collisions with the 6 dB
capture rule, per-link loss and corruption): `air.Air`, the physics this medium shares
with the discrete-event simulator (tools/dessim). A corrupted frame is sent as RX_CRC.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
from collections.abc import Callable
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

from .air import (  # noqa: F401 - re-exported: the medium's physics, for importers
    CAPTURE_DB,
    CHANNEL_TOLERANCE_HZ,
    PREAMBLE_SYMBOLS,
    Air,
    Params,
    Reception,
    Station,
    Transmission,
    garble,
    same_channel,
)
from .topology import Topology

MAX_PAYLOAD = 255
MAX_NODES = 4096  # registrations beyond this are refused (no unbounded growth)
MAX_JSON = 60000  # bytes of STATS_JSON_REPLY; beyond it the per-node detail is left out

_REG_LEN = struct.calcsize(REGISTER_FMT)
_TX_LEN = struct.calcsize(TX_FMT)
_TX_TIMED_LEN = struct.calcsize(TX_TIMED_FMT)

AirtimeFn = Callable[..., float]
Node = Station  # a registered node: a Station whose owner is its UDP address


def _default_airtime() -> AirtimeFn:
    from lorawire.airtime import time_on_air_ms

    return time_on_air_ms


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
        on_transmit: Callable[[Transmission], None] | None = None,
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
        self.on_transmit = on_transmit  # called as each transmission begins
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self.air = Air(topology, seed)
        self.by_addr: dict[tuple[str, int], Station] = {}
        self.by_name = self.air.by_name
        self._timers: set[asyncio.TimerHandle] = set()
        self.counters = self.air.counters  # the fates, plus what the medium refused
        self.counters["rejected"] = 0
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
                if node is not None:
                    self.air.leave(node)
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
        if old is not None and old.owner != addr:
            self.by_addr.pop(old.owner, None)  # same node restarted on a new port
        node = self.by_addr.get(addr)
        if node is None or node.name != name:
            if len(self.by_addr) >= MAX_NODES and addr not in self.by_addr:
                raise ValueError("too many nodes")
            if node is not None:
                self.air.leave(node)  # this address now speaks for another name
            node = Station(name, node_id, params, owner=addr)
            self.by_addr[addr] = node
            if name not in self.topology.nodes:
                self._log(f"meshsim: node {name!r} is not in the topology: it hears nobody")
        else:
            node.params = params
            node.node_id = node_id
        self.air.join(node)
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

    # -- the physics (air.Air) and the clock ------------------------------------

    def transmit(
        self, node: Station, seq: int, params: Params, payload: bytes, now: float, airtime_ms: float
    ) -> Transmission:
        tx = self.air.begin(node, seq, params, payload, now, airtime_ms)
        if self.on_transmit is not None:
            self.on_transmit(tx)
        assert self._loop is not None
        tx.handle = self._loop.call_at(self._t0 + tx.end / self.speed, self._finish, tx)
        self._timers.add(tx.handle)
        return tx

    def _finish(self, tx: Transmission) -> None:
        if tx.handle is not None:
            self._timers.discard(tx.handle)
        sender = tx.sender
        if self.by_addr.get(sender.owner) is sender:
            self._done(sender.owner, tx.seq, ST_OK, tx.airtime_ms, tx.end)
        for d in self.air.finish(tx):
            kind = T_RX_CRC if d.corrupted else T_RX
            hdr = struct.pack(RX_FMT, kind, d.rssi, d.snr_q, d.start, d.end)
            self._send(hdr + d.payload, d.station.owner)

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


def frame_record(tx: Transmission) -> dict[str, Any]:
    """One transmission as a line of the frame log (`--frames`): start (simulated s),
    sender name, length, time on air (ms), and the frame's message type and hop count
    (bytes 1 and 2 of a Lorachain frame; null for a shorter payload)."""
    p = tx.payload
    return {
        "t": round(tx.start, 6),
        "name": tx.sender.name,
        "len": len(p),
        "airtime_ms": tx.airtime_ms,
        "type": p[1] if len(p) > 2 else None,
        "hops": p[2] & 0x0F if len(p) > 2 else None,
    }


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
    on_transmit: Callable[[Transmission], None] | None = None,
) -> Medium:
    """Run a medium until `stop` is set (or the task is cancelled); returns it, closed."""
    medium = Medium(
        topology,
        speed=speed,
        seed=seed,
        host=host,
        port=port,
        log=lambda m: print(m, file=sys.stderr, flush=True),
        on_transmit=on_transmit,
    )
    await medium.start()
    if ready is not None:
        ready(medium.address)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        medium.close()
    return medium
