"""The mesh nodes the gateway has heard, as the mesh wing keeps them.

`MeshPeers` holds three bounded tables, oldest dropped first:

* records: node id -> the signed record we verified (its public key feeds the
  LinkKeyCache; a record evicted here is forgotten there too, through `on_evict`);
* heard: node id -> hop count when last heard (any accepted frame), which makes it a
  mesh node (`knows`) for ban pushes;
* direct: the ids whose own ANNOUNCE we heard; a PEX copy of such a record must not
  overwrite the link data (RSSI/SNR, hops) the announce gave.

The manager keeps the peers themselves (kind `mesh`, RSSI/SNR, hops, the bridge as next
hop) through `MeshHost.add_mesh_announcement`; scores are keyed by `scoring.node_key`.
"""

from __future__ import annotations

from collections.abc import Callable

from loragate.bounded import BoundedDict
from lorawire.record import Record


class MeshPeers:
    def __init__(self, records_max: int, heard_max: int, on_evict: Callable[[bytes], None]) -> None:
        self._on_evict = on_evict
        self._records: BoundedDict[bytes, Record] = BoundedDict(records_max, self._evicted)
        self._heard: BoundedDict[bytes, int] = BoundedDict(heard_max)  # id -> hops
        self._direct: BoundedDict[bytes, None] = BoundedDict(heard_max)

    def _evicted(self, node_id: bytes, rec: Record) -> None:
        self._on_evict(node_id)

    def public_of(self, node_id: bytes) -> bytes | None:
        rec = self._records.get(bytes(node_id))
        return None if rec is None else rec.public

    def record(self, node_id: bytes) -> Record | None:
        return self._records.get(node_id)

    def hold(self, rec: Record) -> None:
        self._records.put(rec.id, rec)

    def note_heard(self, node_id: bytes, hops: int) -> None:
        self._heard.put(node_id, hops)

    def note_direct(self, node_id: bytes) -> None:
        self._direct.put(node_id, None)

    def is_direct(self, node_id: bytes) -> bool:
        """Whether we heard the node's own ANNOUNCE."""
        return node_id in self._direct

    def knows(self, node_id: bytes) -> bool:
        return bytes(node_id) in self._heard

    def has_record(self, node_id: bytes) -> bool:
        return bytes(node_id) in self._records

    def hops_of(self, node_id: bytes) -> int:
        return self._heard.get(node_id, 0)

    def forget_record(self, node_id: bytes) -> None:
        self._records.pop(node_id)

    def sizes(self) -> dict[str, int]:
        """How full each table is (status, bounds tests)."""
        return {
            "records": len(self._records),
            "heard": len(self._heard),
            "direct": len(self._direct),
        }
