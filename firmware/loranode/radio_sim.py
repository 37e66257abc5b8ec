"""SimRadio: a radio that talks UDP on loopback to the meshsim medium.

Runs on the MicroPython unix port and on CPython (tests, tools). The datagram protocol
is lorawire.simproto, the one definition the medium uses too (a unix-port-only module,
like this one: a board never gets either).
"""

import socket
import struct
import sys

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

try:
    import select
except ImportError:  # pragma: no cover - every supported runtime has select
    select = None

from loranode.radio import (
    POLL_MS,
    Radio,
    check_payload,
    sleep_ms,
    ticks_diff,
    ticks_ms,
)
from lorawire.simproto import (  # noqa: F401 - re-exported: the radio's protocol, for tests
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_NAME,
    REGISTER_FMT,
    REGISTERED_FMT,
    RX_FMT,
    ST_BAD_PARAMS,
    ST_BUSY,
    ST_OK,
    ST_UNREGISTERED,
    T_BYE,
    T_REGISTER,
    T_REGISTERED,
    T_RX,
    T_STATS,
    T_STATS_JSON,
    T_TX,
    T_TX_DONE,
    TX_DONE_FMT,
    TX_FMT,
)

_CPYTHON = sys.implementation.name == "cpython"

try:
    import asyncio
except ImportError:  # pragma: no cover
    asyncio = None

try:  # MicroPython: wait on the socket through the scheduler's own poller
    from asyncio import core as _core

    _IOQ = _core._io_queue
except (ImportError, AttributeError):
    _IOQ = None

RX_HDR = struct.calcsize(RX_FMT)
RX_QUEUE_LEN = const(8)  # frames waiting for recv(); oldest dropped (counted) beyond this
RECV_MAX = const(512)
REGISTER_TIMEOUT_MS = const(1000)
REGISTER_TRIES = const(3)
# Real-time bound on one transmission: SF12/125 kHz 255 bytes is ~9.2 s at speed 1.
SEND_TIMEOUT_MS = const(20000)

_EAGAIN = (11, 35)  # Linux, BSD/macOS


