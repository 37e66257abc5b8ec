# ruff: noqa: ANN001, ANN201, ANN202, ANN204, UP031
# mypy: ignore-errors
"""A mesh node with a tiny demo application (MicroPython unix port; also runs on CPython).

    micropython tools/demo/upy_app.py config.json

It is firmware/main.py (loranode.start.run) with its own node class and an `App`
(loranode.app hook API) that behaves like a wallet
on a light node:
  * stdin `tx <hex>` broadcasts a TX with those raw bytes (hop limit of the node) and
    prints `TXNEW <sha256 hex> queued|refused`; `up <hex>` sends it toward the internet
    instead (port.send_upstream: to the best gateway, a broadcast without one) and
    prints `TXUP <sha256 hex> <gateway id hex or "none"> queued|refused`; `status` and
    `quit` work as in the firmware;
  * an INV naming a transaction it lacks is answered with a GETDATA to the sender (the
    gateway offers internet objects by INV only, DESIGN: never push onto LoRa);
  * every new TX prints `OBJ tx <sha256 hex> <source id hex>`.
Hashes it has seen are kept in a fixed ring of SEEN_MAX entries.
"""

import sys
from binascii import hexlify, unhexlify
from hashlib import sha256

from loranode.app import App
from loranode.node import Node
from loranode.txqueue import CONTROL, GOSSIP

INV = 0x10
GETDATA = 0x11
TX = 0x12
KIND_TX = 0
SEEN_MAX = 32
WANT_MAX = 4


def _h(b):
    return hexlify(b).decode()


class DemoApp(App):
    def __init__(self):
        self.seen = [None] * SEEN_MAX
        self.pos = 0

    def know(self, h):
        return h in self.seen

    def remember(self, h):
        self.seen[self.pos] = h
        self.pos = (self.pos + 1) % SEEN_MAX

    def on_message(self, peer_id, msg_type, fields):
        try:
            if msg_type == INV:
                want = []
                for item in fields[0]:
                    if item[0] == KIND_TX and not self.know(bytes(item[1])):
                        want.append([KIND_TX, bytes(item[1])])
                if want:
                    self.port.send(peer_id, GETDATA, {0: want[:WANT_MAX]}, CONTROL)
            elif msg_type == TX:
                raw = bytes(fields[0])
                h = sha256(raw).digest()
                if not self.know(h):
                    self.remember(h)
                    print("OBJ tx %s %s" % (_h(h), _h(peer_id)))
        except (KeyError, IndexError, TypeError, ValueError):
            pass

    def create(self, raw, upstream=False):
        h = sha256(raw).digest()
        self.remember(h)
        if not upstream:
            ok = self.port.send(None, TX, {0: raw}, GOSSIP)
            print("TXNEW %s %s" % (_h(h), "queued" if ok else "refused"))
            return
        gw = self.port.best_gateway()
        ok = self.port.send_upstream(TX, {0: raw}, GOSSIP)
        print("TXUP %s %s %s" % (_h(h), _h(gw) if gw else "none", "queued" if ok else "refused"))


class DemoNode(Node):
    def command(self, cmd):
        """The node's stdin commands plus `tx <hex>` / `up <hex>`: a transaction made here,
        broadcast / sent toward the internet."""
        up = cmd.startswith("up ")
        if not up and not cmd.startswith("tx "):
            Node.command(self, cmd)
            return
        try:
            raw = unhexlify(cmd[3:].strip())
        except ValueError:
            raw = b""
        if raw:
            self.app.create(raw, up)


def main():
    from loranode import start

    start.run(sys.argv[1] if len(sys.argv) > 1 else "config.json", DemoNode, DemoApp())


main()
