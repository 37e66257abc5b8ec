"""The mesh nodes the gateway has heard, as the mesh side keeps them (loragate.mesh).

`MeshPeers` holds three bounded tables, oldest dropped first:

* `records`: node id -> the signed record we verified (its public key feeds the
  LinkKeyCache; a record evicted here is forgotten there too, through `on_evict`);
* `heard`: node id -> hop count when last heard (any accepted frame), which makes it a
  mesh node (`knows`) for ban pushes;
* `direct`: the ids whose own ANNOUNCE we heard; a PEX copy of such a record must not
  overwrite the link data (RSSI/SNR, hops) the announce gave.

The manager keeps the peers themselves (kind `mesh`, RSSI/SNR, hops, the bridge as next
hop) through `manager.add_mesh_announcement`; scores are keyed by `mesh_key(node_id)`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from lorawire.record import Record


def mesh_key(node_id: bytes) -> str:
    """The manager's score and ban key of a mesh node."""
    return f"node:{node_id.hex()}"


class MeshPeers:
    def __init__(self, records_max: int, heard_max: int, on_evict: Callable[[bytes], None]) -> None:
        self.records_max = records_max
        self.heard_max = heard_max
        self._on_evict = on_evict
        self.records: OrderedDict[bytes, Record] = OrderedDict()
        self.heard: OrderedDict[bytes, int] = OrderedDict()  # id -> hops (last heard)
        self.direct: OrderedDict[bytes, None] = OrderedDict()  # ids whose ANNOUNCE we heard

    def public_of(self, node_id: bytes) -> bytes | None:
        rec = self.records.get(bytes(node_id))
        return None if rec is None else rec.public

    def hold(self, rec: Record) -> None:
        self.records[rec.id] = rec
        self.records.move_to_end(rec.id)
        while len(self.records) > self.records_max:
            old, _ = self.records.popitem(last=False)
            self._on_evict(old)

    def note_heard(self, node_id: bytes, hops: int) -> None:
        self.heard[node_id] = hops
        self.heard.move_to_end(node_id)
        while len(self.heard) > self.heard_max:
            self.heard.popitem(last=False)

    def note_direct(self, node_id: bytes) -> None:
        self.direct[node_id] = None
        self.direct.move_to_end(node_id)
        while len(self.direct) > self.heard_max:
            self.direct.popitem(last=False)

    def knows(self, node_id: bytes) -> bool:
        return bytes(node_id) in self.heard

    def hops_of(self, node_id: bytes) -> int:
        return self.heard.get(node_id, 0)

    def forget_record(self, node_id: bytes) -> None:
        self.records.pop(node_id, None)