class SimRadio(Radio):
    """Radio over the meshsim medium. `node_id` is 8 bytes; `name` (<= 32 chars)
    is how the topology file knows this node (default: node id in hex)."""

    def __init__(self, node_id, name=None, host=DEFAULT_HOST, port=DEFAULT_PORT):
        Radio.__init__(self)
        if len(node_id) != 8:
            raise ValueError("node_id must be 8 bytes")
        if name is None:
            import binascii

            name = binascii.hexlify(node_id).decode()
        name_b = name.encode()
        if not 0 < len(name_b) <= MAX_NAME:
            raise ValueError("name must be 1..{} bytes".format(MAX_NAME))
        self.node_id = bytes(node_id)
        self.name = name
        self._name_b = name_b
        self._addr = socket.getaddrinfo(host, port)[0][-1]
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.connect(self._addr)
        self._sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN)
        self._seq = 0
        self._registered = False
        self._done = None  # last TX_DONE (type, seq, status, airtime_ms, sim_end_s)
        self._reg = None  # last REGISTERED
        self._waiting = False  # a task is parked on the socket
        self._q = [None] * RX_QUEUE_LEN
        self._q_head = 0
        self._q_len = 0
        self.speed = 1.0
        self.sim_time = 0.0  # medium's simulated clock (s) at the last answer
        self.last_rx_time = None  # (sim_start_s, sim_end_s) of the last frame returned

    # -- socket helpers ------------------------------------------------------

    def _read(self):
        """One datagram or None (nothing waiting)."""
        try:
            return self._sock.recv(RECV_MAX)
        except OSError as e:
            if e.args and e.args[0] in _EAGAIN:
                return None
            raise

    def _wait(self, timeout_ms):
        return bool(self._poll.poll(max(0, timeout_ms)))

    def _push(self, item):
        if self._q_len == RX_QUEUE_LEN:
            self._q_head = (self._q_head + 1) % RX_QUEUE_LEN
            self._q_len -= 1
            self.rx_dropped += 1
        self._q[(self._q_head + self._q_len) % RX_QUEUE_LEN] = item
        self._q_len += 1

    def _pop(self):
        if not self._q_len:
            return None
        item = self._q[self._q_head]
        self._q[self._q_head] = None
        self._q_head = (self._q_head + 1) % RX_QUEUE_LEN
        self._q_len -= 1
        return item

    def _dispatch(self, data):
        """Queue an RX frame, or keep the latest TX_DONE / REGISTERED answer.

        Answers are kept (not returned) because whichever task happens to read
        the socket may not be the one waiting for them."""
        if not data:
            return
        t = data[0]
        if t == T_RX and len(data) > RX_HDR:
            _, rssi, snr_q, t0, t1 = struct.unpack(RX_FMT, data[:RX_HDR])
            self._push((bytes(data[RX_HDR:]), rssi, snr_q / 4, t0, t1))
        elif t == T_TX_DONE and len(data) == struct.calcsize(TX_DONE_FMT):
            self._done = struct.unpack(TX_DONE_FMT, data)
        elif t == T_REGISTERED and len(data) == struct.calcsize(REGISTERED_FMT):
            self._reg = struct.unpack(REGISTERED_FMT, data)
        # anything else: ignored

    def _pump(self):
        """Dispatch every datagram waiting on the socket."""
        while True:
            data = self._read()
            if data is None:
                return
            self._dispatch(data)

    # -- interface -----------------------------------------------------------

    def configure(self, freq_hz, sf, bw_hz, coding_rate=5, tx_power_dbm=14):
        self._set_config(freq_hz, sf, bw_hz, coding_rate, tx_power_dbm)
        self._register()

    def _register(self):
        msg = (
            struct.pack(
                REGISTER_FMT,
                T_REGISTER,
                self.node_id,
                self.freq_hz,
                self.sf,
                self.bw_hz,
                self.tx_power_dbm,
                self.coding_rate,
            )
            + self._name_b
        )
        for _ in range(REGISTER_TRIES):
            self._reg = None
            self._sock.send(msg)
            start = ticks_ms()
            while True:
                left = REGISTER_TIMEOUT_MS - ticks_diff(ticks_ms(), start)
                if left <= 0 or not self._wait(left):
                    break
                self._pump()
                if self._reg is not None:
                    self.sim_time = self._reg[1]
                    self.speed = self._reg[2]
                    self._registered = True
                    return
        raise OSError(110, "meshsim medium did not answer REGISTER")

    def _tx_msg(self, payload):
        if not self._registered:
            raise OSError(107, "SimRadio.configure() not called")
        check_payload(payload)
        self._seq = (self._seq + 1) & 0xFFFF
        self._done = None
        hdr = struct.pack(
            TX_FMT,
            T_TX,
            self._seq,
            self.freq_hz,
            self.sf,
            self.bw_hz,
            self.tx_power_dbm,
            self.coding_rate,
        )
        return hdr + bytes(payload)

    def _tx_result(self):
        """airtime_ms once the TX_DONE for the current frame is in, else None."""
        ans = self._done
        if ans is None or ans[1] != self._seq:
            return None
        self._done = None
        _, seq, status, airtime_ms, sim_end = ans
        self.sim_time = sim_end
        if status == ST_OK:
            self.tx_frames += 1
            self.tx_airtime_ms += airtime_ms
            return airtime_ms
        if status == ST_BAD_PARAMS:
            raise ValueError("medium rejected the radio parameters or payload")
        if status == ST_UNREGISTERED:
            self._registered = False
            raise OSError(107, "medium does not know this node (restarted?)")
        raise OSError(16, "medium says the radio is busy")

    def send(self, payload):
        """Transmit and block until the medium reports TX_DONE; returns airtime_ms."""
        msg = self._tx_msg(payload)
        for attempt in range(2):
            self._sock.send(msg)
            start = ticks_ms()
            try:
                while True:
                    self._pump()
                    r = self._tx_result()
                    if r is not None:
                        return r
                    left = SEND_TIMEOUT_MS - ticks_diff(ticks_ms(), start)
                    if left <= 0:
                        raise OSError(110, "meshsim medium did not answer TX")
                    self._wait(left)
            except OSError as e:
                if attempt == 0 and e.args and e.args[0] == 107 and self._sock is not None:
                    self._register()  # medium restarted: join again, resend once
                    continue
                raise
        raise OSError(110, "meshsim send failed")

    async def asend(self, payload):
        """Transmit without blocking the event loop; returns airtime_ms.
        Safe while another task is parked in arecv()."""
        msg = self._tx_msg(payload)
        self._sock.send(msg)
        start = ticks_ms()
        while True:
            self._pump()
            r = self._tx_result()
            if r is not None:
                return r
            left = SEND_TIMEOUT_MS - ticks_diff(ticks_ms(), start)
            if left <= 0:
                raise OSError(110, "meshsim medium did not answer TX")
            await self._await_socket(left)

    def recv(self):
        """(payload, rssi_dbm, snr_db) or None; never blocks."""
        item = self._pop()
        if item is None:
            self._pump()
            item = self._pop()
            if item is None:
                return None
        self.rx_frames += 1
        self.last_rx_time = (item[3], item[4])
        if item[4] > self.sim_time:
            self.sim_time = item[4]
        return (item[0], item[1], item[2])

    async def arecv(self, timeout_ms=None):
        start = ticks_ms()
        while True:
            pkt = self.recv()
            if pkt is not None:
                return pkt
            if timeout_ms is None:
                left = None
            else:
                left = timeout_ms - ticks_diff(ticks_ms(), start)
                if left <= 0:
                    return None
            await self._await_socket(left)

    async def _await_socket(self, timeout_ms):
        # The scheduler lets one task at a time wait on a socket (MicroPython's
        # IOQueue asserts; CPython's add_reader replaces the previous reader), so a
        # second waiter polls instead; whatever the first one reads is dispatched
        # into shared state, so nothing is lost.
        if self._waiting:
            await sleep_ms(POLL_MS if timeout_ms is None else max(1, min(POLL_MS, timeout_ms)))
            return
        self._waiting = True
        try:
            await _wait_readable(self._sock, timeout_ms)
        finally:
            self._waiting = False

    def close(self):
        if self._sock is not None:
            try:
                if self._registered:
                    self._sock.send(bytes([T_BYE]))
            except OSError:
                pass
            self._sock.close()
            self._sock = None
            self._registered = False


