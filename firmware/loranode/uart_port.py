"""A UART byte port: machine.UART on a board, a tty/pty path on the unix port and CPython.

    port = UartPort(path="/dev/pts/3")                 # unix port / CPython
    port = UartPort(uart_id=1, baud=115200, tx=17, rx=16)  # board (machine imported lazily)
    data = port.read_available()      # bytes, b"" when nothing waits; never blocks
    n = port.write(data)              # bytes accepted now (maybe fewer); never blocks
    await port.wait_readable(50)      # lets other asyncio tasks run meanwhile

A tty path is opened read/write and put in raw mode by hand (the flags of cfmakeraw: no
echo, no canonical lines, no CR/LF translation, no signals, 8 bits, no parity) with
VMIN=0/VTIME=0, because a read on a tty in the default mode blocks until a line or a
byte arrives (DESIGN.md, MicroPython traps). MicroPython's `termios` has no flag
constants, so the Linux values below are used where the module lacks them.

Writes never block: MicroPython cannot open a file O_NONBLOCK, so a tty is written in
chunks of at most WRITE_CHUNK bytes and only while poll() reports it writable (Linux
reports a tty writable while fewer than 256 bytes wait in it, far below its buffer).
On CPython the fd is opened O_NONBLOCK. A board UART's write() copies into the driver's
transmit buffer.

Errors: OSError from the device propagates from read_available / write; a tty whose
other end is gone (hang-up: reads return EOF, poll says POLLHUP) raises OSError(5, EIO)
from read_available. The caller decides when to reopen (`open()` / `reopen()`).
"""

import sys

try:
    import select
except ImportError:  # pragma: no cover - every supported runtime has select
    select = None

try:
    import asyncio
except ImportError:  # pragma: no cover
    asyncio = None

try:  # MicroPython: park the task in the scheduler's own poller
    from asyncio import core as _core

    _IOQ = _core._io_queue
except (ImportError, AttributeError):
    _IOQ = None

_CPYTHON = sys.implementation.name == "cpython"

READ_MAX = 512  # bytes taken per read_available call
WRITE_CHUNK = 128  # bytes per tty write (never blocks while poll says POLLOUT)
POLL_MS = 5  # fallback wait granularity

# Linux termios values (MicroPython's termios exports none of these).
_LINUX = {
    "IGNBRK": 0o1,
    "BRKINT": 0o2,
    "PARMRK": 0o10,
    "ISTRIP": 0o40,
    "INLCR": 0o100,
    "IGNCR": 0o200,
    "ICRNL": 0o400,
    "IXON": 0o2000,
    "OPOST": 0o1,
    "ECHO": 0o10,
    "ECHONL": 0o100,
    "ICANON": 0o2,
    "ISIG": 0o1,
    "IEXTEN": 0o100000,
    "CSIZE": 0o60,
    "PARENB": 0o400,
    "CS8": 0o60,
    "VTIME": 5,
    "VMIN": 6,
}


def _tc(termios, name):
    return getattr(termios, name, _LINUX[name])


def make_raw(fd, baud=None):
    """Put the tty `fd` in raw mode with VMIN=0/VTIME=0 (and `baud` if the module knows
    the rate). False when this runtime has no termios (a board: nothing to do)."""
    try:
        import termios
    except ImportError:
        return False
    a = termios.tcgetattr(fd)
    a[0] &= ~(
        _tc(termios, "IGNBRK")
        | _tc(termios, "BRKINT")
        | _tc(termios, "PARMRK")
        | _tc(termios, "ISTRIP")
        | _tc(termios, "INLCR")
        | _tc(termios, "IGNCR")
        | _tc(termios, "ICRNL")
        | _tc(termios, "IXON")
    )
    a[1] &= ~_tc(termios, "OPOST")
    a[3] &= ~(
        _tc(termios, "ECHO")
        | _tc(termios, "ECHONL")
        | _tc(termios, "ICANON")
        | _tc(termios, "ISIG")
        | _tc(termios, "IEXTEN")
    )
    a[2] &= ~(_tc(termios, "CSIZE") | _tc(termios, "PARENB"))
    a[2] |= _tc(termios, "CS8")
    if baud is not None:
        speed = getattr(termios, "B%d" % baud, None)
        if speed is not None:
            a[4] = speed
            a[5] = speed
    cc = a[6]
    cc[_tc(termios, "VMIN")] = 0
    cc[_tc(termios, "VTIME")] = 0
    termios.tcsetattr(fd, termios.TCSANOW, a)
    return True


