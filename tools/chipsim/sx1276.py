# mypy: ignore-errors
"""SX1276 register model (Semtech SX1276/77/78/79 datasheet rev 7, "DS" below).

Sections are named by title; the numbers are rev 7's where the micropython-lib driver,
written against rev 7, uses them (the register map and the RF chapters moved between
revisions: rev 4 has the register map in 6.4 and "RSSI and SNR in LoRa Mode" in 5.5.5).

What is modelled, and where the datasheet says it:

  SPI (DS "SPI Interface"): a transaction is NSS low, an address byte whose MSB is wnr
  (1 = write), then data bytes. The address increments after each byte (burst access)
  except at RegFifo (0x00), where RegFifoAddrPtr increments instead (FIFO access).
  While a register is written, MISO returns its previous value. SCK at most 10 MHz
  (DS "Digital Specification", FSCK).

  Reset (DS "Reset of the Chip", Manual Reset): NRESET low for more than 100 us, then
  the chip is ready 5 ms after NRESET is released; every register takes its reset value.

  Register map (DS 4.4, "LoRa Mode Register Map"): the LoRa page for the registers the
  micropython-lib driver uses, the common registers 0x01, 0x06-0x0C and 0x40-0x4D, and
  in FSK/OOK mode only RegImageCal (0x3B, DS 2.1.3.8 "Image and RSSI Calibration") of
  the FSK page. 0x36 and 0x3A are the errata's RegHighBwOptimize1/2 (SX1276/77/78/79
  errata note 2.1 "Sensitivity optimisation with a 500 kHz bandwidth"); 0x33/0x3B the
  RegInvertIQ / RegInvertIQ2 pair. Any other address, a write to a read-only register
  and a reserved field value raise ChipFault.

  RegOpMode (DS "Operating Modes in LoRa Mode", RegOpMode): LongRangeMode "can be
  modified only in Sleep mode. A write operation on other device modes is ignored". The
  driver's _set_mode() writes Sleep and the new LongRangeMode in one write (then the
  target mode in a second one); this model applies the bit when the chip is in Sleep or
  the same write selects Sleep, and raises for a write that changes it in any other
  case. AccessSharedReg and the CAD mode are not modelled (NotModelled).

  Static configuration (DS "LoRa Modem State Machine Sequences", data transmission and
  reception sequences): "static configuration registers can only be accessed in Sleep
  mode, Stand-by mode or FSTX/FSRX mode". Writing one in TX or RX raises.

  FIFO (DS "LoRa Mode FIFO Data Buffer", RegFifo): 256 bytes addressed by
  RegFifoAddrPtr, "cleared and not accessible when device is in SLEEP mode", and it "can
  only be filled in Stand-by mode" (transmission sequence). TX sends RegPayloadLength
  bytes (0 is "not permitted") from RegFifoTxBaseAddr. A received payload is written
  from RegFifoRxBaseAddr for the first packet after entering RX and after the previous
  packet in continuous mode (the byte pointer carries on, wrapping at 256);
  RegFifoRxCurrentAddr points at the last packet.

  IRQ flags (DS "Interrupts in LoRa Mode", RegIrqFlags): set by the modem, cleared by
  writing 1; a bit set in RegIrqFlagsMask keeps its IRQ from being flagged. DIO mapping
  (DS "Digital IO Pin Mapping", LoRa table): DIO0 00 RxDone / 01 TxDone / 10 CadDone,
  DIO1 00 RxTimeout, DIO3 01 ValidHeader / 10 PayloadCrcError. A DIO line follows the
  flag it is mapped to.

  TX (transmission sequence): on the TX mode request the chip sends the payload with
  the settings of RegFrf, RegModemConfig1/2/3, RegPreamble and RegPaConfig/RegPaDac, for
  the time on air those registers give (chipsim.toa, DS "Time on air"), sets TxDone and
  returns to Stand-by. SF6 needs implicit header mode (DS "Spreading Factor").

  RX (reception sequence): continuous mode stays in RX after RxDone; single mode
  returns to Stand-by after RxDone or after RegSymbTimeout symbols without a packet
  (RxTimeout). For a received packet: RegRxNbBytes, RegPktSnrValue (SNR * 4, two's
  complement) and RegPktRssiValue. DS 3.5.5 "RSSI and SNR in LoRa Mode": Packet Strength
  = -157 + PacketRssi on the HF port (-164 on the LF port, below 525 MHz) when SNR >= 0,
  and -157 + PacketRssi + PacketSnr / 4 when SNR < 0: the register holds the inverse of
  that formula for the strength the medium delivered.

  Output power (DS 3.4.2 "RF Power Amplifiers", 3.4.3 "High Power +20 dBm Operation"):
  PA_BOOST: Pout = Pmax - (15 - OutputPower) dBm with Pmax 17 dBm, 20 dBm with RegPaDac
  0x87; RFO: Pout = 10.8 + 0.6 * MaxPower - (15 - OutputPower) dBm.

Approximations, stated: the receive-timeout of single mode wins at its deadline even
if a frame had begun (the medium reports frames when they end); a transmission cut
short by a mode change stays whole on the medium.
"""

