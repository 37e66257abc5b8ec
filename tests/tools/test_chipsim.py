"""The emulated chips' own rules, on CPython (tools/chipsim runs on both runtimes): time
on air, the SX1276 register map and modes, the SX1262 commands and BUSY, the `machine`
stand-in, and that no byte stream makes a model fail with anything but ChipFault.
With the real drivers on the board-shaped builds: tests/firmware/test_lora_drivers.py."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire.airtime import time_on_air_ms
from tools.chipsim import air, faults, toa
from tools.chipsim import machine as stand_in
from tools.chipsim.faults import ChipFault
from tools.chipsim.sx1262 import SX1262
from tools.chipsim.sx1276 import SX1276
from tools.meshsim import medium

SX1276_PINS = {"nss": 18, "sck": 5, "mosi": 27, "miso": 19, "nreset": 14, "dio0": 26, "dio1": 35}
SX1262_PINS = {"nss": 8, "sck": 9, "mosi": 10, "miso": 11, "nreset": 12, "busy": 13, "dio1": 14}


class Bus:
    """The firmware's side of a board: an SPI bus and the NSS pin, through the stand-in."""

    def __init__(self, chip: SX1276 | SX1262, pins: dict[str, int]) -> None:
        self.board = stand_in.Board(chip, pins)
        stand_in.wire(self.board)
        self.chip = chip
        self.nss = stand_in.Pin(pins["nss"], stand_in.Pin.OUT, value=1)
        self.spi = stand_in.SPI(
            1,
            sck=stand_in.Pin(pins["sck"]),
            mosi=stand_in.Pin(pins["mosi"]),
            miso=stand_in.Pin(pins["miso"]),
        )

    def xfer(self, data: bytes) -> bytes:
        buf = bytearray(data)
        try:
            self.nss(0)
            self.spi.write_readinto(buf, buf)
        finally:
            self.nss(1)
        return bytes(buf)

    # SX1276 register access (DS 4.3)
    def write(self, reg: int, *values: int) -> bytes:
        return self.xfer(bytes([reg | 0x80, *values]))[1:]

    def read(self, reg: int, n: int = 1) -> bytes:
        return self.xfer(bytes([reg] + [0] * n))[1:]


@pytest.fixture(autouse=True)
def _clean_log() -> Iterator[None]:
    faults.LOG.clear()
    yield
    stand_in.wire(None)


def _lora_sx1276() -> Bus:
    bus = Bus(SX1276(), SX1276_PINS)
    bus.write(0x01, 0x80)  # Sleep + LoRa
    bus.write(0x01, 0x81)  # Stand-by
    return bus


def _wait(cond: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.001)
    return False


# -- time on air --------------------------------------------------------------------------


@settings(max_examples=300)
@given(
    st.integers(7, 12),
    st.sampled_from([125_000, 250_000, 500_000]),
    st.integers(5, 8),
    st.integers(1, 255),
)
def test_time_on_air_equals_lorawire(sf: int, bw: int, cr: int, n: int) -> None:
    ldro = toa.symbol_us(sf, bw) >= 16_000  # what the drivers set (DS 4.1.1.6: above 16 ms)
    chip_us = toa.time_on_air_us(sf, bw, cr - 4, 8, n, True, False, ldro)
    assert abs(chip_us / 1000 - time_on_air_ms(n, sf, bw, coding_rate=cr)) < 1e-6
    assert chip_us == toa.time_on_air_us(sf, bw, cr - 4, 8, n, True, False, ldro, sx126x=True)