class UartPort:
    """Non-blocking byte port over a board UART or a tty path (see module docstring)."""

    def __init__(self, path=None, uart_id=None, baud=115200, tx=None, rx=None):
        if path is None and uart_id is None:
            raise ValueError("UartPort needs a tty path or a board uart id")
        self.path = path
        self.uart_id = uart_id
        self.baud = baud
        self.tx_pin = tx
        self.rx_pin = rx
        self._dev = None  # machine.UART or a file object (MicroPython tty)
        self._fd = None  # CPython tty: os-level fd
        self._poll = None
        self._wpoll = None
        self._waiting = False
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.opens = 0
        self.open()

    # --- opening ---------------------------------------------------------------------

    def open(self):
        if self.path is None:
            self._open_board()
        elif _CPYTHON:
            import os

            # the ESP32 stubs' os has no O_* flags; this branch runs on CPython only
            flags = os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK  # type: ignore[attr-defined]
            self._fd = os.open(self.path, flags)
            make_raw(self._fd, self.baud)
        else:
            f = open(self.path, "r+b", 0)
            try:
                make_raw(f.fileno(), self.baud)
            except OSError:
                f.close()
                raise
            self._dev = f
        if select is not None and self.path is not None:
            obj = self._dev if self._fd is None else self._fd
            self._poll = select.poll()
            self._poll.register(obj, select.POLLIN)
            self._wpoll = select.poll()
            self._wpoll.register(obj, select.POLLOUT)
        self.opens += 1

    def _open_board(self):
        from machine import UART  # lazily: absent on the unix port and CPython

        if self.tx_pin is None:
            self._dev = UART(self.uart_id, baudrate=self.baud)
        else:
            self._dev = UART(self.uart_id, baudrate=self.baud, tx=self.tx_pin, rx=self.rx_pin)

    def close(self):
        if self._fd is not None:
            import os

            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if self._dev is not None and self.path is not None:
            try:
                self._dev.close()
            except OSError:
                pass
        self._dev = None
        self._poll = None
        self._wpoll = None

    def reopen(self):
        """Close and open again (after an I/O error); OSError if the device is not back."""
        self.close()
        self.open()

    @property
    def is_open(self):
        return self._dev is not None or self._fd is not None

    def _device(self):
        """The open machine.UART or tty file; OSError(EBADF) once the port is closed."""
        dev = self._dev
        if dev is None:
            raise OSError(9, "port closed")
        return dev

    def fileno(self):
        if self._fd is not None:
            return self._fd
        return self._device().fileno()

    # --- bytes -------------------------------------------------------------------------

    def read_available(self):
        """Whatever bytes are waiting (b"" if none); OSError if the device failed."""
        if self._fd is not None:
            import os

            try:
                data = os.read(self._fd, READ_MAX)
            except BlockingIOError:
                return b""
        elif self.path is None:
            dev = self._device()
            n = dev.any()
            if not n:
                return b""
            data = dev.read(n if n < READ_MAX else READ_MAX)
        else:
            data = self._device().read(READ_MAX)  # VMIN=0/VTIME=0: returns at once
        if not data:
            self._check_hangup()
            return b""
        self.rx_bytes += len(data)
        return data

    def _check_hangup(self):
        # A tty whose other side went away reads as empty (EOF), not as an error, and
        # polls as always ready: report it so the caller closes and reopens.
        if self._poll is None:
            return
        for ev in self._poll.poll(0):
            if ev[1] & (select.POLLHUP | select.POLLERR):
                raise OSError(5, "tty hung up")

    def _writable(self):
        if self._wpoll is None:
            return self.path is None
        for ev in self._wpoll.poll(0):
            if ev[1] & select.POLLOUT:
                return True
        return False

    def write(self, data):
        """Write as much of `data` as fits now without blocking; the count written."""
        if self._fd is not None:
            import os

            try:
                n = os.write(self._fd, data)
            except BlockingIOError:
                return 0
        elif self.path is None:
            n = self._device().write(data) or 0
        else:
            n = 0
            mv = memoryview(data)
            while n < len(data) and self._writable():
                k = self._device().write(mv[n : n + WRITE_CHUNK])
                if not k:
                    break
                n += k
        self.tx_bytes += n
        return n

    def writable(self):
        """True if write() would accept at least some bytes now."""
        return self._writable()

    def readable_now(self):
        """True if bytes (or an error/hang-up) are waiting."""
        if self._poll is None:
            return self.path is None and bool(self._device().any())
        return bool(self._poll.poll(0))

    async def wait_readable(self, timeout_ms):
        """Return when bytes may be waiting, or after timeout_ms; other tasks run meanwhile."""
        if self._waiting or not self.is_open:
            await _sleep_ms(POLL_MS if timeout_ms > POLL_MS else max(1, timeout_ms))
            return
        self._waiting = True
        try:
            await _wait_readable(self, timeout_ms)
        finally:
            self._waiting = False


async def _sleep_ms(ms):
    f = getattr(asyncio, "sleep_ms", None)
    if f is not None:
        await f(ms)
    else:
        await asyncio.sleep(ms / 1000)


if _IOQ is not None:

    def _readable(obj):
        yield _IOQ.queue_read(obj)

    async def _wait_readable(port, timeout_ms):
        if port.readable_now():
            return
        obj = port._dev if port._fd is None else port._fd
        try:
            await asyncio.wait_for_ms(_readable(obj), timeout_ms)
        except asyncio.TimeoutError:
            pass

elif _CPYTHON:

    async def _wait_readable(port, timeout_ms):
        if port.readable_now():
            return
        loop = asyncio.get_running_loop()  # type: ignore[attr-defined]  # CPython branch
        fut = loop.create_future()
        fd = port.fileno()

        def ready():
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await asyncio.wait_for(fut, timeout_ms / 1000)
        except asyncio.TimeoutError:
            pass
        finally:
            loop.remove_reader(fd)

else:  # pragma: no cover - an asyncio without the io queue: poll

    async def _wait_readable(port, timeout_ms):
        await _sleep_ms(POLL_MS if timeout_ms > POLL_MS else max(1, timeout_ms))