from . import toa
from .faults import NotModelled, fault
from .timebase import ticks_diff, ticks_us
from .transceiver import Transceiver

NAME = "sx1276"
VERSION = 0x12
RESET_READY_US = 5000  # DS Manual Reset: ready 5 ms after NRESET is released
# The unix port's time.sleep_ms counts whole ticks_ms, so sleep_ms(5) can return after
# 4.1 ms; an ESP32's does not (esp_timer). The readiness check allows that much.
SLEEP_SLACK_US = 1000
SPI_MAX_HZ = 10000000  # DS "Digital Specification": FSCK at most 10 MHz

# RegOpMode fields
LONG_RANGE = 0x80
ACCESS_SHARED = 0x40
LOW_FREQ_ON = 0x08
MODE_MASK = 0x07
SLEEP, STDBY, FSTX, TX, FSRX, RXCONT, RXSINGLE, CAD = range(8)
MODE_NAMES = ("SLEEP", "STDBY", "FSTX", "TX", "FSRX", "RXCONTINUOUS", "RXSINGLE", "CAD")
CONFIG_MODES = (SLEEP, STDBY, FSTX, FSRX)
VOID = -1  # the transaction's address after a fault

# IRQ flags (RegIrqFlags)
IRQ_RX_TIMEOUT = 0x80
IRQ_RX_DONE = 0x40
IRQ_CRC_ERROR = 0x20
IRQ_VALID_HEADER = 0x10
IRQ_TX_DONE = 0x08

# DIO mapping (DS Digital IO Pin Mapping): line -> (shift in RegDioMapping1, {mapping: irq})
DIO_MAP = {
    "dio0": (6, {0: IRQ_RX_DONE, 1: IRQ_TX_DONE}),
    "dio1": (4, {0: IRQ_RX_TIMEOUT}),
    "dio3": (0, {1: IRQ_VALID_HEADER, 2: IRQ_CRC_ERROR}),
}

# RegModemConfig1 Bw field -> bandwidth as the drivers name it (Hz)
BW_CODES = (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000)

