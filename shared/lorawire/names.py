"""Names for the codes both sides share, for hosts only (never shipped to a board).

A board speaks codes (lorawire.auth's misbehaviour codes, lorawire.messages' types, the
link's transmit priorities) and holds no name tables: each would cost heap on a board
with ~108 KB. Hosts (the gateway, tools, tests) turn codes into names here, so a name
means the same on both sides: the gateway's `[bans.points]` keys, its ban evidence and
metrics, and the board's STATUS line as the tools show it.
"""

from lorawire import messages

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

MESSAGE_TYPES = {
    messages.ANNOUNCE: "ANNOUNCE",
    messages.PEX_REQUEST: "PEX_REQUEST",
    messages.PEX_RESPONSE: "PEX_RESPONSE",
    messages.PING: "PING",
    messages.PONG: "PONG",
    messages.ACK: "ACK",
    messages.INV: "INV",
    messages.GETDATA: "GETDATA",
    messages.TX: "TX",
    messages.BLOCK: "BLOCK",
    messages.REJECT: "REJECT",
    messages.FRAGMENT: "FRAGMENT",
    messages.HELLO: "HELLO",
    messages.AUTH: "AUTH",
    messages.UART_LINK: "UART_LINK",
}


def misbehaviour(code):
    """The name of a misbehaviour code; the code itself as text when unknown."""
    return MISBEHAVIOURS[code] if 0 <= code < len(MISBEHAVIOURS) else str(code)


def misbehaviour_code(name):
    """The code of a misbehaviour name; ValueError when unknown."""
    return MISBEHAVIOURS.index(name)
