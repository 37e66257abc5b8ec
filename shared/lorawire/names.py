"""Names for the codes both sides share, for hosts only (never shipped to a board).

A board speaks codes (lorawire.auth's misbehaviour codes, lorawire.messages' types, the
link's transmit priorities) and holds no name tables: each would cost heap on a board
with ~108 KB. Hosts (the gateway, tools, tests) turn codes into names here, so a name
means the same on both sides: the gateway's `[bans.points]` keys, its ban evidence and
metrics, and the board's STATUS line as the tools show it.
"""

# Indexed by lorawire.auth's code (auth.BAD_TAG == 0, ...; tests/test_vocabulary.py).
MISBEHAVIOURS = (
    "bad_tag",
    "bad_signature",
    "malformed_frame",
    "replay",
    "flooding",
    "invalid_sync_data",
    "manual",
    "handshake_failure",
    "protocol_violation",
)

# lorawire.messages' codes, written out: this module imports nothing, so messages can
# look a name up here (tests/test_vocabulary.py checks each against messages).
MESSAGE_TYPES = {
    0x01: "ANNOUNCE",
    0x02: "PEX_REQUEST",
    0x03: "PEX_RESPONSE",
    0x04: "PING",
    0x05: "PONG",
    0x06: "ACK",
    0x10: "INV",
    0x11: "GETDATA",
    0x12: "TX",
    0x13: "BLOCK",
    0x14: "REJECT",
    0x20: "FRAGMENT",
    0x30: "HELLO",
    0x31: "AUTH",
    0x3F: "UART_LINK",
}


def misbehaviour(code):
    """The name of a misbehaviour code; the code itself as text when unknown."""
    return MISBEHAVIOURS[code] if 0 <= code < len(MISBEHAVIOURS) else str(code)


def misbehaviour_code(name):
    """The code of a misbehaviour name; ValueError when unknown."""
    return MISBEHAVIOURS.index(name)
