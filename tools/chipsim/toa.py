# mypy: ignore-errors
"""LoRa time on air from a chip's own modulation and packet settings.

The two datasheets give the same packet structure (SX1276/77/78/79 DS rev 7 section
4.1.1.7 "Time on air", equations for Tpreamble and payloadSymbNb; SX1261/2 DS rev 2.1
section 6.1.4 "LoRa Time-on-Air"):

    Tsym           = 2**SF / BW
    Tpreamble      = (Npreamble + 4.25) * Tsym
    payloadSymbNb  = 8 + max(ceil((8*PL - 4*SF + 28 + 16*CRC - 20*IH) / (4*(SF - 2*DE)))
                             * (CR + 4), 0)

CR is 1..4 for 4/5..4/8, IH 1 in implicit header mode, DE 1 with low data rate
optimisation. SX126x at SF5/SF6 (DS 6.1.4) adds two preamble symbols and drops the
"+ 28" to "+ 20" (the eight bits its shorter sync takes). DE is whatever the chip was
told (RegModemConfig3 / SetModulationParams), not derived from Tsym here: a driver that
sets it wrongly gets the airtime the chip really has.

BW is the chip's real bandwidth, 500 kHz divided by 1, 2, 4, 8, 12, 16, 24, 32, 48 or
64 (the "7.8 kHz" setting is 7812.5 Hz), so Tsym is 2**SF * div * 2 microseconds and
the time on air is a whole number of microseconds.
"""

# bandwidth in Hz as the drivers name it -> divisor of 500 kHz
BW_DIV = {
    7800: 64,
    10400: 48,
    15600: 32,
    20800: 24,
    31250: 16,
    41700: 12,
    62500: 8,
    125000: 4,
    250000: 2,
    500000: 1,
}


def symbols_x4(sf, cr, preamble, payload_len, crc_on, implicit, ldro, sx126x=False):
    """Symbols on air times four (the preamble's 4.25 makes it fractional)."""
    pre_x4 = 4 * preamble + 17
    header_bits = 28
    if sx126x and sf < 7:
        pre_x4 += 8
        header_bits = 20
    bits = 8 * payload_len - 4 * sf + header_bits
    if crc_on:
        bits += 16
    if implicit:
        bits -= 20
    per_symbol = 4 * (sf - 2 * (1 if ldro else 0))
    blocks = (bits + per_symbol - 1) // per_symbol if bits > 0 else 0
    return pre_x4 + 4 * (8 + blocks * (cr + 4))


def symbol_us(sf, bw_hz):
    """Tsym in microseconds."""
    return (1 << sf) * BW_DIV[bw_hz] * 2


def time_on_air_us(sf, bw_hz, cr, preamble, payload_len, crc_on, implicit, ldro, sx126x=False):
    """Whole microseconds on air for these settings."""
    n_x4 = symbols_x4(sf, cr, preamble, payload_len, crc_on, implicit, ldro, sx126x)
    return n_x4 * symbol_us(sf, bw_hz) // 4
