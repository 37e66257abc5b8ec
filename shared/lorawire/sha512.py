"""SHA-512 (FIPS 180-4): hashlib's when the runtime has it, else a pure implementation.

ESP32 and unix-port MicroPython have no sha512 in hashlib, and Ed25519 needs it. The
pure version has two word layouts, each in its own module so a port loads only its own,
picked at import by the port's small-int width:
* 64-bit ports (unix, CPython): each word as two 32-bit halves (_sha512_halves), so
  every value stays a small int and no round allocates;
* 32-bit ports (ESP32, small ints of 31 bits): 64-bit words (_sha512_words), which needs
  half the operations of halves that would not be small ints there either.
Nothing stays in memory between hashes but the 640 bytes of round constants: each hash
object has its own message schedule, freed with it.
"""

from binascii import unhexlify

try:
    import hashlib as _hashlib

    _HASHLIB = _hashlib.sha512
except (ImportError, AttributeError):
    _HASHLIB = None

BLOCK_SIZE = 128
DIGEST_SIZE = 64

# Round constants as hex (a string constant: in flash when frozen), turned into 640 bytes
# once; as literal ints they would stay in RAM as 80 big-int objects on a 32-bit port.
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
_K = unhexlify(_K_HEX)
_M32 = 0xFFFFFFFF
_IV32 = tuple((_IV[i // 2] >> 32) if i % 2 == 0 else (_IV[i // 2] & _M32) for i in range(16))


def _wide_small_ints():
    """True on a port whose small ints hold 62 bits (unix, CPython): use halves."""
    try:
        import sys

        return sys.maxsize > 0xFFFFFFFF
    except ImportError:
        return False


HALVES = _wide_small_ints()


class PureSHA512:
    """Incremental SHA-512 with the hashlib interface: update(), digest() (ends it).

    `halves` picks the layout (default: the port's own, HALVES); tests run both."""

    digest_size = DIGEST_SIZE
    block_size = BLOCK_SIZE

    def __init__(self, data=None, halves=None):
        if halves is None:
            halves = HALVES
        if halves:
            try:
                from lorawire._sha512_halves import compress
            except ImportError:  # a board's deploy leaves it out (31-bit small ints there)
                halves = False
        self._halves = halves
        if halves:
            self._h = list(_IV32)
            self._w = [0] * 160
        else:
            from lorawire._sha512_words import compress

            self._h = list(_IV)
            self._w = [0] * 80
        self._compress = compress
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
            self._compress(self._h, self._w, buf, 0, _K)
            self._fill = 0
        while n - pos >= BLOCK_SIZE:
            self._compress(self._h, self._w, data, pos, _K)
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
        self._w = None
        out = bytearray(DIGEST_SIZE)
        if self._halves:
            for i in range(16):
                out[4 * i : 4 * i + 4] = self._h[i].to_bytes(4, "big")
        else:
            for i in range(8):
                out[8 * i : 8 * i + 8] = self._h[i].to_bytes(8, "big")
        return bytes(out)


def pure_sha512(data=b"", halves=None):
    """SHA-512 of data by the pure implementation (any runtime)."""
    h = PureSHA512(None, halves)
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
