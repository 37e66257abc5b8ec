"""Application hook API: how the blockchain node plugs into the peer manager.

The application subclasses `App` (or passes any object with the same methods) and
hands it to `Node(..., app=...)`. The node calls

    app.attach(port)                          once, before the main loop starts
    app.on_message(peer_id, msg_type, fields) for every accepted INV, GETDATA, TX,
                                              BLOCK and REJECT addressed to us or
                                              broadcast (fields: the decoded body map)
    app.tick(now_ms)                          from the timer task (about 10 times a
                                              second, node clock), optional

and the application talks back through the `Port` it was given:

    port.send(dest_or_None, msg_type, fields, priority=GOSSIP) -> bool
        Queue a message: None broadcasts (network tag, relayed up to the hop limit);
        a peer id sends a unicast (link tag to a direct neighbour whose key we hold,
        else the network tag, relayed along known hop counts) that the receiver
        acknowledges with ACK -- acks and timeouts feed the reliability score.
        False when the body is invalid or the queue refused it.
    port.send_upstream(msg_type, fields, priority=GOSSIP) -> bool
        Queue a message bound for the internet: a unicast (as `send`, acknowledged) to
        `best_gateway()`, so it reaches one gateway instead of flooding the mesh; with no
        gateway known, a broadcast that any gateway in range picks up. Counted in
        `upstream_tx`, the broadcasts also in `upstream_no_gateway`. False as for `send`.
    port.report_invalid(peer_id, reason="") -> bool
        The message last delivered from peer_id was invalid (bad tx, bad block...).
        Misbehaviour points (INVALID_SYNC) are charged only when that message was
        attributed (a valid link tag proves its source); True if points were charged.
    port.best_gateway() -> peer id or None
        The preferred gateway (kind gateway, fewest hops, best score): the way
        toward the internet.
    port.peers() -> list of (peer id, kind, hops, score)

Priorities: CONTROL (0) > BLOCKS (1) > GOSSIP (2), as in loranode.txqueue.
"""

from loranode.txqueue import BLOCKS, CONTROL, GOSSIP

APP_TYPES = (0x10, 0x11, 0x12, 0x13, 0x14)  # INV, GETDATA, TX, BLOCK, REJECT

__all__ = ("App", "Port", "APP_TYPES", "CONTROL", "BLOCKS", "GOSSIP")


class App:
    """Base application: does nothing. Override what you need."""

    port = None

    def attach(self, port):
        self.port = port

    def on_message(self, peer_id, msg_type, fields):
        pass

    def tick(self, now_ms):
        pass


class Port:
    """The node's side of the hook API (see the module docstring)."""

    def __init__(self, node):
        self._node = node

    def send(self, dest, msg_type, fields, priority=GOSSIP):
        return self._node.app_send(dest, msg_type, fields, priority)

    def send_upstream(self, msg_type, fields, priority=GOSSIP):
        return self._node.app_upstream(msg_type, fields, priority)

    def report_invalid(self, peer_id, reason=""):
        return self._node.report_invalid(peer_id, reason)

    def best_gateway(self):
        return self._node.best_gateway()

    def peers(self):
        return self._node.peer_list()


class RecordingApp(App):
    """Keeps the last `capacity` messages (tests, status): (peer_id, msg_type, fields)."""

    def __init__(self, capacity=8):
        self.capacity = capacity
        self.messages = []
        self.received = 0

    def on_message(self, peer_id, msg_type, fields):
        self.received += 1
        if len(self.messages) >= self.capacity:
            self.messages.pop(0)
        self.messages.append((peer_id, msg_type, fields))