def test_time_on_air_reference_values() -> None:
    assert toa.time_on_air_us(7, 125_000, 1, 8, 10, True, False, False) == 41_216
    assert toa.time_on_air_us(12, 125_000, 1, 8, 10, True, False, True) == 991_232
    assert toa.time_on_air_us(9, 125_000, 1, 8, 13, True, False, False) == 164_864
    # the setting the chip was given, not the one it should have had
    with_ldro = toa.time_on_air_us(12, 125_000, 1, 8, 30, True, False, True)
    assert with_ldro / 1000 == time_on_air_ms(30, 12, 125_000)
    assert toa.time_on_air_us(12, 125_000, 1, 8, 30, True, False, False) < with_ldro
    # SX126x SF5/SF6: two more preamble symbols, eight fewer header bits (DS 6.1.4)
    # 8 + 6.25 + 8 + ceil((80 + 16 - 24 + 20) / 24) * 5 = 42.25 symbols of 0.512 ms
    assert toa.time_on_air_us(6, 125_000, 1, 8, 10, True, False, False, sx126x=True) == 21_632


# -- SX1276 -------------------------------------------------------------------------------


def test_sx1276_register_access_as_the_datasheet() -> None:
    bus = Bus(SX1276(), SX1276_PINS)
    assert bus.read(0x42) == b"\x12"  # RegVersion
    assert bus.read(0x01) == b"\x09"  # reset: FSK, LowFrequencyModeOn, Stand-by
    bus.write(0x01, 0x80)
    bus.write(0x01, 0x81)
    assert bus.write(0x39, 0x34) == b"\x12"  # MISO returns the old value while writing
    assert bus.read(0x39) == b"\x34"
    assert bus.write(0x06, 0xD9, 0x06, 0x66) == b"\x6c\x80\x00"  # burst: Frf MSB, MID, LSB
    assert bus.chip.channel()[0] == 868_099_975  # 0xD90666 * 61.035 Hz
    bus.write(0x0D, 0x00)
    bus.write(0x00, *b"abc")  # FIFO: the address stays, RegFifoAddrPtr moves
    assert bus.read(0x0D) == b"\x03"
    bus.write(0x0D, 0x00)
    assert bus.read(0x00, 3) == b"abc"
    assert faults.LOG == []


@pytest.mark.parametrize(
    ("setup", "access", "needle"),
    [
        ((), (0x42, 0x00), "read-only register 0x42"),
        ((), (0x13, 0x05), "read-only register 0x13"),
        ((), (0x03, 0x00), "no register at 0x03"),
        ((), (0x01, 0x01), "LongRangeMode changed in STDBY"),
        ((), (0x01, 0xC1), "AccessSharedReg"),
        ((), (0x01, 0x87), "CAD mode"),
        ((), (0x1D, 0x70), "CodingRate 0 is reserved"),
        ((), (0x1D, 0xA2), "Bw 0xa is reserved"),
        ((), (0x1E, 0xD4), "SpreadingFactor 13 is reserved"),
        ((), (0x4D, 0x85), "RegPaDac 0x85"),
        (((0x22, 0x00),), (0x01, 0x83), "RegPayloadLength 0"),
        (((0x1E, 0x64),), (0x01, 0x85), "SF6 needs implicit header"),
        (((0x01, 0x85),), (0x00, 0x41), "FIFO write in RXCONTINUOUS"),
        (((0x01, 0x85),), (0x1E, 0x74), "configuration register 0x1e written in RXCONTINUOUS"),
        (((0x01, 0x80),), (0x00, 0x41), "FIFO write in SLEEP"),
    ],
)
def test_sx1276_refuses_what_the_chip_would_not_accept(
    setup: tuple[tuple[int, int], ...], access: tuple[int, int], needle: str
) -> None:
    bus = _lora_sx1276()
    for reg, value in setup:
        bus.write(reg, value)
    with pytest.raises(ChipFault, match=re.escape(needle)):
        bus.write(*access)
    assert faults.LOG and needle in faults.LOG[-1]


def test_sx1276_fifo_not_readable_in_sleep_and_reset_timing() -> None:
    bus = _lora_sx1276()
    bus.write(0x01, 0x80)
    with pytest.raises(ChipFault, match="FIFO read in Sleep"):
        bus.read(0x00)
    reset = stand_in.Pin(14, stand_in.Pin.OUT, value=0)
    with pytest.raises(ChipFault, match="while NRESET is held low"):
        bus.read(0x42)
    t = time.monotonic()
    while time.monotonic() - t < 0.001:  # hold NRESET low 1 ms
        pass
    reset(1)
    with pytest.raises(ChipFault, match="less than 5 ms after reset"):
        bus.read(0x42)
    assert _wait(lambda: _ready(bus))
    assert bus.read(0x01) == b"\x09"  # every register back at its reset value


