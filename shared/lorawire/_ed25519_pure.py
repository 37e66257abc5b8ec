"""Pure-Python Ed25519 (RFC 8032) for MicroPython, also importable on CPython for tests.

Points are extended twisted Edwards coordinates (X, Y, Z, T), x = X/Z, y = Y/Z,
x*y = T/Z, on -x^2 + y^2 = 1 + d x^2 y^2 (a = -1). Formulas: Hisil-Wong-Carter-Dawson
2008 (add-2008-hwcd-3, dbl-2008-hwcd), in the shape ref10 uses.

Every scalar multiplication is one Straus loop (`_straus`) over signed sliding windows
(width WNAF_WIDTH) with 2**(WNAF_WIDTH-2) odd multiples of each point, built per call:
verification computes [S]B - [k]A with one set of doublings for both, signing and key
derivation [s]B alone. No precomputed table stays in memory: a board loading this
module from its filesystem keeps every byte of a table in its heap, and a fixed-base
comb saved about a fifth of the time of a signature that a node makes once per boot.
Doublings skip T when no addition follows; field arithmetic is written inline.

Verification is the cofactorless check of RFC 8032 §5.1.7 done on encodings:
encode([S]B - [k]A) == R bytes. That rejects non-canonical R by construction. On top
of the RFC we reject: S >= L, a non-canonical A (y >= p, or x = 0 with the sign bit
set), and a small-order A (the 8 points of order 1, 2, 4, 8), for which a signature
would verify for any message. lorawire.ed25519's `cryptography` path applies the same
pre-checks so both paths give the same answer.

`sign` keeps the expanded key of the last seed it used (one entry: seed, scalar, nonce
prefix, public key), so a node signing with its own key skips one multiplication.

Timing: nothing here is constant-time (bytecode big-int arithmetic cannot be); the
scalar-dependent branches of signing leak timing to anyone who can measure it closely.
"""

from lorawire.sha512 import sha512

P = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFED
L = 0x1000000000000000000000000000000014DEF9DEA2F79CD65812631A5CF5D3ED
D = 0x52036CEE2B6FFE738CC740797779E89800700A4D4141D8AB75EB4DCA135978A3
D2 = 0x2406D9DC56DFFCE7198E80F2EEF3D13000E0149A8283B156EBD69B9426B2F159
SQRT_M1 = 0x2B8324804FC1DF0B2B4D00993DFBD7A72F431806AD2FE478C4EE1B274A0EA0B0
BX = 0x216936D3CD6E53FEC0A4E231FDD6DC5C692CC7609525A7B2C9562D608F25D51A
BY = 0x6666666666666666666666666666666666666666666666666666666666666658
_MASK255 = (1 << 255) - 1

WNAF_WIDTH = 5
_WNAF_TABLE = 1 << (WNAF_WIDTH - 2)  # odd multiples 1, 3, ..., 2**(w-1) - 1

_key_cache = None  # (seed, a, prefix, public) of the last key used to sign


def _sqn(x, n):
    p = P
    for _ in range(n):
        x = x * x % p
    return x


def _pow250(z):
    """(z**(2**250 - 1), z**11): the shared start of the ref10 addition chains.

    254 squarings and 11 multiplications in bytecode beat the builtin pow(), whose
    generic square-and-multiply costs half as much again on MicroPython.
    """
    p = P
    z2 = z * z % p
    z9 = _sqn(z2, 2) * z % p
    z11 = z9 * z2 % p
    z5_0 = z11 * z11 % p * z9 % p
    z10_0 = _sqn(z5_0, 5) * z5_0 % p
    z20_0 = _sqn(z10_0, 10) * z10_0 % p
    z40_0 = _sqn(z20_0, 20) * z20_0 % p
    z50_0 = _sqn(z40_0, 10) * z10_0 % p
    z100_0 = _sqn(z50_0, 50) * z50_0 % p
    z200_0 = _sqn(z100_0, 100) * z100_0 % p
    return _sqn(z200_0, 50) * z50_0 % p, z11


def _inv(z):
    """z**(p-2) = 1/z (and 0 for 0)."""
    t, z11 = _pow250(z)
    return _sqn(t, 5) * z11 % P


def _pow22523(z):
    """z**((p-5)/8), for the square root in point decoding."""
    t, _ = _pow250(z)
    return _sqn(t, 2) * z % P


def _encode(x_, y_, z_):
    zi = _inv(z_)
    x = x_ * zi % P
    y = y_ * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(s):
    """Point (x, y) from a canonical 32-byte encoding, or None (RFC 8032 §5.1.3)."""
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= _MASK255
    if y >= P:
        return None
    yy = y * y % P
    u = (yy - 1) % P
    v = (D * yy + 1) % P
    v3 = v * v % P * v % P
    x = u * v3 % P * _pow22523(u * v3 % P * v3 % P * v % P) % P
    vxx = v * x % P * x % P
    if vxx != u:
        if vxx != P - u:
            return None
        x = x * SQRT_M1 % P
    if x == 0 and sign:
        return None
    if (x & 1) != sign:
        x = P - x
    return x, y


def _small_order(x, y):
    """True when [8](x, y) is the identity."""
    p = P
    x_, y_, z_ = x, y, 1
    for _ in range(3):
        a = x_ * x_ % p
        b = y_ * y_ % p
        c = 2 * z_ * z_ % p
        h = a + b
        e = h - (x_ + y_) * (x_ + y_) % p
        g = a - b
        f = c + g
        x_ = e * f % p
        y_ = g * h % p
        z_ = f * g % p
    return x_ == 0


