# mypy: ignore-errors
"""SX1262 command model with its BUSY line (Semtech SX1261/2 datasheet rev 2.1, "DS").

What is modelled, and where the datasheet says it:

  SPI and BUSY (DS 8.3 "Host interface", 8.3.1 "BUSY control line", 10 "Host
  Interface"): a command is NSS low, an opcode, its parameters, NSS high. BUSY goes
  high when NSS rises and stays high while the chip executes the command; "the host
  must wait until BUSY is low before sending a new command" -- a command clocked in
  while BUSY is high raises ChipFault. On MISO the chip returns its status byte (DS
  13.5.1: bits 6:4 chip mode, 3:1 command status) for every byte that is not data of a
  read command; read commands (GetIrqStatus, GetRxBufferStatus, GetPacketStatus,
  GetDeviceErrors, ReadRegister, ReadBuffer) return their response after the status.

  Modes (DS 9 "Operational modes"): SLEEP, STDBY_RC, STDBY_XOSC, FS, TX, RX. SetSleep
  is accepted only in standby (DS 13.1.1); in SLEEP, BUSY is high and the first NSS
  falling edge wakes the chip (warm start keeps the configuration, cold start loses
  it; DS 13.1.1). TX returns to STDBY_RC when done, RX single after RxDone or its
  timeout (the RX/TX fallback mode, SetRxTxFallbackMode, default STDBY_RC).

  Reset (DS 8.1 / 9.1): NRESET low at least 100 us; after release the chip calibrates
  (BUSY high, CALIBRATION_US) and waits in STDBY_RC with every setting at its reset
  value. A board whose crystal is a TCXO powered from DIO3 cannot start the 32 MHz
  oscillator until SetDIO3AsTCXOCtrl (DS 13.3.6): at power-up and at every wake-up
  XOSC_START_ERR is flagged (DS 13.6.1 GetDeviceErrors, OpError bit 5), and a mode that needs the
  oscillator (STDBY_XOSC, FS, TX, RX) fails with XOSC_START_ERR and command status
  "failure to execute" while the TCXO is unpowered or given a voltage below its own;
  more than its own raises ChipFault (it would overdrive it). The drivers read these
  through GetDeviceErrors and the status byte, as on a board.

  Commands: SetStandby 0x80, SetSleep 0x84, SetTx 0x83 and SetRx 0x82 (24-bit timeout
  in 15.625 us steps; SetRx 0x000000 single without timeout, 0xFFFFFF continuous; DS
  13.1.4 / 13.1.5), Calibrate 0x89 (STDBY_RC only, DS 13.1.12), CalibrateImage 0x98
  (DS 13.1.13), SetPaConfig 0x95 (DS 13.1.14), SetDioIrqParams 0x08, GetIrqStatus
  0x12, ClearIrqStatus 0x02, SetDIO2AsRfSwitchCtrl 0x9D, SetDIO3AsTCXOCtrl 0x97 (DS
  13.3), SetRfFrequency 0x86, SetPacketType 0x8A (standby only, DS 13.4.2),
  SetTxParams 0x8E, SetModulationParams 0x8B, SetPacketParams 0x8C,
  SetBufferBaseAddress 0x8F (DS 13.4), GetStatus 0xC0, GetRxBufferStatus 0x13,
  GetPacketStatus 0x14, GetRssiInst 0x15 (DS 13.5), GetDeviceErrors 0x17,
  ClearDeviceErrors 0x07 (DS 13.6), WriteRegister 0x0D, ReadRegister 0x1D,
  WriteBuffer 0x0E, ReadBuffer 0x1E (DS 13.2). An unknown opcode, a wrong parameter
  count, a reserved parameter value, a register outside DS 12 "List of Registers" and a command
  in a mode that does not accept it raise ChipFault; the LoRa meaning of the modulation
  and packet parameters needs SetPacketType(LoRa) first (DS 13.4.2).

  IRQs (DS 8.4 / 13.3.1): an IRQ is flagged in IrqStatus only if it is enabled in the
  IrqMask of SetDioIrqParams; DIO1 is high while a flagged IRQ in its DIO1 mask is set.
  (The datasheet does not spell the first rule out; RadioLib PR #81 and micropython-lib
  issue #1112 measured it on silicon: a CRC error outside IrqMask is never flagged.)

  Received packet (DS 13.5.2 / 13.5.3): the payload goes to the data buffer from
  RxBaseAddr (DS 7.2); GetPacketStatus gives RssiPkt (-RssiPkt/2 dBm, the average power
  in the channel, so below 0 dB SNR it is the noise: the strength minus the SNR),
  SnrPkt (dB * 4, two's complement) and SignalRssiPkt (-SignalRssiPkt/2 dBm, the
  despread signal). The 8-bit fields cannot go below -127.5 dBm; they saturate.

  TX (DS 13.1.4): sends PayloadLength bytes from TxBaseAddr with the modulation and
  packet parameters, for the time on air those give (chipsim.toa), then TxDone. Power
  on air (DS 13.1.14.1 table 13-21, 13.4.4): with the +22 dBm PA setting (paDutyCycle
  4, hpMax 7) the SetTxParams power; with the +20/+17/+14 dBm rows of the table, that
  row's power minus (22 - SetTxParams power).

Approximations, stated: a receive timeout wins at its deadline even if a frame had
begun (the medium reports frames when they end); HeaderErr is never raised (the medium
only corrupts payloads); a transmission cut short stays whole on the medium.
"""