def _ready(bus: Bus) -> bool:
    try:
        bus.read(0x42)
    except ChipFault:
        return False
    return True


def test_sx1276_transmits_with_tx_done_on_dio0_and_returns_to_standby() -> None:
    bus = _lora_sx1276()
    edges: list[int] = []
    dio0 = stand_in.Pin(26, stand_in.Pin.IN)
    dio0.irq(lambda pin: edges.append(pin.value()), trigger=stand_in.Pin.IRQ_RISING)
    bus.write(0x1D, 0x92)  # 500 kHz, CR 4/5, explicit header
    bus.write(0x1E, 0x74)  # SF7, CRC on
    bus.write(0x40, 0x40)  # DIO0 = TxDone
    bus.write(0x0E, 0x00)
    bus.write(0x0D, 0x00)
    bus.write(0x00, *b"hi")
    bus.write(0x22, 2)
    bus.write(0x01, 0x83)  # TX
    assert bus.chip.transmitting
    assert _wait(lambda: (bus.read(0x12)[0] & 0x08) != 0)  # TxDone (2.6 ms on air)
    assert edges == [1] and bus.read(0x01)[0] & 7 == 1  # DIO0 rose; back in Stand-by
    bus.write(0x12, 0x08)  # clear
    assert bus.read(0x12) == b"\x00" and dio0.value() == 0


def test_sx1276_power_from_its_pa_registers() -> None:
    bus = _lora_sx1276()
    bus.write(0x09, 0x8C)  # PA_BOOST, OutputPower 12: 17 - 3
    assert bus.chip.power_dbm() == 14
    bus.write(0x4D, 0x87)
    bus.write(0x09, 0x8F)  # +20 dBm setting (DS 3.4.3)
    assert bus.chip.power_dbm() == 20
    bus.write(0x09, 0x95)  # what lora-sx127x 0.1.x writes for 20 dBm: OutputPower 5
    assert bus.chip.power_dbm() == 10
    bus.write(0x4D, 0x84)
    bus.write(0x09, 0x7F)  # RFO, MaxPower 7, OutputPower 15
    assert bus.chip.power_dbm() == 15


# -- SX1262 -------------------------------------------------------------------------------


def _sx1262(tcxo_mv: int | None = 1800) -> Bus:
    return Bus(SX1262(tcxo_mv=tcxo_mv), SX1262_PINS)


def _cmd(bus: Bus, *data: int) -> bytes:
    assert _wait(lambda: not bus.chip.busy())
    return bus.xfer(bytes(data))


def _standby_lora(bus: Bus) -> None:
    _cmd(bus, 0x07, 0, 0)  # ClearDeviceErrors (XOSC_START_ERR of the power-up)
    _cmd(bus, 0x97, 0x02, 0x00, 0x00, 0x40)  # TCXO 1.8 V, 1 ms
    _cmd(bus, 0x80, 0x01)  # STDBY_XOSC
    _cmd(bus, 0x8A, 0x01)  # LoRa


def test_sx1262_status_errors_and_busy() -> None:
    bus = _sx1262()
    status, err_hi, err_lo = _cmd(bus, 0x17, 0, 0, 0)[1:]
    assert (status >> 4) & 7 == 2  # STDBY_RC
    assert (err_hi << 8 | err_lo) == 0x20  # XOSC_START_ERR: the TCXO is still unpowered
    _cmd(bus, 0x07, 0, 0)
    _cmd(bus, 0x80, 0x01)  # STDBY_XOSC without the TCXO powered: fails
    status = _cmd(bus, 0xC0, 0)[1]
    assert (status >> 4) & 7 == 2 and (status >> 1) & 7 == 5  # still RC, "failure to execute"
    _standby_lora(bus)
    assert (_cmd(bus, 0xC0, 0)[1] >> 4) & 7 == 3  # STDBY_XOSC
    with pytest.raises(ChipFault, match="Calibrate is not accepted in STDBY_XOSC"):
        _cmd(bus, 0x89, 0x7F)


