"""The peer manager's shared tables, built without a PeerManager, for its parts' tests.

`Tables` holds exactly what `manager.PeerManager` builds before its parts (real
objects: an AddrMan, a BanManager, a Relay, the peer/score/record tables, telemetry
with an event bus whose events are kept in `events`); the `tables` fixture
(tests/gateway/conftest.py) makes one per test.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from loragate.addrman import AddrMan
from loragate.bans import BanManager, BanPolicy
from loragate.events import Event, EventKind
from loragate.handler import MessageHandler
from loragate.ownnode import OwnNode
from loragate.peertable import MeshPeerTable, PeerTable, RecordTable, ScoreTable
from loragate.relay import Relay, Validator
from loragate.scoring import DEFAULT_WEIGHTS
from loragate.telemetry import Telemetry
from loragate.tuning import ManagerTuning
from lorawire.identity import Identity


@dataclass
class Tables:
    own: OwnNode
    tuning: ManagerTuning
    telemetry: Telemetry
    scores: ScoreTable
    records: RecordTable
    mesh_peers: MeshPeerTable
    table: PeerTable
    book: AddrMan
    banman: BanManager
    relay: Relay
    stats: Counter[str] = field(default_factory=Counter)
    events: list[Event] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]

    def handler(self) -> MessageHandler:
        return MessageHandler(
            self.own,
            self.tuning,
            table=self.table,
            scores=self.scores,
            records=self.records,
            mesh_peers=self.mesh_peers,
            book=self.book,
            banman=self.banman,
            relay=self.relay,
            telemetry=self.telemetry,
            stats=self.stats,
            rng=self.rng,
        )


def build_tables(
    listen: tuple[str, int] = ("127.0.0.1", 0),
    *,
    tuning: ManagerTuning | None = None,
    policy: BanPolicy | None = None,
    validator: Validator | None = None,
) -> Tables:
    tuning = tuning or ManagerTuning()
    telemetry = Telemetry()
    scores = ScoreTable(DEFAULT_WEIGHTS, tuning.scores_max)
    t = Tables(
        own=OwnNode(Identity.generate(), listen),
        tuning=tuning,
        telemetry=telemetry,
        scores=scores,
        records=RecordTable(tuning.records_max),
        mesh_peers=MeshPeerTable(tuning.mesh_max),
        table=PeerTable(scores, telemetry),
        book=AddrMan(rng=random.Random(3)),
        banman=BanManager(policy),
        relay=Relay(validator=validator, limits=tuning.relay),
    )
    telemetry.bus.add_callback(t.events.append)
    return t