# access: "rw" read/write, "r" read-only, "rc" write 1 to clear, "f" the FIFO window.
# static: only writable in Sleep, Stand-by, FSTX and FSRX (state machine sequences).
# name -> (address, access, reset value, static)
_LORA = (
    ("RegFifo", 0x00, "f", 0x00, False),
    ("RegOpMode", 0x01, "rw", 0x09, False),
    ("RegFrfMsb", 0x06, "rw", 0x6C, True),
    ("RegFrfMid", 0x07, "rw", 0x80, True),
    ("RegFrfLsb", 0x08, "rw", 0x00, True),
    ("RegPaConfig", 0x09, "rw", 0x4F, True),
    ("RegPaRamp", 0x0A, "rw", 0x09, True),
    ("RegOcp", 0x0B, "rw", 0x2B, True),
    ("RegLna", 0x0C, "rw", 0x20, True),
    ("RegFifoAddrPtr", 0x0D, "rw", 0x00, False),
    ("RegFifoTxBaseAddr", 0x0E, "rw", 0x80, False),
    ("RegFifoRxBaseAddr", 0x0F, "rw", 0x00, False),
    ("RegFifoRxCurrentAddr", 0x10, "r", 0x00, False),
    ("RegIrqFlagsMask", 0x11, "rw", 0x00, False),
    ("RegIrqFlags", 0x12, "rc", 0x00, False),
    ("RegRxNbBytes", 0x13, "r", 0x00, False),
    ("RegRxHeaderCntValueMsb", 0x14, "r", 0x00, False),
    ("RegRxHeaderCntValueLsb", 0x15, "r", 0x00, False),
    ("RegRxPacketCntValueMsb", 0x16, "r", 0x00, False),
    ("RegRxPacketCntValueLsb", 0x17, "r", 0x00, False),
    ("RegModemStat", 0x18, "r", 0x10, False),
    ("RegPktSnrValue", 0x19, "r", 0x00, False),
    ("RegPktRssiValue", 0x1A, "r", 0x00, False),
    ("RegRssiValue", 0x1B, "r", 0x00, False),
    ("RegHopChannel", 0x1C, "r", 0x00, False),
    ("RegModemConfig1", 0x1D, "rw", 0x72, True),
    ("RegModemConfig2", 0x1E, "rw", 0x70, True),
    ("RegSymbTimeoutLsb", 0x1F, "rw", 0x64, True),
    ("RegPreambleMsb", 0x20, "rw", 0x00, True),
    ("RegPreambleLsb", 0x21, "rw", 0x08, True),
    ("RegPayloadLength", 0x22, "rw", 0x01, True),
    ("RegMaxPayloadLength", 0x23, "rw", 0xFF, True),
    ("RegHopPeriod", 0x24, "rw", 0x00, True),
    ("RegFifoRxByteAddr", 0x25, "r", 0x00, False),
    ("RegModemConfig3", 0x26, "rw", 0x04, True),
    ("RegDetectOptimize", 0x31, "rw", 0xC3, True),
    ("RegInvertIQ", 0x33, "rw", 0x27, True),
    ("RegHighBwOptimize1", 0x36, "rw", 0x03, True),
    ("RegDetectionThreshold", 0x37, "rw", 0x0A, True),
    ("RegSyncWord", 0x39, "rw", 0x12, True),
    ("RegHighBwOptimize2", 0x3A, "rw", 0x65, True),
    ("RegInvertIQ2", 0x3B, "rw", 0x1D, True),
    ("RegDioMapping1", 0x40, "rw", 0x00, False),
    ("RegDioMapping2", 0x41, "rw", 0x00, False),
    ("RegVersion", 0x42, "r", VERSION, False),
    ("RegTcxo", 0x4B, "rw", 0x09, True),
    ("RegPaDac", 0x4D, "rw", 0x84, True),
)
# FSK/OOK mode: the common registers keep their meaning; of the FSK page only RegImageCal.
_COMMON = (0x01, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x40, 0x41, 0x42, 0x4B, 0x4D)
REG_IMAGE_CAL = 0x3B
IMAGE_CAL_START = 0x40
IMAGE_CAL_RUNNING = 0x20
IMAGE_CAL_RESET = 0x82

ADDR = {}
_ACCESS = {}
_RESET = bytearray(0x80)
_STATIC = set()
for _n, _a, _acc, _rst, _st in _LORA:
    ADDR[_n] = _a
    _ACCESS[_a] = _acc
    _RESET[_a] = _rst
    if _st:
        _STATIC.add(_a)
del _n, _a, _acc, _rst, _st

R_OPMODE = ADDR["RegOpMode"]
R_FIFO_PTR = ADDR["RegFifoAddrPtr"]
R_IRQ = ADDR["RegIrqFlags"]
R_IRQ_MASK = ADDR["RegIrqFlagsMask"]
R_MC1 = ADDR["RegModemConfig1"]
R_MC2 = ADDR["RegModemConfig2"]
R_MC3 = ADDR["RegModemConfig3"]
R_PAYLOAD_LEN = ADDR["RegPayloadLength"]
R_DIO1 = ADDR["RegDioMapping1"]


