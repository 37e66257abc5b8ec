"""A fake of micropython-lib's `lora` modem drivers (and the bits of `machine` they use).

Runs on CPython and the MicroPython unix port. It follows the drivers' documented
API and their observable behaviour (micropython/lora/README.md and the sources
lora/modem.py, lora-sx127x/lora/sx127x.py, lora-sx126x/lora/sx126x.py):

- constructors: SX1276(spi, cs, dio0=None, dio1=None, reset=None, lora_cfg=None,
  ant_sw=None); SX1262(spi, cs, busy, dio1=None, dio2_rf_sw=True,
  dio3_tcxo_millivolts=None, dio3_tcxo_start_time_us=1000, reset=None,
  lora_cfg=None, ant_sw=None); Async* aliases.
- configure(lora_cfg): RuntimeError("Receiving") while a receive is armed; "bw"
  looked up as str(bw) in the driver's table (KeyError otherwise); sf 6..12 with
  SF6 needing implicit_header on SX127x; coding_rate 5..8 (SX127x) / 4..8 (SX126x)
  -> ConfigError; output_power clamped per chip and tx_ant; tx_ant refused on
  SX1262. Stricter than the drivers on one point: an unknown key raises
  ConfigError (the drivers ignore it silently, which would hide adapter typos).
- low-level API: start_recv / poll_recv / prepare_send / start_send / poll_send /
  standby / sleep / get_time_on_air_us / set_irq_callback / irq_triggered, plus the
  simple send() / recv(); RxPacket is a bytearray with ticks_ms, snr (dB*4), rssi,
  valid_crc, crc_error; crc_errors counter; rx_crc_error flag.

Test hooks: `air(payload, rssi, snr_q, crc_ok=True)` puts a packet on the air for
this modem (fires the IRQ callback when a DIO pin is wired); `calls` records every
API call as (name, args); `sent` holds transmitted payloads; `speed` divides the
simulated time on air so tests stay fast.
"""

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython
    import time as _time

    def ticks_ms():
        return int(_time.monotonic() * 1000) & 0x3FFFFFFF

    def ticks_diff(a, b):
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d >= 0x20000000 else d


# -- machine ---------------------------------------------------------------------


class Pin:
    IN = 1
    OUT = 3
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, value=None):
        self.id = id
        self.mode = mode
        self.value = value
        self.handler = None
        self.history = []

    def init(self, mode=-1, value=None):
        self.mode = mode
        if value is not None:
            self.value = value

    def __call__(self, v=None):
        if v is None:
            return self.value or 0
        self.value = v
        self.history.append(v)

    def irq(self, handler=None, trigger=IRQ_RISING):
        self.handler = handler


class SPI:
    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, sck=None, mosi=None, miso=None):
        self.id = id
        self.baudrate = baudrate
        self.polarity = polarity
        self.phase = phase
        self.sck = sck
        self.mosi = mosi
        self.miso = miso


# -- lora ------------------------------------------------------------------------


class ConfigError(ValueError):
    def __init__(self, field):
        super().__init__(f"Invalid lora_cfg {field}")


class RxPacket(bytearray):
    def __init__(self, payload, ticks_ms=None, snr=None, rssi=None, valid_crc=True):
        super().__init__(payload)
        self.ticks_ms = ticks_ms
        self.snr = snr
        self.rssi = rssi
        self.valid_crc = valid_crc


_BW = {
    "7.8": 7800,
    "10.4": 10400,
    "15.6": 15600,
    "20.8": 20800,
    "31.25": 31250,
    "41.7": 41700,
    "62.5": 62500,
    "125": 125000,
    "250": 250000,
    "500": 500000,
}

_COMMON_KEYS = (
    "freq_khz",
    "sf",
    "bw",
    "coding_rate",
    "preamble_len",
    "output_power",
    "crc_en",
    "implicit_header",
    "syncword",
    "invert_iq_rx",
    "invert_iq_tx",
    "pa_ramp_us",
    "rx_boost",
)
_SX127X_KEYS = ("tx_ant", "lna_gain", "auto_image_cal")

AIR_CAPACITY = 16  # packets waiting "on the air"; more are lost, as in a real FIFO


