"""dessim: a discrete-event simulator of the mesh that runs the unmodified firmware.

Many `loranode` nodes (and the `lorawire` codec) in one CPython process, on the same
simulated air as tools/meshsim (tools/meshsim/air.py: airtime, collisions with the 6 dB
capture rule, half-duplex, per-link loss, RSSI/SNR from the topology), on a virtual
clock: a simulated hour of a 1,000-node mesh takes minutes, and the same seed gives the
same run. The multi-process meshsim (real unix-port interpreters) stays the fidelity
check (tests/tools/test_dessim_fidelity.py).

* events.py    the event queue (virtual time)
* host.py      one firmware node on the air: the node's entry points driven by events
* hostside.py  seeded entropy and a shared signature-verification cache
* world.py     FirmwareMesh: a whole mesh of firmware nodes
* scenario.py  topologies (grid, random geometric) and gateway placement
* reference.py naive flooding and Meshtastic's managed flooding on the same air
* bound.py     the lower bound: greedy connected dominating set x airtime
"""
