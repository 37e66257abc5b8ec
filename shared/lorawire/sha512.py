"""SHA-512 (FIPS 180-4): hashlib's when the runtime has it, else a pure implementation.

ESP32 and unix-port MicroPython have no sha512 in hashlib, and Ed25519 needs it. The
pure version has two word layouts, picked at import by the port's small-int width:
* 64-bit ports (unix, CPython): each word as two 32-bit halves, so every value stays a
  small int and no round allocates (about 3x faster there than 64-bit words);
* 32-bit ports (ESP32, small ints of 31 bits): 64-bit words masked to 64 bits, which
  needs half the operations of halves that would not be small ints there either.
The message schedule is one scratch list shared by all hash objects.
"""

from binascii import unhexlify

try:
    import hashlib as _hashlib

    _HASHLIB = _hashlib.sha512
except (ImportError, AttributeError):
    _HASHLIB = None

_M64 = 0xFFFFFFFFFFFFFFFF
BLOCK_SIZE = 128
DIGEST_SIZE = 64

# Round constants as hex, turned into ints only in the layout this port uses: as
# literal ints they would stay in RAM as 80 big-int objects on every port.
_K_HEX = (
    "428a2f98d728ae227137449123ef65cdb5c0fbcfec4d3b2fe9b5dba58189dbbc"
    "3956c25bf348b53859f111f1b605d019923f82a4af194f9bab1c5ed5da6d8118"
    "d807aa98a303024212835b0145706fbe243185be4ee4b28c550c7dc3d5ffb4e2"
    "72be5d74f27b896f80deb1fe3b1696b19bdc06a725c71235c19bf174cf692694"
    "e49b69c19ef14ad2efbe4786384f25e30fc19dc68b8cd5b5240ca1cc77ac9c65"
    "2de92c6f592b02754a7484aa6ea6e4835cb0a9dcbd41fbd476f988da831153b5"
    "983e5152ee66dfaba831c66d2db43210b00327c898fb213fbf597fc7beef0ee4"
    "c6e00bf33da88fc2d5a79147930aa72506ca6351e003826f142929670a0e6e70"
    "27b70a8546d22ffc2e1b21385c26c9264d2c6dfc5ac42aed53380d139d95b3df"
    "650a73548baf63de766a0abb3c77b2a881c2c92e47edaee692722c851482353b"
    "a2bfe8a14cf10364a81a664bbc423001c24b8b70d0f89791c76c51a30654be30"
    "d192e819d6ef5218d69906245565a910f40e35855771202a106aa07032bbd1b8"
    "19a4c116b8d2d0c81e376c085141ab532748774cdf8eeb9934b0bcb5e19b48a8"
    "391c0cb3c5c95a634ed8aa4ae3418acb5b9cca4f7763e373682e6ff3d6b2b8a3"
    "748f82ee5defb2fc78a5636f43172f6084c87814a1f0ab728cc702081a6439ec"
    "90befffa23631e28a4506cebde82bde9bef9a3f7b2c67915c67178f2e372532b"
    "ca273eceea26619cd186b8c721c0c207eada7dd6cde0eb1ef57d4f7fee6ed178"
    "06f067aa72176fba0a637dc5a2c898a6113f9804bef90dae1b710b35131c471b"
    "28db77f523047d8432caab7b40c724933c9ebe0a15c9bebc431d67c49c100d4c"
    "4cc5d4becb3e42b6597f299cfc657e2a5fcb6fab3ad6faec6c44198c4a475817"
)

_IV = (
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
)  # fmt: skip


