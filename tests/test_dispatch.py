"""Every message type lorawire knows has one decided fate on each of the gateway's
transports (docs/ARCHITECTURE.md, "Adding a message type"): a new type added to
lorawire.messages without deciding what the gateway does with it fails here."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from loragate import handler, relay, session
from loragate.mesh import receive
from lorawire import messages, names

KNOWN = frozenset(names.MESSAGE_TYPES)
ROOT = Path(__file__).resolve().parents[1]


def exactly_once(tables: dict[str, Iterable[int]]) -> dict[int, list[str]]:
    seen: dict[int, list[str]] = {}
    for table, types in tables.items():
        for t in types:
            seen.setdefault(t, []).append(table)
    return seen


def test_lorawire_knows_exactly_the_named_types() -> None:
    assert KNOWN == {t for t in range(256) if messages.is_known(t)}


def test_a_tcp_peer_s_every_type_has_one_place() -> None:
    seen = exactly_once(
        {
            "session": session.SESSION_TYPES,
            "handler": handler.HANDLERS,
            "relay": relay.RELAY_TYPES,
            "not on TCP": handler.NOT_ON_TCP,
        }
    )
    assert set(seen) == KNOWN
    assert {t: where for t, where in seen.items() if len(where) > 1} == {}


def test_every_type_heard_on_the_mesh_has_one_place() -> None:
    seen = exactly_once({"mesh": receive.HANDLERS, "not on the mesh": receive.NOT_ON_MESH})
    assert set(seen) == KNOWN
    assert {t: where for t, where in seen.items() if len(where) > 1} == {}
    # The mesh's objects are the relay's, as a TCP peer's are.
    relayed = {t for t, h in receive.HANDLERS.items() if h is receive.HANDLERS[messages.INV]}
    assert relayed == relay.RELAY_TYPES


def board_types() -> set[int]:
    """The types firmware/loranode/receive.py compares a message type with (`msg.X`),
    plus the application's (loranode.app.APP_TYPES, delivered to it): the board holds no
    table to read, so its dispatch is read from the source."""
    from loranode.app import APP_TYPES

    tree = ast.parse((ROOT / "firmware" / "loranode" / "receive.py").read_text())
    found = set(APP_TYPES)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                for sub in ast.walk(side):
                    is_msg = isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                    if is_msg and sub.value.id == "msg" and hasattr(messages, sub.attr):
                        found.add(getattr(messages, sub.attr))
    return found & KNOWN


# What a board hears and leaves alone: it cannot afford a table, so the test keeps it.
NOT_ON_A_BOARD = {
    messages.HELLO: "the TCP handshake",
    messages.AUTH: "the TCP handshake",
    messages.UART_LINK: "the bridge's UART, handled by loranode.bridge before any frame",
}


def test_a_board_s_every_type_has_one_place() -> None:
    handled = board_types()
    assert handled | set(NOT_ON_A_BOARD) == KNOWN
    assert handled & set(NOT_ON_A_BOARD) == set()
    # What the gateway's wing acts on, a board acts on too.
    assert set(receive.HANDLERS) <= handled
