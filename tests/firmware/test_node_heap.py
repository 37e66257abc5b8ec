"""A node with every table full on the board-shaped 32-bit builds: the heap it holds.

One real node (n0) on the meshsim medium, on the plain build (its code from .mpy files,
as stock ESP32 firmware runs it) and on the frozen build (its code in flash). A CPython
station on the medium then fills every table of n0 through the radio:

  * peers: 48 identities announce (each a valid signed record) -> 32/32;
  * bans: 18 of them send link-tagged garbage to n0 until banned -> 16/16;
  * seen ring and transmit queue: up to 160 more identities announce with hop_limit 2,
    which n0 relays once each (SeenRing keyed by origin and record seq) -> 64/64, and
    the relays overrun the queue under the duty cycle -> 16/16 or drops counted;
  * pairwise-key cache: the peers held after that send n0 valid link-tagged TXs (a
    banned peer's key left the cache with it) -> 16/16;
  * reassembly: the first of three fragments of 4 messages from 4 sources -> 4/4.

The node must stay up and answer with every table at capacity under the heap the test
gives it (HEAP_KB per build: the footprint goal, see docs/ARCHITECTURE.md "Memory on a
board"); the test prints the heap the node holds right after gc.collect() after boot and
with every table full, and its lowest free heap over the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from loranode import bans as bn
from loranode.constants import BAN_THRESHOLD
from loranode.radio_sim import SimRadio
from lorawire import auth, record
from lorawire import fragment as fg
from lorawire import frame as fr
from lorawire import messages as msg
from lorawire.identity import Identity
from tools.meshsim.launcher import Mesh, NodeProc
from tools.meshsim.status import VERIFIED
from tools.meshsim.topology import from_dict

FREQ = 868_100_000
# The heap each build runs the scenario in (-X heapsize): room to spare, so that what
# this test checks (every table at capacity, the node up and answering, the heap it
# holds printed) does not hang on the heap goal. The goals (issue 10: plain 108 KB with
# 16 KB left over, frozen 64 KB) are measured by `make bench` (tools/bench/
# bench_footprint.py: the smallest heap the same fill completes in, without the unix
# port's simulated radio and its sockets, which a board does not have); see
# docs/ARCHITECTURE.md "Memory on a board" for the figures.
HEAP_KB = {"plain": 256, "frozen": 96}
PAIR = {"links": [["n0", "zz", {"rssi": -80, "snr": 10}]]}
CAPACITY = {"peers": 32, "bans": 16, "seen": 64, "key_cache": 16, "reassembly": 4}
# Malformed frames that earn a ban: sent together, so one round of status requests per
# ban (one frame per round took 72 rounds and more than the test's 300 s under load).
BAN_BURST = -(-BAN_THRESHOLD // bn.POINT_VALUES[auth.MALFORMED])


class Station:
    """Many identities transmitting through one CPython SimRadio named "zz"."""

    def __init__(self, port: int, network_key: bytes, node_public: bytes) -> None:
        self.key = network_key
        self.node_public = node_public
        self.radio = SimRadio(b"zz" * 4, "zz", "127.0.0.1", port)
        self.radio.configure(FREQ, 7, 125000, 5, 14)
        self.seq = 100

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def announce(self, ident: Identity, hop_limit: int = 0) -> None:
        rec = record.encode_record(
            {"seq": 1, "kind": record.KIND_MESH, "services": 0, "mesh": (0, 7)}, ident
        )
        f = fr.Frame(msg.ANNOUNCE, ident.id, self._next(), hop_limit=hop_limit)
        self.radio.send(auth.seal_frame(f, rec, self.key))

    def unicast(self, ident: Identity, node_id: bytes, body: bytes) -> None:
        """A TX under the pairwise link key of `ident` and the node."""
        lk = auth.link_key(ident.x_secret(), ident.id, self.node_public)
        f = fr.Frame(msg.TX, ident.id, self._next(), node_id, fr.FLAG_LINK, hop_limit=0)
        self.radio.send(fr.encode(f, body, lambda region: auth.tag(lk, region)))

    def earn_ban(self, ident: Identity, node_id: bytes) -> None:
        """BAN_BURST link-tagged TX frames whose body is not msgpack: provably ident's."""
        for _ in range(BAN_BURST):
            self.unicast(ident, node_id, b"\xc1")

    def first_fragment(self, ident: Identity, msg_id: int) -> None:
        payload = msg.fragment_payload(msg.TX, msg.encode_body(msg.TX, {0: bytes(500)}))
        parts = fg.split(payload, msg_id, fr.MAX_LORA_FRAME - fr.OVERHEAD_BROADCAST)
        assert len(parts) >= 2
        f = fr.Frame(msg.FRAGMENT, ident.id, self._next(), hop_limit=0)
        self.radio.send(auth.seal_frame(f, parts[0], self.key))

    def close(self) -> None:
        self.radio.close()


def _until(
    node: NodeProc,
    pred: Any,
    action: Any = None,
    timeout: float = 60.0,
    commands: tuple[str, ...] = ("status",),
) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        if action is not None:
            action()
        s = node.ask(*commands)
        if pred(s) or time.monotonic() > deadline:
            return s
        time.sleep(0.3)


def _verified(status: dict) -> set[str]:
    """The peers of which the node holds a verified record (loranode.peers.VERIFIED)."""
    return {p[0] for p in status["peers"] if p[2] & VERIFIED}