def test_sx1262_command_while_busy_raises() -> None:
    bus = _sx1262()
    _cmd(bus, 0x07, 0, 0)
    _cmd(bus, 0x89, 0x7F)  # Calibrate: BUSY high 3.5 ms
    assert bus.chip.busy() and stand_in.Pin(13).value() == 1
    with pytest.raises(ChipFault, match="while BUSY is high"):
        bus.xfer(b"\xc0\x00")
    assert _wait(lambda: not bus.chip.busy())
    assert bus.xfer(b"\xc0\x00")[1] >> 4 & 7 == 2  # and then it answers


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        (b"\x55", "unknown opcode 0x55"),
        (b"\x96\x01", "SetRegulatorMode (0x96) is not modelled"),
        (b"\x80", "SetStandby takes 1 bytes after the opcode, got 0"),
        (b"\x80\x02", "StdbyConfig 2 is reserved"),
        (b"\x8b\x07\x04\x00\x00", "coding rate 0 outside 1..4"),
        (b"\x8b\x07\x07\x01\x00", "bandwidth code 0x07 is reserved"),
        (b"\x8c\x00\x00\x00\xff\x01\x00", "PreambleLength 0 is reserved"),
        (b"\x1d\x12\x34\x00\x00", "no register at 0x1234"),
        (b"\x0d\x08\x19\x00", "register 0x0819 is read-only"),
        (b"\x95\x04\x07\x01\x01", "deviceSel 1 selects the SX1261 PA"),
        (b"\x8e\x17\x04", "power 23 outside -9..+22"),
        (b"\x86\x00\x00\x00\x01", "outside 150..960 MHz"),
        (b"\x97\x07\x00\x00\x40", "DIO3 drives 3300 mV into the board's 1800 mV TCXO"),
    ],
)
def test_sx1262_refuses_what_the_chip_would_not_accept(command: bytes, needle: str) -> None:
    bus = _sx1262()
    _standby_lora(bus)
    if command[0] == 0x97:  # SetDIO3AsTCXOCtrl: only in STDBY_RC; the voltage shows at XOSC
        _cmd(bus, 0x80, 0x00)
        _cmd(bus, *command)
        with pytest.raises(ChipFault, match=re.escape(needle)):
            _cmd(bus, 0x80, 0x01)
        return
    with pytest.raises(ChipFault, match=re.escape(needle)):
        _cmd(bus, *command)


def test_sx1262_lora_commands_need_the_lora_packet_type_and_sleep_needs_standby() -> None:
    bus = _sx1262()
    _cmd(bus, 0x07, 0, 0)
    with pytest.raises(ChipFault, match="before SetPacketType"):
        _cmd(bus, 0x8B, 0x07, 0x04, 0x01, 0x00)
    _standby_lora(bus)
    _cmd(bus, 0x8B, 0x07, 0x04, 0x01, 0x00)  # SF7, 125 kHz, 4/5
    _cmd(bus, 0x8C, 0x00, 0x08, 0x00, 0xFF, 0x01, 0x00)
    _cmd(bus, 0x86, 0x36, 0x41, 0x99, 0x99)  # 868.1 MHz
    _cmd(bus, 0x82, 0xFF, 0xFF, 0xFF)  # RX continuous
    assert bus.chip.mode == "RX"
    with pytest.raises(ChipFault, match="SetSleep is not accepted in RX"):
        _cmd(bus, 0x84, 0x04)
    with pytest.raises(ChipFault, match="SetPacketType is not accepted in RX"):
        _cmd(bus, 0x8A, 0x01)


