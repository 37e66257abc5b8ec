"""LoraRadio: the radio interface over micropython-lib's `lora` drivers (boards).

Drivers: packages `lora-sx127x` (SX1276..79) or `lora-sx126x` (SX1261/62), plus
`lora-sync` (default) or `lora-async` so the modem classes exist. The adapter uses
only the drivers' documented low-level API, common to sync and async classes:
configure(lora_cfg), standby(), start_recv(continuous=True), poll_recv(rx_packet),
prepare_send(packet), start_send(), poll_send(), get_time_on_air_us(n),
set_irq_callback(cb), and the `rx_crc_error` / `crc_errors` attributes. So one
code path serves both, and a receive stays armed across sends (the driver resumes
it after poll_send()).

Mapping of our interface onto lora_cfg:
    freq_hz        -> "freq_khz" (int kHz when exact)
    sf             -> "sf"          (SF6 needs implicit headers on SX127x: refused)
    bw_hz          -> "bw" string   ("125", "250", "62.5", ... as the driver's table)
    coding_rate    -> "coding_rate" (5..8 = 4/5..4/8)
    tx_power_dbm   -> "output_power" (and "tx_ant": "PA_BOOST" when the board uses it)
    always         -> "preamble_len": 8, "crc_en": True, "implicit_header": False,
                      "syncword" (board preset, default 0x12 private)
The 8-symbol preamble matches lorawire.airtime and meshsim (the driver default is 12).

Received packets (RxPacket: bytearray + .rssi dBm, .snr dB*4, .crc_error /
.valid_crc) become (bytes, rssi, snr/4). The adapter sets modem.rx_crc_error = True
so bad-CRC packets come back to it, then drops and counts them (crc_errors). Below 0 dB
SNR the drivers' rssi is the power in the channel, mostly noise; the signal is that
plus the SNR (SX1276 datasheet rev 7 3.5.5; the SX126x RssiPkt is the same average), which is
what the adapter returns.

lora-sx126x up to 0.1.5 leaves CRC_ERR out of the SX126x IrqMask, and the chip flags only
unmasked IRQs, so a packet with a bad CRC would come back as good (micropython-lib issue
#1112): make_modem sets the mask again with CRC_ERR in it.

Board preset (a dict; `make_modem` reads these keys):
    chip          "sx1276" | "sx1277" | "sx1278" | "sx1279" | "sx1261" | "sx1262"
    spi_id, sck, mosi, miso, spi_baudrate (default 2000000)
    cs, reset     pin numbers (reset may be None)
    dio0, dio1    SX127x interrupt pins (optional);  busy, dio1 for SX126x (busy required)
    tcxo_mv       SX126x TCXO voltage on DIO3 (None: crystal)
    dio2_rf_sw    SX126x: DIO2 drives the RF switch (default True)
    rf_switch     {"tx": pin, "rx": pin} GPIO-driven antenna switch (optional)
    pa_boost      SX127x boards wired to PA_BOOST (default True: most modules)
    max_power_dbm refuse configure() above this
    syncword      default 0x12
    modem_api     "sync" (default) or "async": which driver classes to build
`lora` and `machine` are imported inside make_modem, so this module imports on
the unix port (tests inject fakes).
"""

from loranode.radio import (
    POLL_MS,
    Radio,
    bw_khz_str,
    check_payload,
    sleep_ms,
    ticks_diff,
    ticks_ms,
)

try:
    from time import sleep_ms as _block_ms
except ImportError:  # CPython
    import time as _t

    def _block_ms(ms):
        _t.sleep(ms / 1000)


PREAMBLE_LEN = 8
DEFAULT_SYNCWORD = 0x12
SX127X = ("sx1276", "sx1277", "sx1278", "sx1279")
SX126X = ("sx1261", "sx1262")
# Belts and braces, as the driver's own async layer: poll the modem even without an
# interrupt this often (ms), and much more often when no DIO pin is wired.
RX_POLL_WITH_IRQ_MS = 1000
RX_POLL_NO_IRQ_MS = 50
TX_GRACE_MS = 100  # beyond the computed time on air before a send counts as stuck
# SX126x SetDioIrqParams (datasheet 13.3.1): RxDone | TxDone | Timeout, as the driver
# wires DIO1, plus CrcErr in the IrqMask only.
_SX126X_SET_DIO_IRQ = 0x08
_SX126X_IRQ_DIO1 = 0x0203
_SX126X_IRQ_CRC_ERR = 0x0040


