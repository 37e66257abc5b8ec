"""The gateway's serial port to a bridge board: COBS + CRC-16 packets, never blocking the loop.

Design (why not pyserial-asyncio): pyserial opens and configures the port (baud, raw mode,
`exclusive=True` flock, DTR/RTS left low so an ESP32 board is not reset by the open), then
the event loop watches the file descriptor itself with `loop.add_reader`/`add_writer` and
reads/writes it with `os.read`/`os.write` (the fd is opened O_NONBLOCK by pyserial). That
works for tty devices and pseudo-terminals on Linux, needs no thread, and lets us see the
exact errno when the device goes away, which is what reconnecting hinges on.

Life cycle: `start()` runs a supervisor task. It opens the port; on failure it retries with
exponential backoff (`backoff_min` .. `backoff_max`, 0.2 s .. 5 s). The first failed open
is logged as a WARNING naming the port and the OS error, then at most one WARNING per
`open_warn_interval` (60 s) while it keeps failing (the rest at DEBUG); the open is
logged at INFO with the number of failed attempts before it. While connected a
read of EOF, EIO, ENXIO, ENODEV or any other OSError, a write error, or the port path
vanishing (checked every `watch_interval` s, for devices that disappear without a read
error) closes the port, reports "disconnected" and goes back to reopening. Each new
connection starts with a fresh `StreamDecoder` (a half packet from the old connection is
garbage), counters accumulate over connections.

Framing: every outgoing packet is written as 0x00 + encode_packet(payload). The leading
delimiter costs one byte and ends any line noise that came before it, so noise between
packets loses no packet; noise inside a packet loses that packet only. Bytes that are not
part of an accepted packet (noise, broken packets, stray delimiters) are counted in
`garbage_bytes`.

Writes: `send()` puts the encoded packet on a bounded queue (`write_queue_max` packets);
it waits for room while connected and returns False when the link is down (the packet is
dropped and counted: the caller decides whether to retry). `send_nowait()` never waits.
The queue is cleared on disconnect: packets for a board that went away are stale.

Listeners run on the loop: `on_packet(payload)` for each intact packet, `on_state(state)`
with "connected" / "disconnected" (`Listeners`: a session layer such as
`mesh.link.MeshLink` adds itself after construction). An exception in a listener is
logged and counted (`callback_errors`), never kills the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
from collections.abc import Callable
from typing import Any

import serial

from loragate.listeners import Listeners
from lorawire import uart

log = logging.getLogger(__name__)

WRITE_QUEUE_MAX = 64
READ_CHUNK = 4096
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
WATCH_INTERVAL_S = 1.0
OPEN_WARN_INTERVAL_S = 60.0

CONNECTED = "connected"
DISCONNECTED = "disconnected"
CLOSED = "closed"

# Errors that mean "the device is gone" (others are treated the same, but logged louder).
GONE_ERRNOS = frozenset({errno.EIO, errno.ENXIO, errno.ENODEV, errno.EBADF, errno.ENOENT})


def open_serial(port: str, baud: int) -> serial.Serial:
    """Open `port` without pulsing DTR/RTS (they reset ESP32 boards), exclusive, non-blocking."""
    ser = serial.Serial()
    ser.port = port
    ser.baudrate = baud
    ser.timeout = 0
    ser.write_timeout = 0
    ser.exclusive = True
    ser.dsrdtr = False
    ser.rtscts = False
    ser.xonxoff = False
    # Set before open: pyserial then applies the low state during open instead of the
    # default high; on a pty the modem-line ioctls fail and pyserial ignores that.
    ser.dtr = False
    ser.rts = False
    ser.open()
    return ser


def open_error_text(exc: BaseException) -> str:
    """The OS reason an open failed, without pyserial's repetition of the port name."""
    code = getattr(exc, "errno", None)
    text = " ".join(str(exc).split())
    if "exclusively lock" in text:
        reason = os.strerror(code) if isinstance(code, int) and code > 0 else text
        return f"in use by another program (could not exclusively lock it: {reason})"
    if not (isinstance(code, int) and code > 0):
        # pyserial wraps a termios error as "Could not configure port: (25, '...')"
        m = re.search(r"\((\d+), '[^']*'\)", text)
        if m is None:
            return text or type(exc).__name__
        code = int(m.group(1))
        if code == errno.ENOTTY:
            return f"not a serial device: {os.strerror(code)} (errno ENOTTY)"
    return f"{os.strerror(code)} (errno {errno.errorcode.get(code, code)})"


