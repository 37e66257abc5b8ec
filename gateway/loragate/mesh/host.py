"""What the mesh wing needs from the gateway's peer manager: the interface it is wired to.

`loragate.manager.PeerManager` provides it; the wing never imports the manager, so it
can be built on anything that does (its tests use the real manager).
"""

from __future__ import annotations

from typing import Any, Protocol

from loragate.bans import Ban, BanManager, Misbehaviour
from loragate.relay import Relay
from loragate.scoring import PeerScore
from loragate.store import AsyncStore
from loragate.telemetry import Telemetry
from lorawire.identity import Identity
from lorawire.record import Record


class MeshHost(Protocol):
    @property
    def identity(self) -> Identity: ...

    @property
    def record(self) -> Record | None:
        """The gateway's own signed record (None until the manager started)."""

    @property
    def banman(self) -> BanManager: ...

    @property
    def relay(self) -> Relay: ...

    @property
    def store(self) -> AsyncStore: ...

    @property
    def telemetry(self) -> Telemetry: ...

    def score_for(self, key: str) -> PeerScore:
        """The score of `key` (scoring.node_key), to be changed and persisted."""

    def add_mesh_announcement(
        self,
        record: Record | bytes | dict[int, Any],
        bridge_id: bytes,
        rssi: float | None,
        snr: float | None,
        hops: int,
    ) -> Record | None:
        """A verified record heard on the mesh: a mesh peer of the gateway. RSSI/SNR are
        the bridge radio's link to it, only for a direct neighbour (None otherwise: what
        the radio measured was the last relay's link)."""

    def mesh_heard(self, node_id: bytes) -> None:
        """A frame from mesh node `node_id` passed its tag check: it is alive."""

    def misbehaving(
        self,
        kind: Misbehaviour,
        node_id: bytes | None,
        host: str | None,
        reason: str,
        msg_type: int | None = None,
        data: bytes | None = None,
    ) -> list[Ban]:
        """Points for a proven fault; the bans it caused."""
