"""What a gateway can judge of a relayed object without the blockchain, and the hook
the blockchain node plugs in.

`DefaultValidator(settings, node)` is the relay's validator (`relay.Validator`). An
object larger than its kind's limit (`[relay] max_tx_bytes`, `max_block_bytes`) is
invalid: False, so the sender earns invalid_sync_data points and the object is neither
stored nor relayed. Anything else goes to `node`, the validator of the blockchain node
the gateway serves (`PeerManager(..., validator=...)`); with none plugged in the answer
is None ("cannot tell", relayed), so a gateway without the chain still refuses what no
valid object can be, and relays at most `max_tx_bytes` per transaction it cannot judge.
"""

from __future__ import annotations

import logging

from loragate.config import RelaySettings
from loragate.relay import Validator

log = logging.getLogger(__name__)


class DefaultValidator:
    """Size limits per object kind, then the blockchain node's validator if any."""

    def __init__(
        self, settings: RelaySettings | None = None, node: Validator | None = None
    ) -> None:
        s = settings or RelaySettings()
        self.max_bytes = {"tx": s.max_tx_bytes, "block": s.max_block_bytes}
        self.node = node
        self.oversize = 0

    def __call__(self, kind: str, payload: bytes) -> bool | None:
        limit = self.max_bytes.get(kind)
        if limit is None or len(payload) > limit:
            self.oversize += 1
            log.debug("refused a %s of %d bytes (limit %s)", kind, len(payload), limit)
            return False
        return None if self.node is None else self.node(kind, payload)