class SerialLink:
    """A self-reconnecting packet link over a serial port (see module docstring)."""

    def __init__(
        self,
        port: str,
        baud: int,
        on_packet: Callable[[bytes], None] | None = None,
        on_state: Callable[[str], None] | None = None,
        *,
        write_queue_max: int = WRITE_QUEUE_MAX,
        backoff_min: float = BACKOFF_MIN_S,
        backoff_max: float = BACKOFF_MAX_S,
        watch_interval: float = WATCH_INTERVAL_S,
        open_warn_interval: float = OPEN_WARN_INTERVAL_S,
    ) -> None:
        if write_queue_max < 1:
            raise ValueError("write_queue_max must be >= 1")
        if not 0 < backoff_min <= backoff_max:
            raise ValueError("need 0 < backoff_min <= backoff_max")
        self.port = port
        self.baud = baud
        self.on_packet: Listeners[[bytes]] = Listeners("serial on_packet", log)
        self.on_state: Listeners[[str]] = Listeners("serial on_state", log)
        if on_packet is not None:
            self.on_packet.add(on_packet)
        if on_state is not None:
            self.on_state.add(on_state)
        self.write_queue_max = write_queue_max
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.watch_interval = watch_interval
        self.open_warn_interval = open_warn_interval
        self.state = DISCONNECTED
        # counters (over all connections)
        self.opens = 0
        self.open_failures = 0
        self.disconnects = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.packets_in = 0
        self.packets_out = 0
        self.garbage_bytes = 0
        self.send_dropped = 0
        self.last_error = ""
        self._bad_crc = 0
        self._bad_cobs = 0
        self._oversize = 0
        self._decoder = uart.StreamDecoder()
        self._segment = 0  # bytes of the current (unterminated) segment
        self._ser: serial.Serial | None = None
        self._fd = -1
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(write_queue_max)
        self._lost: asyncio.Event | None = None
        self._connected_ev: asyncio.Event | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False

    # -- public -------------------------------------------------------------------------

    @property
    def callback_errors(self) -> int:
        return self.on_packet.errors + self.on_state.errors

    @property
    def started(self) -> bool:
        return self._supervisor is not None

    @property
    def connected(self) -> bool:
        return self.state == CONNECTED

    @property
    def bad_crc(self) -> int:
        return self._bad_crc + self._decoder.bad_crc

    @property
    def bad_cobs(self) -> int:
        return self._bad_cobs + self._decoder.bad_cobs

    @property
    def oversize(self) -> int:
        return self._oversize + self._decoder.oversize

    def counters(self) -> dict[str, int]:
        return {
            "opens": self.opens,
            "open_failures": self.open_failures,
            "disconnects": self.disconnects,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
            "garbage_bytes": self.garbage_bytes,
            "bad_crc": self.bad_crc,
            "bad_cobs": self.bad_cobs,
            "oversize": self.oversize,
            "send_dropped": self.send_dropped,
            "callback_errors": self.callback_errors,
        }

    async def start(self) -> None:
        """Start the supervisor (opens the port, reconnects); returns at once."""
        if self._supervisor is not None:
            raise RuntimeError("SerialLink already started")
        self._lost = asyncio.Event()
        self._connected_ev = asyncio.Event()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"serial-{self.port}")

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the port is open (asyncio.TimeoutError after `timeout` seconds)."""
        if self._connected_ev is None:
            raise RuntimeError("SerialLink not started")
        await asyncio.wait_for(self._connected_ev.wait(), timeout)

    async def send(self, payload: bytes) -> bool:
        """Queue one packet; waits for queue room. False (dropped) when not connected."""
        data = self._encode(payload)
        while True:
            if not self.connected:
                self.send_dropped += 1
                return False
            if not self._queue.full():
                self._queue.put_nowait(data)
                return True
            lost = self._lost
            put = asyncio.ensure_future(self._queue.put(data))
            waits: set[asyncio.Future[Any]] = {put}
            if lost is not None:
                waits.add(asyncio.ensure_future(lost.wait()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    if w is not put:
                        w.cancel()
                if not put.done():
                    put.cancel()
            if put.done() and not put.cancelled():
                if not self.connected:  # queued just as the link dropped: gone with it
                    self._clear_queue()
                    return False
                return True

    def send_nowait(self, payload: bytes) -> bool:
        """Queue one packet if there is room and the link is up; False (dropped) otherwise."""
        data = self._encode(payload)
        if not self.connected or self._queue.full():
            self.send_dropped += 1
            return False
        self._queue.put_nowait(data)
        return True

    async def close(self) -> None:
        """Stop reconnecting, close the port, end every task this link started."""
        self._closing = True
        sup = self._supervisor
        if sup is not None:
            sup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sup
            self._supervisor = None
        self._close_port()
        self._clear_queue()
        self.state = CLOSED

    # -- internals ----------------------------------------------------------------------

    @staticmethod
    def _encode(payload: bytes) -> bytes:
        return b"\x00" + uart.encode_packet(payload)

    def _clear_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
            self.send_dropped += 1

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        self.on_state(state)

    async def _supervise(self) -> None:
        backoff = self.backoff_min
        lost = self._lost
        assert lost is not None and self._connected_ev is not None
        loop = asyncio.get_running_loop()
        failing = 0  # failed opens in a row
        warned_at = 0.0
        while not self._closing:
            try:
                ser = open_serial(self.port, self.baud)
            except (serial.SerialException, OSError, ValueError) as exc:
                self.open_failures += 1
                self.last_error = str(exc)
                why = open_error_text(exc)
                now = loop.time()
                failing += 1
                if failing == 1:
                    warned_at = now
                    log.warning("serial %s cannot be opened: %s (retrying)", self.port, why)
                elif now - warned_at >= self.open_warn_interval:
                    warned_at = now
                    log.warning(
                        "serial %s still cannot be opened after %d attempts: %s",
                        self.port,
                        failing,
                        why,
                    )
                else:
                    log.debug("open %s failed: %s (retry in %.1f s)", self.port, why, backoff)
                await asyncio.sleep(backoff)
                backoff = min(self.backoff_max, backoff * 2)
                continue
            backoff = self.backoff_min
            lost.clear()
            self._attach(ser)
            self.opens += 1
            after = f" (after {failing} failed attempts)" if failing else ""
            failing = 0
            log.info("serial %s open at %d baud%s", self.port, self.baud, after)
            writer = asyncio.create_task(self._writer(), name=f"serial-writer-{self.port}")
            self._connected_ev.set()
            self._set_state(CONNECTED)
            try:
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self.watch_interval)
                    if not lost.is_set() and not os.path.exists(self.port):
                        self._lose("device path vanished")
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
                self._close_port()
                self._clear_queue()
                self._connected_ev.clear()
            if self._closing:
                return
            self.disconnects += 1
            log.warning("serial %s lost: %s", self.port, self.last_error)
            self._set_state(DISCONNECTED)
            await asyncio.sleep(self.backoff_min)

    def _attach(self, ser: serial.Serial) -> None:
        self._ser = ser
        self._fd = ser.fileno()
        dec = self._decoder
        self._bad_crc += dec.bad_crc
        self._bad_cobs += dec.bad_cobs
        self._oversize += dec.oversize
        self.garbage_bytes += self._segment  # unterminated tail of the last connection
        self._decoder = uart.StreamDecoder()
        self._segment = 0
        asyncio.get_running_loop().add_reader(self._fd, self._on_readable)

    def _close_port(self) -> None:
        fd, ser = self._fd, self._ser
        self._fd = -1
        self._ser = None
        if fd >= 0:
            loop = asyncio.get_running_loop()
            loop.remove_reader(fd)
            loop.remove_writer(fd)
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()

    def _lose(self, why: str) -> None:
        self.last_error = why
        fd = self._fd
        if fd >= 0:  # stop the callbacks at once: a hung-up fd stays readable forever
            loop = asyncio.get_running_loop()
            loop.remove_reader(fd)
            loop.remove_writer(fd)
        if self._lost is not None:
            self._lost.set()

    def _on_readable(self) -> None:
        fd = self._fd
        if fd < 0:
            return
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno not in GONE_ERRNOS:
                log.warning("serial read error on %s: %s", self.port, exc)
            self._lose(f"read: {exc}")
            return
        if not data:
            self._lose("read: end of file")
            return
        self.bytes_in += len(data)
        self.feed(data)

    def feed(self, data: bytes) -> None:
        """Bytes read from the port (the reader calls it; any chunking is fine)."""
        # Feed segment by segment (each ends at a 0x00) so that every byte is either part
        # of an accepted packet or counted as garbage.
        start = 0
        n = len(data)
        while start < n:
            end = data.find(b"\x00", start)
            if end < 0:
                self._decoder.feed(data[start:])
                self._segment += n - start
                return
            piece = data[start : end + 1]
            seg = self._segment + len(piece)
            self._segment = 0
            start = end + 1
            payloads = self._decoder.feed(piece)
            if not payloads:
                if seg > 1:  # a lone delimiter is the normal packet lead-in
                    self.garbage_bytes += seg
                continue
            for payload in payloads:
                self.packets_in += 1
                self.on_packet(payload)

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await self._queue.get()
            view = memoryview(data)
            while view:
                fd = self._fd
                if fd < 0:
                    return
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    n = 0
                except OSError as exc:
                    self._lose(f"write: {exc}")
                    return
                view = view[n:]
                if view:
                    await self._writable(loop, fd)
            self.bytes_out += len(data)
            self.packets_out += 1

    async def _writable(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        fut: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_writer(fd, ready)
        try:
            # A pty whose peer stopped reading never becomes writable: re-check now and then
            # so a lost device is still noticed through the reader or the path watch.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, self.watch_interval)
        finally:
            if self._fd == fd:
                loop.remove_writer(fd)
