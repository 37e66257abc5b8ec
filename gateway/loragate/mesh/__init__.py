"""The gateway's wing on the LoRa mesh, through a bridge board (docs/BRIDGE.md).

It depends on the peer manager only through `host.MeshHost` (what it needs: the ban
list, scores, the relay, the store, telemetry, the entry for verified announcements and
for proven misbehaviour) and registers listeners on the relay, the link and the event
bus; the process module (`loragate.runner`) builds and wires it. Modules, bottom up:

* `serial`: the UART port (pyserial open, the event loop watches the descriptor);
* `link`: the link-protocol session with the bridge board (HELLO, FRAME_UP/DOWN,
  handles, budget, bans pushed to the board);
* `shaper`: the bounded, duty-cycle-aware queue of frames going down;
* `tuning`, `counters`: the wing's bounds and timings, its drop counters;
* `peers`: the mesh nodes heard and their verified records;
* `frames`: sealing, sequence numbers, fragmentation of what we send;
* `announce`: our own record as ANNOUNCE;
* `relay`, `offers`: the relay between mesh and internet, offers to the mesh by INV;
* `bans`: bans pushed to the bridge;
* `receive`: the receive pipeline and the one mapping from proven faults to
  misbehaviour;
* `side`: `MeshSide`, which builds the parts above and hooks them in.

The package itself imports nothing, so importing one module loads only what it needs.
"""