from . import toa
from .faults import NotModelled, fault
from .timebase import ticks_add, ticks_diff, ticks_us
from .transceiver import Transceiver

NAME = "sx1262"
SPI_MAX_HZ = 16000000  # DS 8.3.2 "SPI timing": SCK up to 16 MHz

SLEEP, STDBY_RC, STDBY_XOSC, FS, RX, TX = "SLEEP", "STDBY_RC", "STDBY_XOSC", "FS", "RX", "TX"
MODE_BITS = {STDBY_RC: 2, STDBY_XOSC: 3, FS: 4, RX: 5, TX: 6, SLEEP: 0}
STANDBY = (STDBY_RC, STDBY_XOSC)
AWAKE = (STDBY_RC, STDBY_XOSC, FS, RX, TX)
NEEDS_XOSC = (STDBY_XOSC, FS, RX, TX)

# command status field (DS 13.5.1 GetStatus)
CMD_OK = 0
CMD_DATA_AVAILABLE = 2
CMD_EXEC_FAIL = 5
CMD_TX_DONE = 6

# IRQ bits (DS 13.3.1 SetDioIrqParams)
IRQ_TX_DONE = 0x001
IRQ_RX_DONE = 0x002
IRQ_PREAMBLE = 0x004
IRQ_SYNC_WORD = 0x008
IRQ_HEADER_VALID = 0x010
IRQ_HEADER_ERR = 0x020
IRQ_CRC_ERR = 0x040
IRQ_TIMEOUT = 0x200

XOSC_START_ERR = 0x20  # DS 13.6.1 GetDeviceErrors

# BUSY high times. DS 8.3.1: a command keeps BUSY high while it executes; the mode
# switching times of DS 9 ("Operational Modes") these follow: warm start 340 us typ.,
# calibration of all blocks 3.5 ms (DS 13.1.12).
COMMAND_US = 20
WARM_START_US = 340
CALIBRATION_US = 3500

CONTINUOUS = 0xFFFFFF
TIMEOUT_STEP_NS = 15625  # 15.625 us (DS 13.1.4)

# LoRa bandwidth codes of SetModulationParams (DS 13.4.5)
BW_CODES = {
    0x00: 7800,
    0x08: 10400,
    0x01: 15600,
    0x09: 20800,
    0x02: 31250,
    0x0A: 41700,
    0x03: 62500,
    0x04: 125000,
    0x05: 250000,
    0x06: 500000,
}
TCXO_MV = (1600, 1700, 1800, 2200, 2400, 2700, 3000, 3300)  # DS 13.3.6 table 13-35

