"""SHA-512 compression in 64-bit words (ports whose small ints have 31 bits: ESP32).

Every word is a long int there anyway, and whole words need half the operations of
halves that would not be small ints either. Used by lorawire.sha512.
"""

_M64 = 0xFFFFFFFFFFFFFFFF


def compress(h, w, block, off, k):
    """Fold the 128-byte block at block[off:] into the 8 words of h (in place); `k` is the
    round constants as 640 bytes, read a word at a time (no table of long ints stays in
    memory); `w` is 80 words of scratch."""
    m = _M64
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
        kt = int.from_bytes(k[8 * i : 8 * i + 8], "big")
        t1 = hh + (((ee >> 14) ^ (ee >> 18) ^ (ee >> 41)) & m) + (g ^ (e & (f ^ g))) + kt + w[i]
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