class _FakeModem:
    ASYNC = False
    CHIP = "sx1276"
    SF_MIN = 6
    CR_MIN = 5

    def _base_init(self, ant_sw, dio, lora_cfg):
        self.calls = []
        self.sent = []
        self.speed = 100
        self._ant_sw = ant_sw
        self._dio = dio
        self._irq_callback = None
        self._last_irq = None
        self._rf_freq_hz = 0
        self._sf = 7
        self._bw_hz = 125000
        self._coding_rate = 5
        self._crc_en = True
        self._implicit_header = False
        self._preamble_len = 12
        self._output_power = 14
        self._syncword = 0x12
        self._pa_boost = False
        self.crc_errors = 0
        self.rx_crc_error = False
        self._rx = False
        self._rx_continuous = False
        self._tx = False
        self._tx_start = 0
        self._tx_len = 0
        self._air = []
        self.config = {}
        if dio is not None:
            dio.irq(self._radio_isr, Pin.IRQ_RISING)
        if lora_cfg:
            self.configure(lora_cfg)

    # ISR plumbing, as BaseModem
    def _radio_isr(self, _):
        self._last_irq = ticks_ms()
        if self._irq_callback:
            self._irq_callback()

    def set_irq_callback(self, callback):
        self.calls.append(("set_irq_callback", ()))
        self._irq_callback = callback

    def irq_triggered(self):
        return self._last_irq is not None

    # configuration
    def configure(self, lora_cfg):
        self.calls.append(("configure", (dict(lora_cfg),)))
        if self._rx is not False:
            raise RuntimeError("Receiving")
        allowed = _COMMON_KEYS + (_SX127X_KEYS if self.CHIP.startswith("sx127") else ())
        for k in lora_cfg:
            if k not in allowed:
                if k == "tx_ant":
                    raise ConfigError("tx_ant")
                raise ConfigError(k)
        if "freq_khz" in lora_cfg:
            self._rf_freq_hz = int(lora_cfg["freq_khz"] * 1000)
        if "implicit_header" in lora_cfg:
            self._implicit_header = lora_cfg["implicit_header"]
        if "tx_ant" in lora_cfg:
            self._pa_boost = lora_cfg["tx_ant"].upper() == "PA_BOOST"
        if "output_power" in lora_cfg:
            self._output_power = self._clamp_power(int(lora_cfg["output_power"]))
        if "bw" in lora_cfg:
            self._bw_hz = _BW[str(lora_cfg["bw"])]  # KeyError, as the driver
        if "coding_rate" in lora_cfg:
            cr = int(lora_cfg["coding_rate"])
            if cr < self.CR_MIN or cr > 8:
                raise ConfigError("coding_rate")
            self._coding_rate = cr
        if "sf" in lora_cfg:
            sf = int(lora_cfg["sf"])
            if sf < self.SF_MIN or sf > 12:
                raise ConfigError("sf")
            if sf == 6 and self.CHIP.startswith("sx127") and not self._implicit_header:
                raise ConfigError("SF6 requires implicit_header mode")
            self._sf = sf
        if "crc_en" in lora_cfg:
            self._crc_en = lora_cfg["crc_en"]
        if "preamble_len" in lora_cfg:
            self._preamble_len = lora_cfg["preamble_len"]
        if "syncword" in lora_cfg:
            self._syncword = lora_cfg["syncword"]
        for k in lora_cfg:
            self.config[k] = lora_cfg[k]

    def _clamp_power(self, dbm):
        if self.CHIP == "sx1262":
            return min(max(dbm, -9), 22)
        if self._pa_boost:
            return 20 if dbm >= 20 else min(max(dbm, 2), 17)
        return min(max(dbm, -4), 15)

    # time on air, SX1276 datasheet 4.1.1.7 (same result as BaseModem)
    def get_time_on_air_us(self, payload_len):
        t_sym_us = 1000000 * (1 << self._sf) // self._bw_hz
        ldr = t_sym_us >= 16000
        bits = 8 * payload_len - 4 * self._sf + 28
        bits += 16 if self._crc_en else 0
        bits -= 0 if not self._implicit_header else 20
        bits = max(bits, 0)
        bps = 4 * (self._sf - 2 * ldr)
        n_sym_x4 = 17 + 4 * (self._preamble_len + 8 + ((bits + bps - 1) // bps) * self._coding_rate)
        return t_sym_us * n_sym_x4 // 4

    # modes
    def standby(self):
        self.calls.append(("standby", ()))
        self._rx = False
        self._tx = False
        self._last_irq = None
        if self._ant_sw:
            self._ant_sw.idle()
        self._radio_isr(None)  # the driver's "soft ISR"

    def sleep(self):
        self.standby()
        self.calls.append(("sleep", ()))

    def is_idle(self):
        return not self._rx and not self._tx

    # receive
    def start_recv(self, timeout_ms=None, continuous=False, rx_length=0xFF):
        self.calls.append(("start_recv", (timeout_ms, continuous, rx_length)))
        if continuous and timeout_ms is not None:
            raise ValueError
        self._rx = True if timeout_ms is None else ticks_ms() + timeout_ms
        self._rx_continuous = continuous
        if self._ant_sw and not self._tx:
            self._ant_sw.rx()
        return self._dio is not None

    def poll_recv(self, rx_packet=None):
        if self._rx is False:
            return False
        if self._tx:
            return True
        while self._air:
            payload, rssi, snr_q, crc_ok = self._air.pop(0)
            if not crc_ok:
                self.crc_errors += 1
                if not self.rx_crc_error:
                    continue  # the driver drops it and keeps receiving
            if rx_packet is None or len(rx_packet) != len(payload):
                rx_packet = RxPacket(len(payload))
            rx_packet[:] = payload
            rx_packet.ticks_ms = ticks_ms()
            rx_packet.snr = snr_q
            rx_packet.rssi = rssi
            rx_packet.crc_error = not crc_ok
            if not self._rx_continuous:
                self._rx = False
            return rx_packet
        if self._rx is not True and ticks_diff(self._rx, ticks_ms()) <= 0:
            self._rx = False
            return False
        return True

    def recv(self, timeout_ms=None, rx_length=0xFF, rx_packet=None):
        self.start_recv(timeout_ms, False, rx_length)
        rx = True
        while rx is True:
            rx = self.poll_recv(rx_packet)
        return rx or None

    # send
    def prepare_send(self, packet):
        self.calls.append(("prepare_send", (bytes(packet),)))
        if len(packet) > 255:
            if self.CHIP == "sx1262":
                raise ConfigError("packet too long")
            raise ValueError("packet too long")
        if self._ant_sw:
            self._ant_sw.tx(self._pa_boost)
        self._last_irq = None
        self._tx_len = len(packet)
        self._pending = bytes(packet)

    def start_send(self):
        self.calls.append(("start_send", ()))
        self._tx = True
        self._tx_start = ticks_ms()
        return self._dio is not None

    def poll_send(self):
        if not self._tx:
            return False
        toa_ms = self.get_time_on_air_us(self._tx_len) // 1000 // self.speed
        if ticks_diff(ticks_ms(), self._tx_start) < toa_ms:
            return True
        self._tx = False
        self.sent.append(self._pending)
        if self._ant_sw:
            self._ant_sw.idle()
        if self._rx is not False and self._ant_sw:
            self._ant_sw.rx()  # receive resumes after a send
        return ticks_ms()

    def send(self, packet, tx_at_ms=None):
        self.prepare_send(packet)
        self.start_send()
        tx = True
        while tx is True:
            tx = self.poll_send()
        return tx

    # test hook
    def air(self, payload, rssi=-80, snr_q=20, crc_ok=True):
        if len(self._air) < AIR_CAPACITY:
            self._air.append((bytes(payload), rssi, snr_q, crc_ok))
        if self._dio is not None and self._rx is not False:
            self._radio_isr(None)


class SX1276(_FakeModem):
    CHIP = "sx1276"

    def __init__(self, spi, cs, dio0=None, dio1=None, reset=None, lora_cfg=None, ant_sw=None):
        self.spi = spi
        self.cs = cs
        self.dio0 = dio0
        self.dio1 = dio1
        self.reset = reset
        cs.init(Pin.OUT, value=1)
        if reset:
            reset.init(Pin.OUT, value=0)
            reset(1)
        self._base_init(ant_sw, dio0, lora_cfg)


class SX1262(_FakeModem):
    CHIP = "sx1262"
    CR_MIN = 4

    def __init__(
        self,
        spi,
        cs,
        busy,
        dio1=None,
        dio2_rf_sw=True,
        dio3_tcxo_millivolts=None,
        dio3_tcxo_start_time_us=1000,
        reset=None,
        lora_cfg=None,
        ant_sw=None,
    ):
        if dio3_tcxo_millivolts and not 1600 <= dio3_tcxo_millivolts <= 3300:
            raise ValueError("{} out of range".format("dio3_tcxo_millivolts"))
        self.spi = spi
        self.cs = cs
        self.busy = busy
        self.dio1 = dio1
        self.dio2_rf_sw = dio2_rf_sw
        self.tcxo_mv = dio3_tcxo_millivolts
        self.reset = reset
        self._base_init(ant_sw, dio1, lora_cfg)


class AsyncSX1276(SX1276):
    ASYNC = True


class AsyncSX1262(SX1262):
    ASYNC = True


SX1277 = SX1278 = SX1279 = SX1276
AsyncSX1277 = AsyncSX1278 = AsyncSX1279 = AsyncSX1276