# DS 13.1.14.1 table 13-21 (SX1262): (paDutyCycle, hpMax) -> power at SetTxParams 22
PA_ROWS = {(0x04, 0x07): 22, (0x03, 0x05): 20, (0x02, 0x03): 17, (0x02, 0x02): 14}

# DS 12 "List of Registers": address -> reset value (None: read-only, a fresh value)
_REGISTERS = {
    0x06B8: 0x01,  # whitening initial value MSB
    0x06B9: 0x00,
    0x06BC: 0x1D,  # CRC initial value
    0x06BD: 0x0F,
    0x06BE: 0x10,  # CRC polynomial
    0x06BF: 0x21,
    0x06C0: 0x00,  # FSK sync word 0..7
    0x06C1: 0x00,
    0x06C2: 0x00,
    0x06C3: 0x00,
    0x06C4: 0x00,
    0x06C5: 0x00,
    0x06C6: 0x00,
    0x06C7: 0x00,
    0x06CD: 0x00,  # node address
    0x06CE: 0x00,  # broadcast address
    0x0736: 0x0D,  # IQ polarity setup (DS 15.4)
    0x0740: 0x14,  # LoRa sync word MSB
    0x0741: 0x24,  # LoRa sync word LSB
    0x0819: None,  # random number generator 0..3
    0x081A: None,
    0x081B: None,
    0x081C: None,
    0x0889: 0x00,  # TX modulation (DS 15.1)
    0x08AC: 0x94,  # RX gain (DS 9.6)
    0x08D8: 0xC8,  # TX clamp config (DS 15.2)
    0x08E7: 0x38,  # OCP configuration
    0x0902: 0x00,  # RTC control (DS 15.3)
    0x0911: 0x05,  # XTA trim
    0x0912: 0x05,  # XTB trim
    0x0920: 0x01,  # DIO3 output voltage control
    0x0944: 0x00,  # event mask (DS 15.3)
}

# opcode -> (name, fewest and most bytes after the opcode (None: any), read command).
# A read command's bytes are a NOP (the chip returns its status) and the response; a
# shorter read is the host stopping early, a longer one reads past the response.
_COMMANDS = {
    0x80: ("SetStandby", 1, 1, False),
    0x84: ("SetSleep", 1, 1, False),
    0x83: ("SetTx", 3, 3, False),
    0x82: ("SetRx", 3, 3, False),
    0x89: ("Calibrate", 1, 1, False),
    0x98: ("CalibrateImage", 2, 2, False),
    0x95: ("SetPaConfig", 4, 4, False),
    0x08: ("SetDioIrqParams", 8, 8, False),
    0x12: ("GetIrqStatus", 1, 3, True),
    0x02: ("ClearIrqStatus", 2, 2, False),
    0x9D: ("SetDIO2AsRfSwitchCtrl", 1, 1, False),
    0x97: ("SetDIO3AsTCXOCtrl", 4, 4, False),
    0x86: ("SetRfFrequency", 4, 4, False),
    0x8A: ("SetPacketType", 1, 1, False),
    0x8E: ("SetTxParams", 2, 2, False),
    0x8B: ("SetModulationParams", 4, 8, False),
    0x8C: ("SetPacketParams", 6, 9, False),
    0x8F: ("SetBufferBaseAddress", 2, 2, False),
    0xC0: ("GetStatus", 0, 1, True),
    0x13: ("GetRxBufferStatus", 1, 3, True),
    0x14: ("GetPacketStatus", 1, 4, True),
    0x15: ("GetRssiInst", 1, 2, True),
    0x17: ("GetDeviceErrors", 1, 3, True),
    0x07: ("ClearDeviceErrors", 2, 2, False),
    0x0D: ("WriteRegister", 3, None, False),
    0x1D: ("ReadRegister", 4, None, True),
    0x0E: ("WriteBuffer", 2, None, False),
    0x1E: ("ReadBuffer", 3, None, True),
}
# commands of the chip the drivers never send
_NOT_MODELLED = {
    0xC1: "SetFs",
    0x9F: "StopTimerOnPreamble",
    0x94: "SetRxDutyCycle",
    0xC5: "SetCad",
    0xD1: "SetTxContinuousWave",
    0xD2: "SetTxInfinitePreamble",
    0x96: "SetRegulatorMode",
    0x93: "SetRxTxFallbackMode",
    0xA0: "SetLoRaSymbNumTimeout",
    0x11: "GetPacketType",
    0x10: "GetStats",
    0x00: "ResetStats",
}


