# mypy: ignore-errors
"""What the two chip models share: transmitting onto and listening to the simulated air.

A chip model decides *what* it sends and *when* its modem is listening, from its own
registers or commands; this class turns that into medium traffic (chipsim.air) and
hands the chip the frames it could have demodulated:

  * a frame counts only if the chip was in receive mode, on the frame's channel, from
    the frame's start (on the medium clock, converted with the REGISTERED answer) to
    its end; a frame that began before the receiver was listening, or while it was
    transmitting, is missed, as a real receiver misses a preamble it never saw. The
    medium already drops what the sender's and receiver's half-duplex rules forbid.
  * without an antenna (air None: the host-side tests of the register models) a
    transmission ends after its time on air by this chip's own clock and nothing is
    ever received.

Counters: tx, rx (frames handed to the modem), rx_crc (of them with a bad CRC),
missed (delivered by the medium while this modem was not listening for them).
"""

from .faults import fault
from .timebase import ticks_add, ticks_diff, ticks_ms, ticks_us

LISTEN_TOLERANCE_MS = 2  # clock skew between this process and the medium's
RESET_LOW_US = 100  # NRESET low at least this long (SX1276 DS 7.2.2, SX1261/2 DS 8.1)


class Transceiver:
    NAME = "chip"

    def __init__(self, air=None):
        self.air = air
        self.on_outputs = None  # the board's hook: called when an output line may change
        self.tx = 0
        self.rx = 0
        self.rx_crc = 0
        self.missed = 0
        self._tx_seq = None  # medium seq of the transmission on air (air present)
        self._tx_end = None  # ticks_ms the transmission ends (no air)
        self._listen_from = None  # ticks_ms since when the modem listens, or None
        self._deadline = None  # ticks_ms of an armed timeout (receive or transmit)
        self._in_reset = False
        self._reset_low_at = None

    # -- the chip model implements these ----------------------------------------

    def channel(self):
        """(freq_hz, sf, bw_hz, power_dbm, coding_rate 5..8) of the current settings."""
        raise NotImplementedError

    def frame_received(self, frame):
        """A frame was demodulated (frame.crc_ok False: payload CRC failed)."""
        raise NotImplementedError

    def tx_finished(self):
        raise NotImplementedError

    def timed_out(self):
        raise NotImplementedError

    def reset_released(self):
        """NRESET went high after a valid pulse: every setting back to its reset value."""
        raise NotImplementedError

    # -- the NRESET pin ----------------------------------------------------------------

    def set_nreset(self, level):
        if not level and not self._in_reset:
            self._in_reset = True
            self._reset_low_at = ticks_us()
            self.stop_rf()
        elif level and self._in_reset:
            self._in_reset = False
            if ticks_diff(ticks_us(), self._reset_low_at) < RESET_LOW_US:
                raise fault(self.NAME, "NRESET pulse shorter than %d us" % RESET_LOW_US)
            self.reset_released()
            self.outputs()

    # -- used by the chip model -------------------------------------------------

    def outputs(self):
        if self.on_outputs is not None:
            self.on_outputs()

    def start_tx(self, payload, airtime_us):
        self.stop_rf()
        self.tx += 1
        if self.air is None:
            self._tx_end = ticks_add(ticks_ms(), (airtime_us + 999) // 1000)
            return
        freq, sf, bw, power, cr = self.channel()
        self.air.register(freq, sf, bw, power, cr)
        self._tx_seq = self.air.transmit(payload, airtime_us)

    def start_rx(self, timeout_ms=None):
        self.stop_rf()
        if self.air is not None:
            freq, sf, bw, power, cr = self.channel()
            self.air.register(freq, sf, bw, power, cr)
        self._listen_from = ticks_ms()
        if timeout_ms is not None:
            self._deadline = ticks_add(self._listen_from, timeout_ms)

    def arm_timeout(self, timeout_ms):
        self._deadline = ticks_add(ticks_ms(), timeout_ms)

    def stop_rf(self):
        """Leave receive or transmit mode (a transmission already on the medium stays
        on it: the medium has no way to cut a frame short)."""
        self._tx_seq = None
        self._tx_end = None
        self._listen_from = None
        self._deadline = None

    @property
    def transmitting(self):
        return self._tx_seq is not None or self._tx_end is not None

    # -- time passes --------------------------------------------------------------

    def service(self):
        """Bring the chip up to date: frames from the medium, end of a transmission,
        timeouts. Called before every access and from the board's event task."""
        now = ticks_ms()
        air = self.air
        if air is not None:
            for f in air.frames():
                self._deliver(f)
            done = air.tx_done
            if done is not None and self._tx_seq is not None and done[0] == self._tx_seq:
                air.tx_done = None
                if done[1] != 0:
                    raise fault(
                        self.NAME, "the medium refused a transmission (status %d)" % done[1]
                    )
                self._tx_seq = None
                self.tx_finished()
        elif self._tx_end is not None and ticks_diff(now, self._tx_end) >= 0:
            self._tx_end = None
            self.tx_finished()
        if self._deadline is not None and ticks_diff(now, self._deadline) >= 0:
            self._deadline = None
            self.timed_out()

    def next_event_ms(self):
        """ms until the next timed event (None: only the medium can wake the chip)."""
        now = ticks_ms()
        best = None
        for t in (self._deadline, self._tx_end):
            if t is not None:
                d = max(0, ticks_diff(t, now))
                best = d if best is None or d < best else best
        return best

    def listening(self):
        """Whether the modem is receiving (a frame on the air now would be heard)."""
        return self._listen_from is not None

    def _deliver(self, f):
        since = self._listen_from
        start = self.air.local_ms(f.start_s)
        if since is None or start is None or ticks_diff(start, since) < -LISTEN_TOLERANCE_MS:
            self.missed += 1
            return
        self.rx += 1
        if not f.crc_ok:
            self.rx_crc += 1
        self.frame_received(f)

    def counters(self):
        return {"tx": self.tx, "rx": self.rx, "rx_crc": self.rx_crc, "missed": self.missed}