class SX1276(Transceiver):
    """One SX1276 on a board; `air` is its antenna (chipsim.air.Air, or None)."""

    NAME = NAME
    SPI_MAX_HZ = SPI_MAX_HZ

    def __init__(self, air=None):
        Transceiver.__init__(self, air)
        self.regs = bytearray(_RESET)
        self.fifo = bytearray(256)
        self.image_cal = IMAGE_CAL_RESET
        self._nss = 1
        self._ready_at = ticks_us() - RESET_READY_US  # powered on long before the driver
        self._addr = None  # address of the transaction in progress
        self._write = False
        self._rx_write = None  # FIFO address the next received payload goes to

    # -- pins ------------------------------------------------------------------------

    def reset_released(self):
        self.regs[:] = _RESET
        self.image_cal = IMAGE_CAL_RESET
        self._rx_write = None
        self._ready_at = ticks_us()

    def set_nss(self, level):
        if level == self._nss:
            return
        self._nss = level
        if not level:
            self._check_ready()
            self.service()
            self._addr = None
        else:
            self._addr = None
            self.outputs()

    def level(self, line):
        """Level of an output line ("dio0", "dio1", "dio3")."""
        m = DIO_MAP.get(line)
        if m is None:
            return 0
        shift, table = m
        bit = table.get((self.regs[R_DIO1] >> shift) & 3)
        return 1 if bit is not None and self.regs[R_IRQ] & bit else 0

    def _check_ready(self):
        if self._in_reset:
            raise fault(NAME, "SPI access while NRESET is held low")
        if ticks_diff(ticks_us(), self._ready_at) < RESET_READY_US - SLEEP_SLACK_US:
            raise fault(NAME, "SPI access less than 5 ms after reset (DS Manual Reset)")

    # -- SPI ---------------------------------------------------------------------------

    def exchange(self, out_byte):
        """One byte on the bus while NSS is low; returns the byte on MISO. After a fault
        the rest of the transaction is void (until NSS rises)."""
        if self._nss or self._addr == VOID:
            return 0  # not selected (or void): MISO is not driven
        try:
            return self._exchange(out_byte)
        except Exception:
            self._addr = VOID
            raise

    def _exchange(self, out_byte):
        if self._addr is None:
            self._write = bool(out_byte & 0x80)
            self._addr = out_byte & 0x7F
            return 0
        addr = self._addr
        if addr != 0:
            self._addr = (addr + 1) & 0x7F  # burst access
        if self._write:
            return self._write_reg(addr, out_byte)
        return self._read_reg(addr)

    def _lora(self):
        return bool(self.regs[R_OPMODE] & LONG_RANGE)

    def mode(self):
        return self.regs[R_OPMODE] & MODE_MASK

    def _access(self, addr):
        if self._lora():
            acc = _ACCESS.get(addr)
            if acc is not None:
                return acc
        elif addr in _COMMON:
            return _ACCESS[addr]
        elif addr == REG_IMAGE_CAL:
            return "imagecal"
        else:
            raise fault(NAME, "FSK/OOK register 0x%02x is not modelled" % addr, NotModelled)
        raise fault(NAME, "no register at 0x%02x in LoRa mode (DS 4.4)" % addr)

    def _read_reg(self, addr):
        acc = self._access(addr)
        if acc == "f":
            return self._fifo_read()
        if acc == "imagecal":
            return self.image_cal
        return self.regs[addr]

    def _write_reg(self, addr, value):
        acc = self._access(addr)
        if acc == "imagecal":
            old = self.image_cal
            if value & IMAGE_CAL_START and self.mode() != STDBY:
                raise fault(NAME, "image calibration started outside Stand-by (DS 2.1.3.8)")
            self.image_cal = value & ~(IMAGE_CAL_START | IMAGE_CAL_RUNNING)  # done at once
            return old
        old = self.regs[addr]
        if acc == "r":
            raise fault(NAME, "write of 0x%02x to read-only register 0x%02x" % (value, addr))
        if acc == "f":
            self._fifo_write(value)
            return old
        if acc == "rc":
            self.regs[addr] = old & ~value
            self.outputs()
            return old
        if addr == R_OPMODE:
            self._write_opmode(value)
            return old
        if addr in _STATIC and self.mode() not in CONFIG_MODES:
            raise fault(
                NAME,
                "configuration register 0x%02x written in %s mode (DS: only in Sleep, "
                "Stand-by or FS modes)" % (addr, MODE_NAMES[self.mode()]),
            )
        self._check_fields(addr, value)
        self.regs[addr] = value
        if addr == R_DIO1:
            self.outputs()
        return old

    def _check_fields(self, addr, value):
        if addr == R_MC1:
            if value >> 4 >= len(BW_CODES):
                raise fault(NAME, "RegModemConfig1 Bw 0x%x is reserved" % (value >> 4))
            if not 1 <= (value >> 1) & 7 <= 4:
                raise fault(NAME, "RegModemConfig1 CodingRate %d is reserved" % ((value >> 1) & 7))
        elif addr == R_MC2:
            if not 6 <= value >> 4 <= 12:
                raise fault(NAME, "RegModemConfig2 SpreadingFactor %d is reserved" % (value >> 4))
            if value & 0x08:
                raise fault(NAME, "TxContinuousMode is not modelled", NotModelled)
        elif addr == ADDR["RegPaDac"] and value not in (0x84, 0x87):
            raise fault(NAME, "RegPaDac 0x%02x: only 0x84 and 0x87 are defined (DS 3.4.3)" % value)

    # -- FIFO ------------------------------------------------------------------------------

    def _fifo_read(self):
        if self.mode() == SLEEP:
            raise fault(NAME, "FIFO read in Sleep mode (RegFifo: not accessible)")
        ptr = self.regs[R_FIFO_PTR]
        self.regs[R_FIFO_PTR] = (ptr + 1) & 0xFF
        return self.fifo[ptr]

    def _fifo_write(self, value):
        if self.mode() != STDBY:
            raise fault(
                NAME,
                "FIFO write in %s mode (the FIFO can only be filled in Stand-by)"
                % MODE_NAMES[self.mode()],
            )
        ptr = self.regs[R_FIFO_PTR]
        self.fifo[ptr] = value
        self.regs[R_FIFO_PTR] = (ptr + 1) & 0xFF

    # -- modes -----------------------------------------------------------------------------

    def _write_opmode(self, value):
        old = self.regs[R_OPMODE]
        new_mode = value & MODE_MASK
        if value & ACCESS_SHARED:
            raise fault(
                NAME, "AccessSharedReg (FSK page in LoRa mode) is not modelled", NotModelled
            )
        if (value ^ old) & LONG_RANGE and old & MODE_MASK != SLEEP and new_mode != SLEEP:
            raise fault(
                NAME,
                "LongRangeMode changed in %s mode: the chip ignores it outside Sleep"
                % MODE_NAMES[old & MODE_MASK],
            )
        lora = value & LONG_RANGE
        if new_mode in (TX, RXCONT, RXSINGLE, CAD) and not lora:
            raise fault(NAME, "the FSK/OOK modem is not modelled", NotModelled)
        if new_mode == CAD:
            raise fault(NAME, "CAD mode is not modelled", NotModelled)
        if new_mode == TX:
            payload, airtime_us = self._tx_frame()  # checks before the mode changes
        self.regs[R_OPMODE] = value & ~ACCESS_SHARED
        if new_mode == old & MODE_MASK and (value ^ old) & LONG_RANGE == 0:
            return
        if new_mode == SLEEP:
            for a in range(0x14, 0x18):  # header and packet counters reset in Sleep
                self.regs[a] = 0
            self.fifo[:] = bytes(256)  # RegFifo: "cleared ... in SLEEP mode"
        if new_mode == TX:
            self.start_tx(payload, airtime_us)
        elif new_mode in (RXCONT, RXSINGLE):
            self._check_modulation()
            self._rx_write = None
            timeout = None
            if new_mode == RXSINGLE:
                syms = ((self.regs[R_MC2] & 3) << 8) | self.regs[ADDR["RegSymbTimeoutLsb"]]
                timeout = (syms * toa.symbol_us(*self._sf_bw()) + 999) // 1000
            self.start_rx(timeout)
        else:
            self.stop_rf()

    def _sf_bw(self):
        return self.regs[R_MC2] >> 4, BW_CODES[self.regs[R_MC1] >> 4]

    def _check_modulation(self):
        sf = self.regs[R_MC2] >> 4
        if sf == 6 and not self.regs[R_MC1] & 1:
            raise fault(NAME, "SF6 needs implicit header mode (DS Spreading Factor)")

    def preamble(self):
        """The preamble length the registers set (symbols)."""
        return (self.regs[ADDR["RegPreambleMsb"]] << 8) | self.regs[ADDR["RegPreambleLsb"]]

    def time_on_air_us(self, n):
        sf, bw = self._sf_bw()
        mc1 = self.regs[R_MC1]
        return toa.time_on_air_us(
            sf,
            bw,
            (mc1 >> 1) & 7,
            self.preamble(),
            n,
            bool(self.regs[R_MC2] & 0x04),
            bool(mc1 & 1),
            bool(self.regs[R_MC3] & 0x08),
        )

    def _tx_frame(self):
        self._check_modulation()
        n = self.regs[R_PAYLOAD_LEN]
        if n == 0:
            raise fault(NAME, "TX with RegPayloadLength 0 (not permitted)")
        base = self.regs[ADDR["RegFifoTxBaseAddr"]]
        payload = bytes(self.fifo[(base + i) & 0xFF] for i in range(n))
        return payload, self.time_on_air_us(n)

    def power_dbm(self):
        pa = self.regs[ADDR["RegPaConfig"]]
        out = pa & 0x0F
        if pa & 0x80:  # PA_BOOST: Pmax 17 dBm, 20 dBm with the high-power DAC
            pmax = 20 if self.regs[ADDR["RegPaDac"]] == 0x87 else 17
            return pmax - (15 - out)
        pmax = 10.8 + 0.6 * ((pa >> 4) & 7)
        return int(pmax - (15 - out))

    def channel(self):
        frf = (
            (self.regs[ADDR["RegFrfMsb"]] << 16)
            | (self.regs[ADDR["RegFrfMid"]] << 8)
            | self.regs[ADDR["RegFrfLsb"]]
        )
        freq = (frf * 15625) >> 8  # Fstep = 32 MHz / 2**19 (DS Frequency Settings)
        sf, bw = self._sf_bw()
        return (freq, sf, bw, self.power_dbm(), ((self.regs[R_MC1] >> 1) & 7) + 4)

    # -- events ----------------------------------------------------------------------------

    def _flag(self, bits):
        self.regs[R_IRQ] |= bits & ~self.regs[R_IRQ_MASK]

    def tx_finished(self):
        self._flag(IRQ_TX_DONE)
        self.regs[R_OPMODE] = (self.regs[R_OPMODE] & ~MODE_MASK) | STDBY  # transmission sequence
        self.outputs()

    def timed_out(self):
        self._flag(IRQ_RX_TIMEOUT)
        self.stop_rf()
        self.regs[R_OPMODE] = (self.regs[R_OPMODE] & ~MODE_MASK) | STDBY  # reception sequence
        self.outputs()

    def frame_received(self, f):
        regs = self.regs
        n = len(f.payload)
        start = self._rx_write
        if start is None:
            start = regs[ADDR["RegFifoRxBaseAddr"]]
        for i in range(n):
            self.fifo[(start + i) & 0xFF] = f.payload[i]
        self._rx_write = (start + n) & 0xFF
        regs[ADDR["RegFifoRxCurrentAddr"]] = start
        regs[ADDR["RegFifoRxByteAddr"]] = self._rx_write
        regs[ADDR["RegRxNbBytes"]] = n
        snr_q = max(-128, min(127, f.snr_q))
        regs[ADDR["RegPktSnrValue"]] = snr_q & 0xFF
        hf = self.channel()[0] > 525000000
        reg_rssi = f.rssi + (157 if hf else 164)
        if snr_q < 0:
            reg_rssi += (2 - snr_q) >> 2  # DS 3.5.5 inverted: - PacketSnr/4, rounded
        regs[ADDR["RegPktRssiValue"]] = max(0, min(255, reg_rssi))
        regs[ADDR["RegHopChannel"]] = 0x40  # CrcOnPayload: every sender here uses a CRC
        self._count(0x14)
        bits = IRQ_VALID_HEADER | IRQ_RX_DONE
        if f.crc_ok:
            self._count(0x16)
        else:
            bits |= IRQ_CRC_ERROR
        self._flag(bits)
        if self.mode() == RXSINGLE:
            self.stop_rf()
            regs[R_OPMODE] = (regs[R_OPMODE] & ~MODE_MASK) | STDBY
        self.outputs()

    def _count(self, msb):
        v = ((self.regs[msb] << 8) | self.regs[msb + 1]) + 1
        self.regs[msb] = (v >> 8) & 0xFF
        self.regs[msb + 1] = v & 0xFF
