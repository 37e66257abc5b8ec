"""What the gateway's parts share about the gateway itself: identity, listen address,
own signed record.

The record (kind gateway, endpoint = the bound listen address, a sequence number one
higher at every start) exists only once the listener is bound (`PeerManager.start`);
until then `record` is None and no session can start.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from lorawire import record as wrecord
from lorawire.identity import Identity
from lorawire.record import Record

Addr = tuple[str, int]

OWN_SERVICES = wrecord.SVC_RELAY | wrecord.SVC_PEX | wrecord.SVC_BRIDGE


def is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return True


@dataclass
class OwnNode:
    identity: Identity
    listen_addr: Addr
    record: Record | None = None

    def make_record(self, seq: int) -> Record:
        """Sign our record for sequence `seq` (endpoint: the listen address, when it is
        a concrete one) and keep it."""
        fields: dict[str, Any] = {
            "kind": wrecord.KIND_GATEWAY,
            "services": OWN_SERVICES,
            "seq": seq,
        }
        host, port = self.listen_addr
        if not is_unspecified(host):
            fields["endpoints"] = [(ipaddress.ip_address(host).packed, port)]
        self.record = wrecord.decode_record(wrecord.encode_record(fields, self.identity))
        return self.record
