# mypy: ignore-errors
"""A `machine` module for the unix port: the ESP32's Pin, SPI and SoftSPI, wired to an
emulated radio chip as the board is.

The unix port's own `machine` has no Pin or SPI. chipsim/boot.py installs this module as
`machine` (in sys.modules, before the firmware runs), so micropython-lib's drivers and
loranode.radio_lora.make_modem() run unchanged: `from machine import Pin`, then
`machine.SPI(1, baudrate=..., sck=Pin(5), mosi=Pin(27), miso=Pin(19))` and so on.

`wire(board)` connects a `Board`: which GPIO goes to which chip pin. The chip's inputs
(NSS, NRESET, and the SPI bus) follow what the firmware drives; its outputs (DIOx,
BUSY) are what the firmware reads, and their edges call the handlers given to
`Pin.irq`. Those run as ESP32 soft IRQs do: queued with micropython.schedule and run
between bytecodes; when the scheduler queue is full the IRQ is lost, as on the board
(counted in Board.irq_lost).

Faithful to the ESP32 port where the drivers can tell: the constant values (IN 1, OUT
3, IRQ_RISING 1, IRQ_FALLING 2, ...), one state per GPIO whichever Pin object touches
it, Pin(n) without a mode keeping the current one, SPI ids 1 and 2 only. A GPIO that is
not wired to the chip is a plain GPIO: it reads back what it drives, 0 as an input; an
SPI bus on pins that do not reach the chip reads 0 (MISO undriven). Driving a chip
output, or clocking the chip in a mode or at a speed it does not take, raises
chipsim.faults.ChipFault.
"""

from .faults import fault

try:
    from micropython import schedule
except ImportError:  # CPython: call at once

    def schedule(fn, arg):
        fn(arg)


CHIP_INPUTS = ("nss", "nreset")
CHIP_OUTPUTS = ("dio0", "dio1", "dio3", "busy")
SPI_NETS = ("sck", "mosi", "miso")
SPI_IDS = (1, 2)  # ESP32: SPI(1) HSPI and SPI(2) VSPI; 0 is the flash

_board = None


def wire(board):
    """Make `board` the hardware every Pin and SPI of this module talks to."""
    global _board
    _board = board


def board():
    return _board


HISTORY = 8  # levels kept per GPIO (what a logic analyser on that pin would show)


class _Gpio:
    __slots__ = ("num", "net", "mode", "out", "handler", "trigger", "pin", "last", "history")

    def __init__(self, num, net):
        self.num = num
        self.net = net
        self.mode = None
        self.out = 0
        self.handler = None
        self.trigger = 0
        self.pin = None  # the Pin object handed to IRQ handlers
        self.last = 0  # last level seen on a chip output
        self.history = []  # the last levels it drove


class Board:
    """A chip and the GPIO numbers of its pins: {"nss": 18, "sck": 5, ...}.

    Nets: nss, sck, mosi, miso, nreset (chip inputs) and dio0, dio1, dio3, busy (chip
    outputs); absent ones are not wired."""

    def __init__(self, chip, pins):
        self.chip = chip
        self.pins = dict(pins)
        self._gpio = {}
        self.irq_lost = 0
        self.irqs = 0
        self.transactions = 0  # NSS falling edges: SPI transactions with the chip
        for net, num in self.pins.items():
            if net not in CHIP_INPUTS + CHIP_OUTPUTS + SPI_NETS:
                raise ValueError("unknown chip pin %r" % net)
            if num is not None:
                self._gpio[num] = _Gpio(num, net)
        chip.on_outputs = self.outputs_changed

    def gpio(self, num):
        g = self._gpio.get(num)
        if g is None:
            g = self._gpio[num] = _Gpio(num, None)
        return g

    def drive(self, g, level):
        if g.net in CHIP_OUTPUTS:
            raise fault("board", "GPIO %d drives the chip's %s output" % (g.num, g.net.upper()))
        g.out = 1 if level else 0
        g.history.append(g.out)
        del g.history[:-HISTORY]
        if g.net == "nss":
            if not g.out:
                self.transactions += 1
            self.chip.set_nss(g.out)
        elif g.net == "nreset":
            self.chip.set_nreset(g.out)

    def read(self, g):
        if g.net in CHIP_OUTPUTS:
            return self.chip.level(g.net)
        if g.mode is None or g.mode == Pin.IN:
            return 0 if g.net is None else g.out
        return g.out

    def outputs_changed(self):
        for g in self._gpio.values():
            if g.net not in CHIP_OUTPUTS:
                continue
            level = self.chip.level(g.net)
            if level == g.last:
                continue
            g.last = level
            edge = Pin.IRQ_RISING if level else Pin.IRQ_FALLING
            if g.handler is not None and g.trigger & edge:
                self.irqs += 1
                try:
                    schedule(g.handler, g.pin)
                except RuntimeError:  # "schedule queue full": the ESP32 drops it too
                    self.irq_lost += 1

    def spi_reaches_chip(self, sck, mosi, miso):
        p = self.pins
        return sck == p.get("sck") and mosi == p.get("mosi") and miso == p.get("miso")