class SX1262(Transceiver):
    """One SX1262 on a board. `tcxo_mv`: the board's TCXO voltage when its 32 MHz
    reference is a TCXO powered from DIO3 (None: a crystal)."""

    NAME = NAME
    SPI_MAX_HZ = SPI_MAX_HZ

    def __init__(self, air=None, tcxo_mv=None):
        Transceiver.__init__(self, air)
        self.board_tcxo_mv = tcxo_mv
        self.buffer = bytearray(256)
        self._nss = 1
        self._cmd = bytearray()
        self._void = False
        self._power_on()
        self._busy_until = ticks_us()  # powered on long before the driver starts

    # -- state ---------------------------------------------------------------------

    def _power_on(self):
        self.mode = STDBY_RC
        self._configure_defaults()
        self.op_errors = XOSC_START_ERR if self.board_tcxo_mv else 0
        self.cmd_status = CMD_OK

    def _configure_defaults(self):
        self.packet_type = 0  # GFSK after reset (DS 13.4.2)
        self.rf_freq = 0
        self.sf, self.bw_code, self.cr, self.ldro = 7, 0x04, 1, 0
        self.preamble, self.implicit, self.payload_len, self.crc_on, self.invert_iq = (
            12,
            0,
            0xFF,
            1,
            0,
        )
        self.mod_set = False
        self.tx_base = 0
        self.rx_base = 0
        self.irq_mask = 0
        self.dio_masks = [0, 0, 0]
        self.irq = 0
        self.dio2_rf_sw = False
        self.tcxo = None  # (millivolts, delay_us) after SetDIO3AsTCXOCtrl
        self.pa = (0x04, 0x07, 0x00, 0x01)
        self.tx_power = 22
        self.ramp = 0
        self.rx_continuous = False
        self.rx_len = 0
        self.rx_start = 0
        self.pkt_status = (0, 0, 0)
        self.registers = {a: v for a, v in _REGISTERS.items()}
        self.warm = False

    def busy(self):
        if self._in_reset or self.mode == SLEEP:
            return True
        return ticks_diff(self._busy_until, ticks_us()) > 0

    def _hold_busy(self, us):
        t = ticks_us()
        base = self._busy_until if ticks_diff(self._busy_until, t) > 0 else t
        self._busy_until = ticks_add(base, us)

    def status(self):
        return (MODE_BITS[self.mode] << 4) | (self.cmd_status << 1)

    # -- pins ----------------------------------------------------------------------

    def level(self, line):
        if line == "busy":
            return 1 if self.busy() else 0
        if line == "dio1":
            return 1 if self.irq & self.dio_masks[0] else 0
        if line == "dio2":
            return 1 if self.dio2_rf_sw and self.mode == TX else 0
        return 0

    def reset_released(self):
        self._power_on()
        self._busy_until = ticks_add(ticks_us(), CALIBRATION_US)

    def set_nss(self, level):
        if level == self._nss:
            return
        self._nss = level
        if self._in_reset:
            if not level:
                raise fault(NAME, "SPI access while NRESET is held low")
            return
        if not level:
            self.service()
            self._cmd = bytearray()
            self._void = False
            if self.mode == SLEEP:
                self._wake()
            return
        cmd = self._cmd
        self._cmd = bytearray()
        if cmd and not self._void:
            self._execute(bytes(cmd))
        self.outputs()

    def _wake(self):
        warm = self.warm
        if not warm:
            self._configure_defaults()
        self.mode = STDBY_RC
        if self.board_tcxo_mv:
            self.op_errors |= XOSC_START_ERR  # the TCXO was off while the chip slept
        self._busy_until = ticks_add(ticks_us(), WARM_START_US if warm else CALIBRATION_US)

    # -- SPI -----------------------------------------------------------------------

    def exchange(self, out_byte):
        """One byte on the bus while NSS is low; returns the byte on MISO. After a fault
        the rest of the transaction is void: nothing is executed when NSS rises."""
        if self._nss or self._void:
            return 0  # not selected (or void): MISO is not driven
        try:
            return self._exchange(out_byte)
        except Exception:
            self._void = True
            self._cmd = bytearray()
            raise

    def _exchange(self, out_byte):
        pos = len(self._cmd)
        if pos == 0 and self.busy():
            raise fault(
                NAME,
                "command 0x%02x clocked in while BUSY is high (DS 8.3.1)" % out_byte,
            )
        self._cmd.append(out_byte)
        if pos == 0:
            return self.status()
        return self._response(pos)

    def _response(self, pos):
        op = self._cmd[0]
        if op == 0x12 and pos >= 2:
            return (self.irq >> 8) & 0xFF if pos == 2 else self.irq & 0xFF
        if op == 0x13 and pos >= 2:
            return self.rx_len if pos == 2 else self.rx_start
        if op == 0x14 and pos >= 2:
            return self.pkt_status[pos - 2] if pos <= 4 else 0
        if op == 0x15 and pos == 2:
            return self.pkt_status[0]
        if op == 0x17 and pos >= 2:
            return (self.op_errors >> 8) & 0xFF if pos == 2 else self.op_errors & 0xFF
        if op == 0x1D and pos >= 4:
            addr = ((self._cmd[1] << 8) | self._cmd[2]) + pos - 4
            return self._reg_read(addr)
        if op == 0x1E and pos >= 3:
            return self.buffer[(self._cmd[1] + pos - 3) & 0xFF]
        return self.status()

    # -- commands ------------------------------------------------------------------

    def _execute(self, cmd):
        op = cmd[0]
        entry = _COMMANDS.get(op)
        if entry is None:
            if op in _NOT_MODELLED:
                raise fault(
                    NAME, "%s (0x%02x) is not modelled" % (_NOT_MODELLED[op], op), NotModelled
                )
            raise fault(NAME, "unknown opcode 0x%02x (DS 13)" % op)
        name, least, most, read = entry
        args = cmd[1:]
        if len(args) < least or (most is not None and len(args) > most):
            want = "%d" % least if least == most else "%d..%s" % (least, most or "")
            raise fault(
                NAME, "%s takes %s bytes after the opcode, got %d" % (name, want, len(args))
            )
        result = getattr(self, "_cmd_" + name)(args)
        if not read and result is None:
            self.cmd_status = CMD_OK
        self._hold_busy(COMMAND_US)

    def _need_mode(self, name, modes):
        if self.mode not in modes:
            raise fault(NAME, "%s is not accepted in %s (DS 13)" % (name, self.mode))

    def _need_lora(self, name):
        if self.packet_type != 1:
            raise fault(NAME, "%s before SetPacketType(LoRa): the chip reads it as GFSK" % name)

    def _xosc_ok(self):
        """Can the 32 MHz oscillator run? Flags XOSC_START_ERR when it cannot."""
        board = self.board_tcxo_mv
        tcxo = self.tcxo
        if board is None:
            ok = tcxo is None  # a crystal: DIO3 TCXO control would switch its amplifier off
        elif tcxo is None:
            ok = False
        else:
            if tcxo[0] > board + 100:
                raise fault(
                    NAME,
                    "DIO3 drives %d mV into the board's %d mV TCXO" % (tcxo[0], board),
                )
            ok = tcxo[0] >= board
        if not ok:
            self.op_errors |= XOSC_START_ERR
            self.cmd_status = CMD_EXEC_FAIL
        return ok

    def _enter(self, mode):
        """Switch to a mode that may need the oscillator; False (chip stays in
        STDBY_RC) if it cannot start."""
        if mode in NEEDS_XOSC and self.mode not in NEEDS_XOSC:
            if not self._xosc_ok():
                self.stop_rf()
                self.mode = STDBY_RC
                return False
            if self.tcxo is not None:
                self._hold_busy(self.tcxo[1])
        self.mode = mode
        return True

    def _cmd_SetStandby(self, a):
        if a[0] not in (0, 1):
            raise fault(NAME, "SetStandby StdbyConfig %d is reserved" % a[0])
        self.stop_rf()
        if a[0] == 0:
            self.mode = STDBY_RC
            return None
        return None if self._enter(STDBY_XOSC) else False

    def _cmd_SetSleep(self, a):
        self._need_mode("SetSleep", STANDBY)
        if a[0] & 0x01:
            raise fault(NAME, "sleep with RTC wake-up is not modelled", NotModelled)
        self.stop_rf()
        self.warm = bool(a[0] & 0x04)
        self.mode = SLEEP
        return None

    def _timeout(self, a):
        return (a[0] << 16) | (a[1] << 8) | a[2]

    def _cmd_SetTx(self, a):
        self._need_lora("SetTx")
        if not self.mod_set:
            raise fault(NAME, "SetTx before SetModulationParams")
        if self.payload_len == 0:
            raise fault(NAME, "SetTx with PayloadLength 0")
        t = self._timeout(a)
        n = self.payload_len
        payload = bytes(self.buffer[(self.tx_base + i) & 0xFF] for i in range(n))
        airtime_us = self.time_on_air_us(n)
        if not self._enter(TX):
            return False
        self.start_tx(payload, airtime_us)
        if t:
            self.arm_timeout(t * TIMEOUT_STEP_NS // 1000000 + 1)
        return None

    def _cmd_SetRx(self, a):
        self._need_lora("SetRx")
        if not self.mod_set:
            raise fault(NAME, "SetRx before SetModulationParams")
        t = self._timeout(a)
        if not self._enter(RX):
            return False
        self.rx_continuous = t == CONTINUOUS
        timeout_ms = None
        if t not in (0, CONTINUOUS):
            timeout_ms = (t * TIMEOUT_STEP_NS + 999999) // 1000000
        self.start_rx(timeout_ms)
        return None

    def _cmd_Calibrate(self, a):
        self._need_mode("Calibrate", (STDBY_RC,))
        if a[0] & 0x80:
            raise fault(NAME, "Calibrate bit 7 is reserved")
        self._hold_busy(CALIBRATION_US)
        return None

    def _cmd_CalibrateImage(self, a):
        self._need_mode("CalibrateImage", STANDBY)
        if a[0] > a[1]:
            raise fault(NAME, "CalibrateImage freq1 above freq2")
        self._hold_busy(CALIBRATION_US)
        return None

    def _cmd_SetPaConfig(self, a):
        duty, hp_max, device, lut = a[0], a[1], a[2], a[3]
        if device != 0:
            raise fault(NAME, "SetPaConfig deviceSel %d selects the SX1261 PA" % device)
        if lut != 0x01:
            raise fault(NAME, "SetPaConfig paLut must be 0x01 (DS 13.1.14)")
        if duty > 0x04 or hp_max > 0x07:
            raise fault(
                NAME,
                "SetPaConfig paDutyCycle %d / hpMax %d above the SX1262 limits (4 / 7)"
                % (duty, hp_max),
            )
        self.pa = (duty, hp_max, device, lut)
        return None

    def _cmd_SetDioIrqParams(self, a):
        self.irq_mask = (a[0] << 8) | a[1]
        self.dio_masks = [(a[2] << 8) | a[3], (a[4] << 8) | a[5], (a[6] << 8) | a[7]]
        return None

    def _cmd_GetIrqStatus(self, a):
        return None

    def _cmd_ClearIrqStatus(self, a):
        self.irq &= ~((a[0] << 8) | a[1])
        if not self.irq & IRQ_RX_DONE and self.cmd_status == CMD_DATA_AVAILABLE:
            self.cmd_status = CMD_OK
        if not self.irq & IRQ_TX_DONE and self.cmd_status == CMD_TX_DONE:
            self.cmd_status = CMD_OK
        return False  # leaves the command status as it now is

    def _cmd_SetDIO2AsRfSwitchCtrl(self, a):
        if a[0] not in (0, 1):
            raise fault(NAME, "SetDIO2AsRfSwitchCtrl enable %d is reserved" % a[0])
        self.dio2_rf_sw = bool(a[0])
        return None

    def _cmd_SetDIO3AsTCXOCtrl(self, a):
        self._need_mode("SetDIO3AsTCXOCtrl", (STDBY_RC,))
        if a[0] > 7:
            raise fault(NAME, "SetDIO3AsTCXOCtrl tcxoVoltage %d is reserved" % a[0])
        delay_us = ((a[1] << 16) | (a[2] << 8) | a[3]) * TIMEOUT_STEP_NS // 1000
        self.tcxo = (TCXO_MV[a[0]], delay_us)
        return None

    def _cmd_SetRfFrequency(self, a):
        raw = (a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]
        hz = raw * 15625 // 16384  # RF = RfFreq * 32 MHz / 2**25 (DS 13.4.1)
        if not 150000000 <= hz <= 960000000:
            raise fault(NAME, "SetRfFrequency %d Hz outside 150..960 MHz" % hz)
        self.rf_freq = raw
        return None

    def _cmd_SetPacketType(self, a):
        self._need_mode("SetPacketType", STANDBY)
        if a[0] == 0:
            raise fault(NAME, "the GFSK modem is not modelled", NotModelled)
        if a[0] != 1:
            raise fault(NAME, "SetPacketType %d is reserved" % a[0])
        self.packet_type = 1
        return None

    def _cmd_SetTxParams(self, a):
        power = a[0] - 256 if a[0] & 0x80 else a[0]
        if not -9 <= power <= 22:
            raise fault(NAME, "SetTxParams power %d outside -9..+22 dBm (DS 13.4.4)" % power)
        if a[1] > 7:
            raise fault(NAME, "SetTxParams RampTime %d is reserved" % a[1])
        self.tx_power, self.ramp = power, a[1]
        return None

    def _cmd_SetModulationParams(self, a):
        self._need_lora("SetModulationParams")
        if not 4 <= len(a) <= 8:
            raise fault(NAME, "SetModulationParams takes 4..8 bytes, got %d" % len(a))
        sf, bw, cr, ldro = a[0], a[1], a[2], a[3]
        if not 5 <= sf <= 12:
            raise fault(NAME, "SetModulationParams SF%d outside 5..12" % sf)
        if bw not in BW_CODES:
            raise fault(NAME, "SetModulationParams bandwidth code 0x%02x is reserved" % bw)
        if not 1 <= cr <= 4:
            raise fault(NAME, "SetModulationParams coding rate %d outside 1..4 (4/5..4/8)" % cr)
        if ldro > 1:
            raise fault(NAME, "SetModulationParams LowDataRateOptimize %d" % ldro)
        self.sf, self.bw_code, self.cr, self.ldro = sf, bw, cr, ldro
        self.mod_set = True
        return None

    def _cmd_SetPacketParams(self, a):
        self._need_lora("SetPacketParams")
        if not 6 <= len(a) <= 9:
            raise fault(NAME, "SetPacketParams takes 6..9 bytes, got %d" % len(a))
        pre = (a[0] << 8) | a[1]
        if pre == 0:
            raise fault(NAME, "SetPacketParams PreambleLength 0 is reserved")
        for name, v in (("HeaderType", a[2]), ("CRCType", a[4]), ("InvertIQ", a[5])):
            if v > 1:
                raise fault(NAME, "SetPacketParams %s %d is reserved" % (name, v))
        self.preamble, self.implicit, self.payload_len, self.crc_on, self.invert_iq = (
            pre,
            a[2],
            a[3],
            a[4],
            a[5],
        )
        return None

    def _cmd_SetBufferBaseAddress(self, a):
        self.tx_base, self.rx_base = a[0], a[1]
        return None

    def _cmd_GetStatus(self, a):
        return None

    def _cmd_GetRxBufferStatus(self, a):
        return None

    def _cmd_GetPacketStatus(self, a):
        return None

    def _cmd_GetRssiInst(self, a):
        self._need_mode("GetRssiInst", (RX,))
        return None

    def _cmd_GetDeviceErrors(self, a):
        return None

    def _cmd_ClearDeviceErrors(self, a):
        self.op_errors = 0
        return None

    def _cmd_WriteRegister(self, a):
        if len(a) < 3:
            raise fault(NAME, "WriteRegister needs an address and at least one byte")
        addr = (a[0] << 8) | a[1]
        for i in range(2, len(a)):
            self._reg_write(addr + i - 2, a[i])
        return None

    def _cmd_ReadRegister(self, a):
        if len(a) < 4:
            raise fault(NAME, "ReadRegister needs an address, a NOP and at least one byte")
        addr = (a[0] << 8) | a[1]
        for i in range(len(a) - 3):
            self._reg_read(addr + i)
        return None

    def _cmd_WriteBuffer(self, a):
        if len(a) < 2:
            raise fault(NAME, "WriteBuffer needs an offset and at least one byte")
        off = a[0]
        for i in range(1, len(a)):
            self.buffer[(off + i - 1) & 0xFF] = a[i]
        return None

    def _cmd_ReadBuffer(self, a):
        if len(a) < 3:
            raise fault(NAME, "ReadBuffer needs an offset, a NOP and at least one byte")
        return None

    def _reg_read(self, addr):
        if addr not in self.registers:
            raise fault(NAME, "no register at 0x%04x (DS 12)" % addr)
        v = self.registers[addr]
        if v is None:
            import os

            return os.urandom(1)[0]
        return v

    def _reg_write(self, addr, value):
        if addr not in self.registers:
            raise fault(NAME, "no register at 0x%04x (DS 12)" % addr)
        if self.registers[addr] is None:
            raise fault(NAME, "register 0x%04x is read-only" % addr)
        self.registers[addr] = value

    # -- radio -----------------------------------------------------------------------

    def time_on_air_us(self, n):
        return toa.time_on_air_us(
            self.sf,
            BW_CODES[self.bw_code],
            self.cr,
            self.preamble,
            n,
            bool(self.crc_on),
            bool(self.implicit),
            bool(self.ldro),
            sx126x=True,
        )

    def power_dbm(self):
        top = PA_ROWS.get((self.pa[0], self.pa[1]))
        if top is None:
            raise fault(NAME, "PA setting %r is not in DS table 13-21" % (self.pa,), NotModelled)
        return top - (22 - self.tx_power)

    def channel(self):
        hz = self.rf_freq * 15625 // 16384
        return (hz, self.sf, BW_CODES[self.bw_code], self.power_dbm(), self.cr + 4)

    def _flag(self, bits):
        self.irq |= bits & self.irq_mask

    def tx_finished(self):
        self._flag(IRQ_TX_DONE)
        self.mode = STDBY_RC  # the RX/TX fallback mode
        self.cmd_status = CMD_TX_DONE
        self.stop_rf()
        self.outputs()

    def timed_out(self):
        self._flag(IRQ_TIMEOUT)
        self.mode = STDBY_RC
        self.stop_rf()
        self.outputs()

    def frame_received(self, f):
        n = len(f.payload)
        for i in range(n):
            self.buffer[(self.rx_base + i) & 0xFF] = f.payload[i]
        self.rx_len = n
        self.rx_start = self.rx_base
        snr_q = max(-128, min(127, f.snr_q))
        channel_dbm = f.rssi + ((2 - snr_q) >> 2 if snr_q < 0 else 0)  # - SNR, rounded
        self.pkt_status = (
            max(0, min(255, -2 * channel_dbm)),
            snr_q & 0xFF,
            max(0, min(255, -2 * f.rssi)),
        )
        bits = IRQ_PREAMBLE | IRQ_SYNC_WORD | IRQ_HEADER_VALID | IRQ_RX_DONE
        if not f.crc_ok:
            bits |= IRQ_CRC_ERR
        self._flag(bits)
        self.cmd_status = CMD_DATA_AVAILABLE
        if not self.rx_continuous:
            self.mode = STDBY_RC
            self.stop_rf()
        self.outputs()
