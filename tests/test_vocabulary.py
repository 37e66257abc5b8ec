"""One vocabulary for both sides: lorawire's codes, the names hosts give them, each
side's price list covering them, and the transmit priorities a gateway asks a board for
(docs/ARCHITECTURE.md, "One vocabulary for both sides")."""

from __future__ import annotations

from loragate import config
from loragate.bans import DEFAULT_POINTS, Misbehaviour
from loragate.mesh.link import BOARD_PRIORITY, PRIO_BLOCK
from loranode import bans as board_bans
from loranode import txqueue
from lorawire import auth, link, messages, names
from tools.meshsim import status

CODES = {
    "bad_tag": auth.BAD_TAG,
    "bad_signature": auth.BAD_SIGNATURE,
    "malformed_frame": auth.MALFORMED,
    "replay": auth.REPLAY,
    "flooding": auth.FLOOD,
    "invalid_sync_data": auth.INVALID_SYNC,
    "manual": auth.MANUAL,
    "handshake_failure": auth.HANDSHAKE_FAILURE,
    "protocol_violation": auth.PROTOCOL_VIOLATION,
}


def test_each_code_has_its_one_name() -> None:
    assert {name: names.misbehaviour_code(name) for name in names.MISBEHAVIOURS} == CODES
    assert [names.misbehaviour(code) for code in range(len(CODES))] == list(names.MISBEHAVIOURS)
    assert names.misbehaviour(99) == "99"  # a newer board's code, shown as it came


def test_the_gateway_charges_in_lorawires_names() -> None:
    assert {m.value: m.code for m in Misbehaviour} == {
        n: c for n, c in CODES.items() if c != auth.MANUAL
    }
    assert all(Misbehaviour.from_code(m.code) is m for m in Misbehaviour)


def test_each_side_prices_every_code_it_can_charge() -> None:
    assert set(config.MISBEHAVIOUR_POINTS) == {m.value for m in Misbehaviour}
    assert set(DEFAULT_POINTS) == set(Misbehaviour)
    assert len(board_bans.POINT_VALUES) == len(names.MISBEHAVIOURS)
    # The two lists differ on purpose (docs/ARCHITECTURE.md gives both): a forged record
    # bans at once on the gateway, a board gives its sender a second chance.
    assert DEFAULT_POINTS[Misbehaviour.BAD_SIGNATURE] == 100
    assert board_bans.POINT_VALUES[auth.BAD_SIGNATURE] == 50


def test_a_boards_ban_reasons_read_with_the_gateways_names() -> None:
    assert status.reason_name(auth.FLOOD) == Misbehaviour.FLOODING.value
    assert status.reason_name(auth.MALFORMED) == Misbehaviour.MALFORMED_FRAME.value


def test_every_known_message_type_has_a_name_and_no_other() -> None:
    known = {t for t in range(256) if messages.is_known(t)}
    assert set(names.MESSAGE_TYPES) == known
    assert all(getattr(messages, n) == t for t, n in names.MESSAGE_TYPES.items())
    assert all(messages.type_name(t) == n for t, n in names.MESSAGE_TYPES.items())
    assert messages.type_name(0x7E) == "0x7e"


def test_a_board_queues_at_the_priority_the_gateway_asks_for() -> None:
    assert (txqueue.CONTROL, txqueue.BLOCKS, txqueue.GOSSIP) == (
        link.PRIO_CONTROL,
        link.PRIO_BLOCKS,
        link.PRIO_GOSSIP,
    )
    assert txqueue.PRIORITIES == 3
    assert set(BOARD_PRIORITY.values()) == {link.PRIO_CONTROL, link.PRIO_BLOCKS, link.PRIO_GOSSIP}
    assert BOARD_PRIORITY[PRIO_BLOCK] == link.PRIO_BLOCKS