def _compress(h, w, block, off):
    """Fold the 128-byte block at block[off:] into the state list h (in place)."""
    m = _M64
    k = _K
    if k is None:
        k = _tables64()
    for i in range(16):
        j = off + 8 * i
        w[i] = int.from_bytes(block[j : j + 8], "big")
    for i in range(16, 80):
        # A rotation of x is a shift of x doubled up to 128 bits, masked afterwards.
        x = w[i - 15]
        xx = x | (x << 64)
        y = w[i - 2]
        yy = y | (y << 64)
        s0 = ((xx >> 1) ^ (xx >> 8) ^ (x >> 7)) & m
        s1 = ((yy >> 19) ^ (yy >> 61) ^ (y >> 6)) & m
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & m
    a, b, c, d, e, f, g, hh = h
    for i in range(80):
        ee = e | (e << 64)
        t1 = hh + (((ee >> 14) ^ (ee >> 18) ^ (ee >> 41)) & m) + (g ^ (e & (f ^ g))) + k[i] + w[i]
        aa = a | (a << 64)
        t2 = (((aa >> 28) ^ (aa >> 34) ^ (aa >> 39)) & m) + ((a & b) | (c & (a | b)))
        hh = g
        g = f
        f = e
        e = (d + t1) & m
        d = c
        c = b
        b = a
        a = (t1 + t2) & m
    h[0] = (h[0] + a) & m
    h[1] = (h[1] + b) & m
    h[2] = (h[2] + c) & m
    h[3] = (h[3] + d) & m
    h[4] = (h[4] + e) & m
    h[5] = (h[5] + f) & m
    h[6] = (h[6] + g) & m
    h[7] = (h[7] + hh) & m


_M32 = 0xFFFFFFFF


def _compress32(h, w, block, off):
    """_compress on 32-bit halves: on a 64-bit port every value stays a small int.

    h holds 16 halves (hi, lo, hi, lo, ...); w holds the 80 high halves of the schedule
    then the 80 low ones (w[80 + j] is the low half of word j). A left shift by 31 would
    leave the 63-bit small-int range, so that one bit is masked before shifting.
    """
    m = _M32
    kh = _KH
    kl = _KL
    if kh is None or kl is None:
        kh, kl = _tables32()
    for i in range(16):
        j = off + 8 * i
        w[i] = int.from_bytes(block[j : j + 4], "big")
        w[80 + i] = int.from_bytes(block[j + 4 : j + 8], "big")
    for i in range(16, 80):
        xh = w[i - 15]
        xl = w[i + 65]
        yh = w[i - 2]
        yl = w[i + 78]
        # sigma0 = rotr1 ^ rotr8 ^ shr7, sigma1 = rotr19 ^ rotr61 ^ shr6
        s0h = ((xh >> 1) ^ ((xl & 1) << 31) ^ (xh >> 8) ^ (xl << 24) ^ (xh >> 7)) & m
        s0l = ((xl >> 1) ^ ((xh & 1) << 31) ^ (xl >> 8) ^ (xh << 24) ^ (xl >> 7) ^ (xh << 25)) & m
        s1h = ((yh >> 19) ^ (yl << 13) ^ (yl >> 29) ^ (yh << 3) ^ (yh >> 6)) & m
        s1l = ((yl >> 19) ^ (yh << 13) ^ (yh >> 29) ^ (yl << 3) ^ (yl >> 6) ^ (yh << 26)) & m
        lo = w[i + 64] + s0l + w[i + 73] + s1l
        w[i] = (w[i - 16] + s0h + w[i - 7] + s1h + (lo >> 32)) & m
        w[80 + i] = lo & m
    ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl = h
    for i in range(80):
        # Sigma1(e) = rotr14 ^ rotr18 ^ rotr41
        s1h = ((eh >> 14) ^ (el << 18) ^ (eh >> 18) ^ (el << 14) ^ (el >> 9) ^ (eh << 23)) & m
        s1l = ((el >> 14) ^ (eh << 18) ^ (el >> 18) ^ (eh << 14) ^ (eh >> 9) ^ (el << 23)) & m
        tl = hl + s1l + (gl ^ (el & (fl ^ gl))) + kl[i] + w[80 + i]
        th = hh + s1h + (gh ^ (eh & (fh ^ gh))) + kh[i] + w[i] + (tl >> 32)
        tl &= m
        # Sigma0(a) = rotr28 ^ rotr34 ^ rotr39
        s0h = ((ah >> 28) ^ (al << 4) ^ (al >> 2) ^ (ah << 30) ^ (al >> 7) ^ (ah << 25)) & m
        s0l = ((al >> 28) ^ (ah << 4) ^ (ah >> 2) ^ (al << 30) ^ (ah >> 7) ^ (al << 25)) & m
        ul = s0l + ((al & bl) | (cl & (al | bl)))
        uh = s0h + ((ah & bh) | (ch & (ah | bh)))
        hh = gh
        hl = gl
        gh = fh
        gl = fl
        fh = eh
        fl = el
        el = dl + tl
        eh = (dh + th + (el >> 32)) & m
        el &= m
        dh = ch
        dl = cl
        ch = bh
        cl = bl
        bh = ah
        bl = al
        al = tl + ul
        ah = (th + uh + (al >> 32)) & m
        al &= m
    v = (ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl)
    for i in range(0, 16, 2):
        lo = h[i + 1] + v[i + 1]
        h[i] = (h[i] + v[i] + (lo >> 32)) & m
        h[i + 1] = lo & m