def _banned(status: dict, aid: str) -> bool:
    return any(b[0] == aid for b in status["bans"])


@pytest.mark.upy("plain", "frozen")
@pytest.mark.slow
# 48 signature checks and 18 new link keys (X25519) on the 64 KB board-shaped build: on
# a loaded machine several minutes of CPU, past the suite's 300 s; each step has its own
# deadline, this one only stops a hang.
@pytest.mark.timeout(900)
def test_node_with_every_table_full(tmp_path: Path, upy_interpreter: Any) -> None:
    heap = HEAP_KB[upy_interpreter.name] * 1024
    idents = [Identity.generate() for _ in range(48 + 160 + 4)]
    direct, relayed, fragmenters = idents[:48], idents[48:208], idents[208:]
    mesh = Mesh(1, from_dict(PAIR), tmp_path / "mesh", speed=10.0, heap=str(heap))
    with mesh:
        n0 = mesh.nodes[0]
        node_id = bytes.fromhex(n0.node_id or "")
        public = Identity((n0.dir / "key.bin").read_bytes()).public
        st = Station(mesh.port, bytes.fromhex(mesh.network_key), public)
        booted = n0.ask("gc", "status")["heap"]["gc_alloc"]  # before any traffic
        try:
            heard: set[str] = set()

            def announce_unheard() -> None:
                # Each round again for those not held yet: a node busy verifying records
                # (64 KB heap, a loaded machine) loses announces that arrive meanwhile.
                for ident in direct:
                    if ident.id.hex() not in heard:
                        st.announce(ident)
                        time.sleep(0.05)

            def full(s: dict) -> bool:
                heard.update(p[0] for p in s["peers"])
                return s["tables"]["peers"][0] == CAPACITY["peers"]

            s = _until(n0, full, announce_unheard, timeout=120)
            held = [i for i in direct if i.id.hex() in {p[0] for p in s["peers"]}]
            assert len(held) >= CAPACITY["bans"] + 2, s["tables"]
            # two more than fit, so one ban evicts another; a peer whose garbage keeps
            # getting lost to n0's own transmissions (half-duplex) is replaced by the next.
            # Only peers n0 holds a verified record of can earn one (their link key comes
            # from it): announces still queued when the table filled may have evicted
            # some of `held` since, and their garbage is only counted (drop_no_key).
            banned = 0
            for ident in direct:
                if banned == CAPACITY["bans"] + 2:
                    break
                aid = ident.id.hex()
                if aid not in _verified(s):
                    continue
                s = _until(
                    n0,
                    lambda s, aid=aid: _banned(s, aid) or aid not in _verified(s),  # or evicted
                    lambda ident=ident: st.earn_ban(ident, node_id),
                    timeout=30,
                )
                banned += _banned(s, aid)
            assert banned == CAPACITY["bans"] + 2, s["bans"]
            # a relay's own transmission can collide with the next announce: keep
            # sending fresh identities until the ring is full (bounded)
            for k, ident in enumerate(relayed):
                st.announce(ident, hop_limit=2)
                time.sleep(0.05)
                if k % 10 == 9 and n0.ask("status")["tables"]["seen"][0] == CAPACITY["seen"]:
                    break
            # a banned peer's link key leaves the cache: fill it with valid unicasts
            # from peers held now
            by_id = {i.id.hex(): i for i in idents}
            held_now = [by_id[p[0]] for p in n0.ask("status")["peers"] if p[0] in by_id]
            tx = msg.encode_body(msg.TX, {0: b"\x01" * 16})
            assert len(held_now) > CAPACITY["key_cache"]
            _until(n0, lambda s: s["queue"]["len"] == 0)  # relays out: n0 listens again
            for _ in range(5):  # a unicast can still be lost to n0 transmitting
                for ident in held_now:
                    st.unicast(ident, node_id, tx)
                    time.sleep(0.1)
                s = n0.ask("status")
                if s["tables"]["key_cache"][0] == CAPACITY["key_cache"]:
                    break

            def fragments() -> None:  # again each round: n0 may be transmitting relays
                for k, ident in enumerate(fragmenters):
                    st.first_fragment(ident, 7 + k)

            # partial messages expire after 30 s of medium time (3 s here): the heap is
            # sampled (`gc`) in the same round that sees every slot taken
            s = _until(
                n0,
                lambda s: s["tables"]["reassembly"][0] == CAPACITY["reassembly"],
                fragments,
                commands=("gc", "status"),
            )
        finally:
            st.close()
        tables, heap_now = s["tables"], s["heap"]
        for name, size in tables.items():
            assert size is None or size[0] <= size[1], (name, size)
        for name, cap in CAPACITY.items():
            assert tables[name] == [cap, cap], (name, tables[name], s["counters"])
        q = s["queue"]
        assert tables["txqueue"][0] == tables["txqueue"][1] or sum(q["dropped"]) > 0, q
        assert n0.running and not any("Error" in line for line in n0.lines), n0.lines
        print(
            f"{upy_interpreter.name}: heap {heap} B; tables {tables}; "
            f"held after gc.collect: {booted} B after boot, "
            f"{heap_now['gc_alloc']} B with every table full; "
            f"lowest free {heap_now['min_free']} B"
        )