def test_sx1262_irq_mask_decides_what_is_flagged() -> None:
    bus = _sx1262()
    _standby_lora(bus)
    _cmd(bus, 0x08, 0x02, 0x03, 0x02, 0x03, 0, 0, 0, 0)  # RxDone|TxDone|Timeout, DIO1 the same
    frame = air.Frame(b"abc", -90, 20, False, 0.0, 0.1)
    bus.chip.rx_continuous = True
    bus.chip.frame_received(frame)  # a bad CRC, CrcErr masked: only RxDone
    assert bus.chip.irq == 0x002 and stand_in.Pin(14).value() == 1
    _cmd(bus, 0x02, 0xFF, 0xFF)
    assert stand_in.Pin(14).value() == 0
    _cmd(bus, 0x08, 0x02, 0x43, 0x02, 0x03, 0, 0, 0, 0)  # CrcErr in the IrqMask too
    bus.chip.frame_received(frame)
    assert bus.chip.irq == 0x042
    rssi_pkt, snr_pkt, signal_pkt = _cmd(bus, 0x14, 0, 0, 0, 0)[2:5]
    assert (rssi_pkt, snr_pkt, signal_pkt) == (180, 20, 180)  # -90 dBm (-x/2), 5 dB (x/4)


# -- robustness ---------------------------------------------------------------------------

_STEP = st.one_of(
    st.just(("nss", 0)),
    st.just(("nss", 1)),
    st.tuples(st.just("byte"), st.integers(0, 255)),
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["sx1276", "sx1262"]), st.lists(_STEP, max_size=60))
def test_no_byte_stream_breaks_a_model_with_anything_but_chipfault(
    kind: str, steps: list[tuple[str, int]]
) -> None:
    chip: SX1276 | SX1262 = SX1276() if kind == "sx1276" else SX1262(tcxo_mv=1800)
    board = stand_in.Board(chip, SX1276_PINS if kind == "sx1276" else SX1262_PINS)
    stand_in.wire(board)
    for what, value in steps:
        try:
            if what == "nss":
                chip.set_nss(value)
            else:
                chip.exchange(value)
        except ChipFault:
            pass


# -- the stand-in and the medium protocol -------------------------------------------------


def test_stand_in_pins_and_bus_as_on_an_esp32() -> None:
    bus = _lora_sx1276()
    assert (stand_in.Pin.IN, stand_in.Pin.OUT, stand_in.Pin.IRQ_RISING) == (1, 3, 1)
    with pytest.raises(ValueError, match="SPI\\(0\\) doesn't exist"):
        stand_in.SPI(0)
    with pytest.raises(ChipFault, match="drives the chip's DIO0 output"):
        stand_in.Pin(26, stand_in.Pin.OUT, value=1)
    other = stand_in.SPI(2, sck=stand_in.Pin(1), mosi=stand_in.Pin(2), miso=stand_in.Pin(3))
    buf = bytearray(b"\x42\x00")
    bus.nss(0)
    other.write_readinto(buf, buf)  # pins that do not reach the chip: MISO undriven
    bus.nss(1)
    assert buf == b"\x00\x00"
    fast = stand_in.SPI(
        1, baudrate=20_000_000, sck=stand_in.Pin(5), mosi=stand_in.Pin(27), miso=stand_in.Pin(19)
    )
    with pytest.raises(ChipFault, match="above the chip's 10000000 Hz"):
        fast.write(b"\x42")
    assert stand_in.Pin(40).value() == 0  # an unwired input


def test_air_protocol_constants_match_the_medium() -> None:
    for name in ("T_REGISTER", "T_BYE", "T_TX_TIMED", "T_REGISTERED", "T_TX_DONE", "T_RX"):
        assert getattr(air, name) == getattr(medium, name), name
    assert air.T_RX_CRC == medium.T_RX_CRC
    for fmt in ("REGISTER_FMT", "TX_TIMED_FMT", "REGISTERED_FMT", "TX_DONE_FMT", "RX_FMT"):
        assert getattr(air, fmt) == getattr(medium, fmt), fmt
