"""UART framing between a bridge board and the gateway: COBS + CRC-16, 0x00-delimited.

A packet on the wire is COBS(payload || CRC-16/CCITT-FALSE(payload), big-endian) followed
by one 0x00. COBS removes every zero from the body, so a zero always ends a packet and a
corrupted or truncated stream resynchronises at the next one; the CRC catches what COBS
cannot. `StreamDecoder` keeps one fixed buffer: bytes beyond MAX_PACKET are discarded up
to the next delimiter, so no input grows memory.
"""

from lorawire.errors import DecodeError

MAX_PACKET = 300  # a 255-byte LoRa frame plus link header, rssi/snr and CRC
MAX_ENCODED = MAX_PACKET + MAX_PACKET // 254 + 2
DELIMITER = 0


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF); check value 0x29B1 for b'123456789'."""
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
    return crc


def cobs_encode(data):
    out = bytearray()
    code_at = 0
    out.append(0)
    code = 1
    for b in data:
        if b == 0:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
            continue
        out.append(b)
        code += 1
        if code == 0xFF:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
    out[code_at] = code
    return bytes(out)


def cobs_decode(data):
    """Inverse of cobs_encode; DecodeError for a block that runs past the end or a zero."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise DecodeError("zero byte inside a COBS packet")
        end = i + code
        if end > n:
            raise DecodeError("COBS block runs past the end")
        for j in range(i + 1, end):
            if data[j] == 0:
                raise DecodeError("zero byte inside a COBS packet")
        out.extend(data[i + 1 : end])
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_packet(payload):
    if len(payload) > MAX_PACKET - 2:
        raise ValueError("payload of %d bytes exceeds %d" % (len(payload), MAX_PACKET - 2))
    crc = crc16(payload)
    body = bytes(payload) + bytes((crc >> 8, crc & 0xFF))
    return cobs_encode(body) + b"\x00"


class StreamDecoder:
    """Feed it bytes as they arrive; it returns the payloads of intact packets.

    Counters: `packets` accepted, `bad_crc`, `bad_cobs`, `oversize` (dropped to the next
    delimiter), `empty` (stray delimiters, as after a resync, are not errors).
    """

    def __init__(self, max_encoded=MAX_ENCODED):
        self._buf = bytearray(max_encoded)
        self._len = 0
        self._overflow = False
        self.packets = 0
        self.bad_crc = 0
        self.bad_cobs = 0
        self.oversize = 0

    def feed(self, data):
        out = []
        buf = self._buf
        cap = len(buf)
        for b in data:
            if b != DELIMITER:
                if self._len < cap:
                    buf[self._len] = b
                    self._len += 1
                else:
                    self._overflow = True
                continue
            if self._overflow:
                self.oversize += 1
            elif self._len:
                payload = self._finish(bytes(buf[: self._len]))
                if payload is not None:
                    out.append(payload)
            self._len = 0
            self._overflow = False
        return out

    def _finish(self, encoded):
        try:
            body = cobs_decode(encoded)
        except DecodeError:
            self.bad_cobs += 1
            return None
        if len(body) < 2 or crc16(body[:-2]) != (body[-2] << 8 | body[-1]):
            self.bad_crc += 1
            return None
        self.packets += 1
        return body[:-2]
