"""The whole Lorachain network on one machine, shown live (`make run`).

network.py starts the processes, liveview.py shows them, badpeer.py and badnode.py
misbehave on purpose, peer.py is an internet peer that makes transactions and
upy_app.py the demo application of the MicroPython mesh nodes.
"""
