"""Radio interface shared by every radio the firmware can drive.

A radio is any object with these methods (duck typing; `Radio` below is the
documented base class, its methods raise NotImplementedError):

    configure(freq_hz, sf, bw_hz, coding_rate=5, tx_power_dbm=14)
        Set the channel and modulation (already checked by the deploy tool against
        the board and the region). May be called again at any time.
    send(payload) -> airtime_ms
        Transmit one frame (1..255 bytes) and block until it has left the
        antenna. Returns the time on air in milliseconds (simulated ms on
        SimRadio). While sending, a radio cannot receive (half-duplex).
    async asend(payload) -> airtime_ms
        Same, letting other asyncio tasks run meanwhile.
    recv() -> (payload, rssi_dbm, snr_db) or None
        Non-blocking poll: one received frame, or None when nothing is waiting.
        Frames with a bad CRC are never returned (they are counted).
    async arecv(timeout_ms=None) -> (payload, rssi_dbm, snr_db) or None
        Wait for one frame without blocking the event loop; None on timeout.
    close()

Counters every radio keeps (plain int/float attributes, read by the status dump):
tx_frames, tx_airtime_ms, rx_frames, rx_dropped (local queue overflow),
crc_errors.

payload is `bytes`, rssi_dbm an int (dBm), snr_db a number (dB, quarter-dB steps).
"""

from loranode.clock import ticks_diff, ticks_ms

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

MAX_PAYLOAD = const(255)

# LoRa bandwidths in Hz and the strings micropython-lib's `lora` drivers expect
# for lora_cfg["bw"] (the driver looks up str(bw) in a fixed table).
_BW_TABLE = (
    (7800, "7.8"),
    (10400, "10.4"),
    (15600, "15.6"),
    (20800, "20.8"),
    (31250, "31.25"),
    (41700, "41.7"),
    (62500, "62.5"),
    (125000, "125"),
    (250000, "250"),
    (500000, "500"),
)

# Polling period of the fallback `arecv` (ms): short enough for accelerated
# simulations, long enough not to spin the CPU.
POLL_MS = const(5)


def bw_khz_str(bw_hz):
    """Bandwidth in Hz -> the driver's lora_cfg["bw"] string ("125", "62.5", ...)."""
    for hz, s in _BW_TABLE:
        if hz == bw_hz:
            return s
    raise ValueError("bw_hz {} is not a LoRa bandwidth".format(bw_hz))


def check_payload(payload):
    n = len(payload)
    if n == 0 or n > MAX_PAYLOAD:
        raise ValueError("payload length {} outside 1..{}".format(n, MAX_PAYLOAD))


try:
    import asyncio

    _sleep_ms = getattr(asyncio, "sleep_ms", None)
except ImportError:  # a board build without asyncio
    asyncio = None
    _sleep_ms = None


async def sleep_ms(ms):
    """asyncio.sleep_ms on MicroPython, asyncio.sleep on CPython."""
    if _sleep_ms is not None:
        await _sleep_ms(ms)
    else:
        await asyncio.sleep(ms / 1000)


class Radio:
    """Base class: the interface above, plus the shared counters."""

    def __init__(self):
        self.freq_hz = 0
        self.sf = 0
        self.bw_hz = 0
        self.coding_rate = 5
        self.tx_power_dbm = 14
        self.tx_frames = 0
        self.tx_airtime_ms = 0.0
        self.rx_frames = 0
        self.rx_dropped = 0
        self.crc_errors = 0

    def _set_config(self, freq_hz, sf, bw_hz, coding_rate, tx_power_dbm):
        # the deploy tool checked the settings against the board and the region
        # (tools/deploy/fwconfig.py): a board only applies them
        self.freq_hz = freq_hz
        self.sf = sf
        self.bw_hz = bw_hz
        self.coding_rate = coding_rate
        self.tx_power_dbm = tx_power_dbm

    def configure(self, freq_hz, sf, bw_hz, coding_rate=5, tx_power_dbm=14):
        raise NotImplementedError

    def send(self, payload):
        raise NotImplementedError

    async def asend(self, payload):
        return self.send(payload)

    def recv(self):
        raise NotImplementedError

    async def arecv(self, timeout_ms=None):
        """Fallback: poll `recv` every POLL_MS. Radios override with real waiting."""
        start = ticks_ms()
        while True:
            pkt = self.recv()
            if pkt is not None:
                return pkt
            if timeout_ms is not None and ticks_diff(ticks_ms(), start) >= timeout_ms:
                return None
            await sleep_ms(POLL_MS)

    def close(self):
        pass

    def counters(self):
        return {
            "tx_frames": self.tx_frames,
            "tx_airtime_ms": self.tx_airtime_ms,
            "rx_frames": self.rx_frames,
            "rx_dropped": self.rx_dropped,
            "crc_errors": self.crc_errors,
        }