# -- waiting for the socket inside asyncio --------------------------------------

if _IOQ is not None:

    def _readable(sock):
        # A generator is a coroutine on MicroPython: park the task in the
        # scheduler's poller until the socket is readable.
        yield _IOQ.queue_read(sock)

    async def _wait_readable(sock, timeout_ms):
        if timeout_ms is None:
            await _readable(sock)
            return True
        try:
            await asyncio.wait_for_ms(_readable(sock), timeout_ms)
            return True
        except asyncio.TimeoutError:
            return False

elif _CPYTHON:

    async def _readable_cpy(sock):
        loop = asyncio.get_running_loop()  # type: ignore[attr-defined]  # CPython branch
        fut = loop.create_future()
        fd = sock.fileno()

        def ready():
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await fut
        finally:
            loop.remove_reader(fd)

    async def _wait_readable(sock, timeout_ms):
        if timeout_ms is None:
            await _readable_cpy(sock)
            return True
        try:
            await asyncio.wait_for(_readable_cpy(sock), timeout_ms / 1000)
            return True
        except asyncio.TimeoutError:
            return False

else:  # pragma: no cover - an asyncio without the io queue: poll

    async def _wait_readable(sock, timeout_ms):
        await sleep_ms(POLL_MS if timeout_ms is None else min(POLL_MS, timeout_ms))
        return True
