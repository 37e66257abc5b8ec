# mypy: ignore-errors
"""An emulated chip's antenna: its link to tools/meshsim's medium.

Speaks the medium's UDP protocol (tools/meshsim/medium.py has the specification; the
constants below must stay equal to the ones there, a test checks it) the way
firmware/loranode/radio_sim.py does, with two differences that come from being a chip:

  * a transmission is TX_TIMED: the chip says how long it is on air (from its own
    modulation registers, chipsim.toa) instead of letting the medium compute it;
  * frames the medium delivers corrupted arrive as RX_CRC (same layout as RX) and the
    chip reports them as payload CRC errors.

Nothing blocks except `register()`, which waits (at most REGISTER_TIMEOUT_MS per try) for
the medium's answer, because the answer carries the medium clock this chip needs to tell
whether it was listening when a frame began. Datagrams that arrive meanwhile are kept.
"""

import socket
import struct

try:
    import select
except ImportError:  # pragma: no cover
    select = None

from .timebase import ticks_add, ticks_diff, ticks_ms

T_REGISTER = 0x01
T_BYE = 0x04
T_TX_TIMED = 0x06
T_REGISTERED = 0x81
T_TX_DONE = 0x82
T_RX = 0x84
T_RX_CRC = 0x86

REGISTER_FMT = ">B8sIBIbB"
TX_TIMED_FMT = ">BHIBIbBI"
REGISTERED_FMT = ">Bdf"
TX_DONE_FMT = ">BHBdd"
RX_FMT = ">Bhhdd"
RX_HDR = struct.calcsize(RX_FMT)

ST_OK = 0
ST_UNREGISTERED = 2

REGISTER_TIMEOUT_MS = 1000
REGISTER_TRIES = 3
QUEUE_LEN = 16  # datagrams kept while register() waits
RECV_MAX = 512


class Frame:
    """A frame the medium delivered: payload, rssi dBm, snr in quarter dB, crc_ok,
    and its start and end on the medium clock (s)."""

    __slots__ = ("payload", "rssi", "snr_q", "crc_ok", "start_s", "end_s")

    def __init__(self, payload, rssi, snr_q, crc_ok, start_s, end_s):
        self.payload = payload
        self.rssi = rssi
        self.snr_q = snr_q
        self.crc_ok = crc_ok
        self.start_s = start_s
        self.end_s = end_s


class Air:
    """UDP client of the medium for one emulated chip (`name` as in the topology)."""

    def __init__(self, host, port, name, node_id):
        self.addr = socket.getaddrinfo(host, port)[0][-1]
        self.name = name.encode() if isinstance(name, str) else bytes(name)
        self.node_id = node_id
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])
        self.sock.connect(self.addr)
        self.sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self.sock, select.POLLIN)
        self.registered = None  # (freq, sf, bw, power, cr) the medium knows us by
        self.sim_ref = None  # (medium seconds, ticks_ms, speed) from REGISTERED
        self._seq = 0
        self._kept = []
        self.tx_done = None  # (seq, status, airtime_ms, end_s) of the last TX_DONE
        self.unknown = 0  # datagrams of a type a chip does not expect

    # -- medium clock --------------------------------------------------------

    def local_ms(self, medium_s):
        """ticks_ms value at which the medium clock read `medium_s` (None before REGISTER)."""
        ref = self.sim_ref
        if ref is None:
            return None
        return ticks_add(ref[1], int((medium_s - ref[0]) * 1000 / ref[2]))

    # -- sending -------------------------------------------------------------

    def register(self, freq, sf, bw, power, cr):
        params = (freq, sf, bw, power, cr)
        if params == self.registered:
            return
        msg = struct.pack(REGISTER_FMT, T_REGISTER, self.node_id, freq, sf, bw, power, cr)
        msg += self.name
        for _ in range(REGISTER_TRIES):
            self.sim_ref = None
            self.sock.send(msg)
            start = ticks_ms()
            while self.sim_ref is None:
                left = REGISTER_TIMEOUT_MS - ticks_diff(ticks_ms(), start)
                if left <= 0 or not self._poll.poll(left):
                    break
                self._drain(True)
            if self.sim_ref is not None:
                self.registered = params
                return
        raise OSError(110, "meshsim medium did not answer REGISTER")

    def transmit(self, payload, airtime_us):
        """Start a transmission with the registered parameters; returns its seq."""
        freq, sf, bw, power, cr = self.registered
        self._seq = (self._seq + 1) & 0xFFFF
        self.tx_done = None
        hdr = struct.pack(TX_TIMED_FMT, T_TX_TIMED, self._seq, freq, sf, bw, power, cr, airtime_us)
        self.sock.send(hdr + bytes(payload))
        return self._seq

    def close(self):
        if self.sock is not None:
            try:
                self.sock.send(bytes([T_BYE]))
            except OSError:
                pass
            self.sock.close()
            self.sock = None

    # -- receiving -----------------------------------------------------------

    def _read(self):
        try:
            return self.sock.recv(RECV_MAX)
        except OSError as e:
            if e.args and e.args[0] in (11, 35):  # EAGAIN (Linux, BSD)
                return None
            raise

    def _drain(self, keep):
        """Read what is waiting; REGISTERED and TX_DONE update state, frames are kept
        (keep) or returned."""
        out = []
        while True:
            data = self._read()
            if data is None:
                break
            t = data[0] if data else -1
            if t == T_REGISTERED and len(data) == struct.calcsize(REGISTERED_FMT):
                _, now_s, speed = struct.unpack(REGISTERED_FMT, data)
                self.sim_ref = (now_s, ticks_ms(), speed)
            elif t == T_TX_DONE and len(data) == struct.calcsize(TX_DONE_FMT):
                self.tx_done = struct.unpack(TX_DONE_FMT, data)[1:]
            elif t in (T_RX, T_RX_CRC) and len(data) > RX_HDR:
                _, rssi, snr_q, t0, t1 = struct.unpack(RX_FMT, data[:RX_HDR])
                out.append(Frame(data[RX_HDR:], rssi, snr_q, t == T_RX, t0, t1))
            else:
                self.unknown += 1
        if keep:
            self._kept.extend(out)
            del self._kept[:-QUEUE_LEN]
            return []
        if self._kept:
            out = self._kept + out
            self._kept = []
        return out

    def frames(self):
        """Frames delivered since the last call (oldest first); never blocks."""
        return self._drain(False)