def _num(pin):
    if pin is None:
        return None
    return pin.id if isinstance(pin, Pin) else pin


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        if _board is None:
            raise fault("board", "machine.Pin(%r) with no board wired (chipsim.machine.wire)" % id)
        if not isinstance(id, int) or not 0 <= id <= 48:
            raise ValueError("invalid pin")
        self.id = id
        self._g = _board.gpio(id)
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        g = self._g
        if mode != -1 and mode is not None:
            if mode not in (Pin.IN, Pin.OUT, Pin.OPEN_DRAIN):
                raise ValueError("invalid pin mode")
            g.mode = mode
        if value is not None:
            g.out = 1 if value else 0
        if g.mode in (Pin.OUT, Pin.OPEN_DRAIN) and (value is not None or mode == Pin.OUT):
            _board.drive(g, g.out)

    def value(self, v=None):
        g = self._g
        if v is None:
            return _board.read(g)
        if g.mode not in (Pin.OUT, Pin.OPEN_DRAIN):
            g.out = 1 if v else 0  # the ESP32 keeps it for when the pin becomes an output
            return None
        _board.drive(g, v)
        return None

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, *, priority=1, wake=None, hard=False):
        g = self._g
        g.handler = handler
        g.trigger = trigger
        g.pin = self
        if g.net in CHIP_OUTPUTS:
            g.last = _board.chip.level(g.net)
        return None


class SPI:
    MSB = 0
    LSB = 1
    CHECK_ID = True

    def __init__(self, id=1, *args, **kwargs):
        if self.CHECK_ID and id not in SPI_IDS:
            raise ValueError("SPI(%s) doesn't exist" % (id,))
        self.id = id
        self.init(*args, **kwargs)

    def init(
        self,
        baudrate=1000000,
        *,
        polarity=0,
        phase=0,
        bits=8,
        firstbit=0,
        sck=None,
        mosi=None,
        miso=None,
    ):
        self.baudrate = baudrate
        self.polarity = polarity
        self.phase = phase
        self.bits = bits
        self.firstbit = firstbit
        self.sck, self.mosi, self.miso = _num(sck), _num(mosi), _num(miso)

    def deinit(self):
        pass

    def _chip(self):
        b = _board
        if b is None or not b.spi_reaches_chip(self.sck, self.mosi, self.miso):
            return None
        chip = b.chip
        if self.polarity or self.phase or self.bits != 8 or self.firstbit != SPI.MSB:
            raise fault(
                chip.NAME,
                "SPI polarity %d phase %d, %d bits, firstbit %d: the chip takes mode 0, "
                "8 bits, MSB first" % (self.polarity, self.phase, self.bits, self.firstbit),
            )
        if self.baudrate > chip.SPI_MAX_HZ:
            raise fault(
                chip.NAME, "SPI at %d Hz, above the chip's %d Hz" % (self.baudrate, chip.SPI_MAX_HZ)
            )
        return chip

    def write(self, buf):
        chip = self._chip()
        if chip is not None:
            for b in buf:
                chip.exchange(b)

    def readinto(self, buf, write=0x00):
        chip = self._chip()
        for i in range(len(buf)):
            buf[i] = chip.exchange(write) if chip is not None else 0

    def read(self, nbytes, write=0x00):
        buf = bytearray(nbytes)
        self.readinto(buf, write)
        return bytes(buf)

    def write_readinto(self, write_buf, read_buf):
        if len(write_buf) != len(read_buf):
            raise ValueError("buffers must be the same length")
        chip = self._chip()
        for i in range(len(write_buf)):
            b = write_buf[i]
            read_buf[i] = chip.exchange(b) if chip is not None else 0


class SoftSPI(SPI):
    CHECK_ID = False

    def __init__(self, *args, **kwargs):
        SPI.__init__(self, -1, *args, **kwargs)