def _wide_small_ints():
    """True on a port whose small ints hold 62 bits (unix, CPython): use halves."""
    try:
        import sys

        return sys.maxsize > 0xFFFFFFFF
    except ImportError:
        return False


_K = None  # 80 words, built on first use by the 64-bit-word layout
_KH = None  # high and low halves, built on first use by the halves layout
_KL = None
_IV32 = tuple((_IV[i // 2] >> 32) if i % 2 == 0 else (_IV[i // 2] & _M32) for i in range(16))


def _tables64():
    global _K
    raw = unhexlify(_K_HEX)
    _K = tuple(int.from_bytes(raw[i : i + 8], "big") for i in range(0, 640, 8))
    return _K


def _tables32():
    global _KH, _KL
    raw = unhexlify(_K_HEX)
    _KH = tuple(int.from_bytes(raw[i : i + 4], "big") for i in range(0, 640, 8))
    _KL = tuple(int.from_bytes(raw[i + 4 : i + 8], "big") for i in range(0, 640, 8))
    return _KH, _KL


HALVES = _wide_small_ints()
# Message-schedule scratch shared by every hash object: _compress never yields, so two
# interleaved hashes cannot see each other's schedule.
_W32 = None
_W64 = None


class PureSHA512:
    """Incremental SHA-512 with the hashlib interface: update(), digest() (ends it)."""

    digest_size = DIGEST_SIZE
    block_size = BLOCK_SIZE

    def __init__(self, data=None):
        global _W32, _W64
        if HALVES:
            if _W32 is None:
                _W32 = [0] * 160
            self._h = list(_IV32)
            self._w = _W32
            self._compress = _compress32
        else:
            if _W64 is None:
                _W64 = [0] * 80
            self._h = list(_IV)
            self._w = _W64
            self._compress = _compress
        self._buf = bytearray(BLOCK_SIZE)
        self._fill = 0
        self._length = 0
        self._done = False
        if data is not None:
            self.update(data)

    def update(self, data):
        if self._done:
            raise ValueError("hash object already finalised")
        n = len(data)
        self._length += n
        pos = 0
        buf = self._buf
        if self._fill:
            take = min(BLOCK_SIZE - self._fill, n)
            buf[self._fill : self._fill + take] = data[:take]
            self._fill += take
            pos = take
            if self._fill < BLOCK_SIZE:
                return
            self._compress(self._h, self._w, buf, 0)
            self._fill = 0
        while n - pos >= BLOCK_SIZE:
            self._compress(self._h, self._w, data, pos)
            pos += BLOCK_SIZE
        rest = n - pos
        if rest:
            buf[0:rest] = data[pos:]
            self._fill = rest

    def digest(self):
        if self._done:
            raise ValueError("hash object already finalised")
        bits = self._length * 8
        pad = bytearray(BLOCK_SIZE * 2)
        pad[0] = 0x80
        fill = self._fill
        padlen = (BLOCK_SIZE + 112 - fill - 1) % BLOCK_SIZE + 1
        self.update(pad[:padlen])
        self.update(bits.to_bytes(16, "big"))
        self._done = True
        out = bytearray(DIGEST_SIZE)
        if HALVES:
            for i in range(16):
                out[4 * i : 4 * i + 4] = self._h[i].to_bytes(4, "big")
        else:
            for i in range(8):
                out[8 * i : 8 * i + 8] = self._h[i].to_bytes(8, "big")
        return bytes(out)


def pure_sha512(data=b""):
    """SHA-512 of data by the pure implementation (any runtime)."""
    h = PureSHA512()
    h.update(data)
    return h.digest()


if _HASHLIB is not None:
    new = _HASHLIB

    def sha512(data=b""):
        """SHA-512 of data (bytes-like) as 64 bytes."""
        return _HASHLIB(data).digest()

else:
    new = PureSHA512
    sha512 = pure_sha512