def lora_cfg(
    freq_hz,
    sf,
    bw_hz,
    coding_rate,
    tx_power_dbm,
    chip="sx1276",
    pa_boost=True,
    syncword=DEFAULT_SYNCWORD,
):
    """The driver's lora_cfg dict for our settings (validation by the caller)."""
    if freq_hz % 1000:
        freq_khz = freq_hz / 1000
    else:
        freq_khz = freq_hz // 1000
    cfg = {
        "freq_khz": freq_khz,
        "sf": sf,
        "bw": bw_khz_str(bw_hz),
        "coding_rate": coding_rate,
        "preamble_len": PREAMBLE_LEN,
        "output_power": tx_power_dbm,
        "crc_en": True,
        "implicit_header": False,
        "syncword": syncword,
    }
    if chip in SX127X:
        cfg["tx_ant"] = "PA_BOOST" if pa_boost else "RFO"
    return cfg


class LoraRadio(Radio):
    """Radio over a micropython-lib lora modem object (sync or async class)."""

    def __init__(
        self, modem, chip="sx1276", pa_boost=True, syncword=DEFAULT_SYNCWORD, max_power_dbm=None
    ):
        Radio.__init__(self)
        if chip not in SX127X and chip not in SX126X:
            raise ValueError("chip {} not one of sx1276..9, sx1261/2".format(chip))
        self.modem = modem
        self.chip = chip
        self.pa_boost = pa_boost
        self.syncword = syncword
        self.max_power_dbm = max_power_dbm
        self._irq = False
        self._will_irq = False
        self._configured = False
        self._pkt = None  # last RxPacket, handed back to poll_recv for reuse
        modem.rx_crc_error = True  # see bad-CRC packets, so they are counted here
        modem.set_irq_callback(self._on_irq)

    def _on_irq(self):
        # May run in hard-IRQ context: only set a flag.
        self._irq = True

    def configure(self, freq_hz, sf, bw_hz, coding_rate=5, tx_power_dbm=14):
        self._set_config(freq_hz, sf, bw_hz, coding_rate, tx_power_dbm)
        if sf == 6:
            raise ValueError("sf 6 needs implicit headers; use 7..12")
        if not 7 <= sf <= 12:  # the drivers check it only after talking to the chip
            raise ValueError("sf {} outside 7..12".format(sf))
        if self.max_power_dbm is not None and tx_power_dbm > self.max_power_dbm:
            raise ValueError(
                "tx_power_dbm {} above this board's {}".format(tx_power_dbm, self.max_power_dbm)
            )
        cfg = lora_cfg(
            freq_hz, sf, bw_hz, coding_rate, tx_power_dbm, self.chip, self.pa_boost, self.syncword
        )
        self.modem.standby()  # the driver refuses configure() while receiving
        self.modem.configure(cfg)
        self._configured = True
        self._start_rx()

    def _start_rx(self):
        self._will_irq = bool(self.modem.start_recv(None, True))

    def airtime_ms(self, n):
        return self.modem.get_time_on_air_us(n) / 1000

    # -- send ----------------------------------------------------------------

    def _begin_send(self, payload):
        if not self._configured:
            raise OSError(107, "LoraRadio.configure() not called")
        check_payload(payload)
        self.modem.prepare_send(payload)
        self.modem.start_send()
        return self.airtime_ms(len(payload))

    def _sent(self, airtime):
        self.tx_frames += 1
        self.tx_airtime_ms += airtime
        return airtime

    def send(self, payload):
        airtime = self._begin_send(payload)
        _block_ms(int(airtime))
        start = ticks_ms()
        while self.modem.poll_send() is True:
            if ticks_diff(ticks_ms(), start) > TX_GRACE_MS + airtime:
                self.modem.standby()
                self._start_rx()
                raise OSError(110, "modem did not finish sending")
            _block_ms(1)
        return self._sent(airtime)

    async def asend(self, payload):
        airtime = self._begin_send(payload)
        await sleep_ms(int(airtime))
        start = ticks_ms()
        while self.modem.poll_send() is True:
            if ticks_diff(ticks_ms(), start) > TX_GRACE_MS + airtime:
                self.modem.standby()
                self._start_rx()
                raise OSError(110, "modem did not finish sending")
            await sleep_ms(1)
        return self._sent(airtime)

    # -- receive -------------------------------------------------------------

    def recv(self):
        """One good packet as (bytes, rssi, snr_db), or None. Never blocks."""
        if not self._configured:
            return None
        while True:
            self._irq = False
            r = self.modem.poll_recv(self._pkt)
            if r is True:
                return None  # still receiving (or sending: receive resumes after)
            if r is False:
                self._start_rx()  # receive was stopped (standby, soft timeout): re-arm
                return None
            self._pkt = r
            if getattr(r, "crc_error", False) or not getattr(r, "valid_crc", True):
                self.crc_errors += 1
                continue  # continuous mode: look for the next one
            self.rx_frames += 1
            snr = r.snr
            if snr is None:
                return (bytes(r), r.rssi, 0.0)
            rssi = r.rssi
            if snr < 0:
                rssi -= (2 - snr) >> 2  # + snr/4 dB, rounded
            return (bytes(r), rssi, snr / 4)

    async def arecv(self, timeout_ms=None):
        start = ticks_ms()
        period = RX_POLL_WITH_IRQ_MS if self._will_irq else RX_POLL_NO_IRQ_MS
        last_poll = start
        pkt = self.recv()
        while pkt is None:
            now = ticks_ms()
            if timeout_ms is not None and ticks_diff(now, start) >= timeout_ms:
                return None
            if self._irq or ticks_diff(now, last_poll) >= period:
                last_poll = now
                pkt = self.recv()
                continue
            await sleep_ms(POLL_MS)
        return pkt

    def close(self):
        try:
            self.modem.sleep()
        except (AttributeError, OSError, RuntimeError):
            pass
        self._configured = False

    def counters(self):
        c = Radio.counters(self)
        c["modem_crc_errors"] = getattr(self.modem, "crc_errors", 0)
        return c