def _wnaf(k):
    """Signed digits of k (odd, |d| < 2**(w-1)), least significant first, as bytes."""
    out = bytearray(256)
    width = 1 << WNAF_WIDTH
    half = width >> 1
    i = 0
    while k:
        if k & 1:
            d = k & (width - 1)
            if d >= half:
                d -= width
            k -= d
            out[i] = d & 0xFF
        k >>= 1
        i += 1
    return out, i


def _expand(seed):
    h = sha512(seed)
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def _key(seed):
    global _key_cache
    kc = _key_cache
    if kc is not None and kc[0] == seed:
        return kc
    a, prefix = _expand(seed)
    pub = _encode(*_straus(a % L, 0, 0, 0))
    kc = (bytes(seed), a, prefix, pub)
    _key_cache = kc
    return kc


def _check_seed(seed):
    if not isinstance(seed, (bytes, bytearray)):
        raise TypeError("seed must be bytes")
    if len(seed) != 32:
        raise ValueError("seed must be 32 bytes")


def public_key(seed):
    """Ed25519 public key (32 bytes) of a 32-byte seed."""
    _check_seed(seed)
    return _key(bytes(seed))[3]


def sign(seed, message):
    """Ed25519 signature (64 bytes) of message under the 32-byte seed."""
    _check_seed(seed)
    if not isinstance(message, (bytes, bytearray, memoryview)):
        raise TypeError("message must be bytes")
    _, a, prefix, pub = _key(bytes(seed))
    message = bytes(message)
    r = int.from_bytes(sha512(prefix + message), "little") % L
    rb = _encode(*_straus(r, 0, 0, 0))
    k = int.from_bytes(sha512(rb + pub + message), "little") % L
    s = (r + k * a) % L
    return rb + s.to_bytes(32, "little")


def _is_bytes(v):
    return isinstance(v, (bytes, bytearray, memoryview))


def verify(public, message, signature):
    """True when signature is a valid Ed25519 signature of message under public.

    False, never an exception, for any malformed input: wrong types or lengths,
    S >= L, a non-canonical or small-order public key, a non-canonical R.
    """
    if not (_is_bytes(public) and _is_bytes(message) and _is_bytes(signature)):
        return False
    if len(public) != 32 or len(signature) != 64:
        return False
    public = bytes(public)
    signature = bytes(signature)
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    pt = _decode(public)
    if pt is None or _small_order(pt[0], pt[1]):
        return False
    rb = signature[:32]
    k = int.from_bytes(sha512(rb + public + bytes(message)), "little") % L
    return _encode(*_straus(s, k, P - pt[0], pt[1])) == rb


def _odd_multiples(x1, y1):
    """[1, 3, 5, ...] * (x1, y1) in cached form (Y+X, Y-X, 2dT, 2Z), _WNAF_TABLE of them."""
    p = P
    z1, t1 = 1, x1 * y1 % p
    a = x1 * x1 % p
    b = y1 * y1 % p
    h = a + b
    e = h - (x1 + y1) * (x1 + y1) % p
    g = a - b
    f = 2 + g
    x2, y2, z2, t2 = e * f % p, g * h % p, f * g % p, e * h % p
    ypx2, ymx2, t2d2, z2x2 = (y2 + x2) % p, (y2 - x2) % p, t2 * D2 % p, 2 * z2 % p
    odd = [None] * _WNAF_TABLE
    # [None] * n preallocates the slots; mypy takes it for a list that holds only None
    odd[0] = ((y1 + x1) % p, (y1 - x1) % p, t1 * D2 % p, 2)  # type: ignore[call-overload]
    for j in range(1, _WNAF_TABLE):
        a = (y1 - x1) * ymx2 % p
        b = (y1 + x1) * ypx2 % p
        cc = t1 * t2d2 % p
        dd = z1 * z2x2 % p
        e = b - a
        f = dd - cc
        g = dd + cc
        h = b + a
        x1 = e * f % p
        y1 = g * h % p
        z1 = f * g % p
        t1 = e * h % p
        odd[j] = ((y1 + x1) % p, (y1 - x1) % p, t1 * D2 % p, 2 * z1 % p)  # type: ignore[call-overload]
    return odd


def _straus(s, k, ax, ay):
    """[s]B + [k](ax, ay) with shared doublings, as extended (X, Y, Z); k = 0 skips the point."""
    p = P
    tables = [_odd_multiples(BX, BY)]
    digits = [_wnaf(s)]
    if k:
        tables.append(_odd_multiples(ax, ay))
        digits.append(_wnaf(k))
    top = 0
    for _, n in digits:
        if n > top:
            top = n
    x1, y1, z1, t1 = 0, 1, 1, 0
    first = True
    for i in range(top - 1, -1, -1):
        d0 = digits[0][0][i]
        d1 = digits[1][0][i] if k else 0
        if not first:
            a = x1 * x1 % p
            b = y1 * y1 % p
            cc = 2 * z1 * z1 % p
            h = a + b
            e = h - (x1 + y1) * (x1 + y1) % p
            g = a - b
            f = cc + g
            x1 = e * f % p
            y1 = g * h % p
            z1 = f * g % p
            if d0 or d1:
                t1 = e * h % p
        for j in range(len(tables)):
            d = d1 if j else d0
            if not d:
                continue
            first = False
            if d < 128:
                ypx, ymx, t2d, z2x = tables[j][d >> 1]
            else:
                ymx, ypx, t2d, z2x = tables[j][(256 - d) >> 1]
                t2d = p - t2d
            a = (y1 - x1) * ymx % p
            b = (y1 + x1) * ypx % p
            cc = t1 * t2d % p
            dd = z1 * z2x % p
            e = b - a
            f = dd - cc
            g = dd + cc
            h = b + a
            x1 = e * f % p
            y1 = g * h % p
            z1 = f * g % p
            t1 = e * h % p
    return x1, y1, z1
