"""SHA-512 compression on 32-bit halves (ports whose small ints have 62 bits: unix, CPython).

There every value stays a small int and no round allocates (about 3x faster than
64-bit words). Used by lorawire.sha512.
"""

_M32 = 0xFFFFFFFF
_KH = None  # round constants as high and low halves, built on first use
_KL = None


def _tables(k):
    global _KH, _KL
    _KH = tuple(int.from_bytes(k[i : i + 4], "big") for i in range(0, 640, 8))
    _KL = tuple(int.from_bytes(k[i + 4 : i + 8], "big") for i in range(0, 640, 8))
    return _KH, _KL


def compress(h, w, block, off, k):
    """Fold the 128-byte block at block[off:] into h, as 16 32-bit halves.

    h holds 16 halves (hi, lo, hi, lo, ...); w holds the 80 high halves of the schedule
    then the 80 low ones (w[80 + j] is the low half of word j). A left shift by 31 would
    leave the 63-bit small-int range, so that one bit is masked before shifting.
    """
    m = _M32
    kh = _KH
    kl = _KL
    if kh is None or kl is None:
        kh, kl = _tables(k)
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