# -- building the modem from a board preset -----------------------------------------


class _AntSwitch:
    """GPIO antenna switch in the shape the drivers call: tx(arg), rx(), idle()."""

    def __init__(self, tx_pin, rx_pin):
        self._tx = tx_pin
        self._rx = rx_pin

    def _set(self, tx, rx):
        if self._tx is not None:
            self._tx(tx)
        if self._rx is not None:
            self._rx(rx)

    def tx(self, tx_arg):
        self._set(1, 0)

    def rx(self):
        self._set(0, 1)

    def idle(self):
        self._set(0, 0)


def _pin(machine, n, out=False):
    if n is None:
        return None
    if out:
        return machine.Pin(n, machine.Pin.OUT, value=0)
    return machine.Pin(n)


def make_modem(preset, lora_mod=None, machine_mod=None):
    """Build the driver's modem object from a board preset dict (keys above)."""
    machine = machine_mod
    if machine is None:
        import machine
    lora = lora_mod
    if lora is None:
        import lora
    chip = preset.get("chip")
    if chip not in SX127X and chip not in SX126X:
        raise ValueError("preset chip {} not one of sx1276..9, sx1261/2".format(chip))
    for key in ("spi_id", "sck", "mosi", "miso", "cs"):
        if preset.get(key) is None:
            raise ValueError("preset needs {}".format(key))
    spi = machine.SPI(
        preset["spi_id"],
        baudrate=preset.get("spi_baudrate", 2000000),
        polarity=0,
        phase=0,
        sck=machine.Pin(preset["sck"]),
        mosi=machine.Pin(preset["mosi"]),
        miso=machine.Pin(preset["miso"]),
    )
    cs = machine.Pin(preset["cs"])
    reset = _pin(machine, preset.get("reset"))
    ant_sw = None
    rf = preset.get("rf_switch")
    if rf:
        ant_sw = _AntSwitch(_pin(machine, rf.get("tx"), True), _pin(machine, rf.get("rx"), True))
    prefix = "Async" if preset.get("modem_api", "sync") == "async" else ""
    cls = getattr(lora, prefix + chip.upper(), None)
    if cls is None:
        raise ImportError(
            "lora driver class {} missing: install lora-{} and lora-{}".format(
                prefix + chip.upper(),
                "sx127x" if chip in SX127X else "sx126x",
                "async" if prefix else "sync",
            )
        )
    if chip in SX127X:
        return cls(
            spi,
            cs,
            dio0=_pin(machine, preset.get("dio0")),
            dio1=_pin(machine, preset.get("dio1")),
            reset=reset,
            ant_sw=ant_sw,
        )
    if preset.get("busy") is None:
        raise ValueError("preset needs busy for {}".format(chip))
    dio1 = _pin(machine, preset.get("dio1"))
    modem = cls(
        spi,
        cs,
        machine.Pin(preset["busy"]),
        dio1=dio1,
        dio2_rf_sw=preset.get("dio2_rf_sw", True),
        dio3_tcxo_millivolts=preset.get("tcxo_mv"),
        reset=reset,
        ant_sw=ant_sw,
    )
    cmd = getattr(modem, "_cmd", None)
    if cmd is not None:  # micropython-lib #1112, see the module docstring
        dio1_irqs = _SX126X_IRQ_DIO1 if dio1 is not None else 0
        cmd(
            ">BHHHH",
            _SX126X_SET_DIO_IRQ,
            _SX126X_IRQ_DIO1 | _SX126X_IRQ_CRC_ERR,
            dio1_irqs,
            0,
            0,
        )
    return modem


def open_radio(
    preset, freq_hz, sf, bw_hz, coding_rate=5, tx_power_dbm=14, lora_mod=None, machine_mod=None
):
    """make_modem + LoraRadio + configure, in one call (what main.py uses on a board)."""
    modem = make_modem(preset, lora_mod, machine_mod)
    r = LoraRadio(
        modem,
        preset["chip"],
        preset.get("pa_boost", True),
        preset.get("syncword", DEFAULT_SYNCWORD),
        preset.get("max_power_dbm"),
    )
    r.configure(freq_hz, sf, bw_hz, coding_rate, tx_power_dbm)
    return r
