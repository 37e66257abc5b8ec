"""Shared pieces of the in-process node tests in tests/firmware: the config a test Node
runs with, its network key, a radio that is never used, and the same set-up as
MicroPython code for the unix-port runs of those tests."""

from __future__ import annotations

from typing import Any

CFG: dict[str, Any] = {
    "role": "node",
    "region": "EU868",
    "frequency_hz": 868_100_000,
    "sf": 7,
    "bandwidth_hz": 125000,
    "coding_rate": 5,
    "network_key": "11" * 32,
    "capacities": {"peers": 8, "bans": 4, "seen": 16, "key_cache": 4, "txqueue": 8},
    "announce_interval_min_s": 30,
    "announce_interval_max_s": 600,
    "score_weights": None,
}
KEY = bytes.fromhex(CFG["network_key"])


class NoRadio:
    """The radio of an in-process node: the tests feed `handle_frame` and pop the queue."""

    speed = 1.0
    name = "t"


def upy_prelude(state_dir: str) -> str:
    """MicroPython code defining what the unix-port cases use: Node, Identity, auth,
    record, fr, msg, packb/unpackb, a radio class R, cfg (= CFG), opts and key."""
    return f"""
from loranode.node import Node
from lorawire.identity import Identity
from lorawire import auth, record, frame as fr, messages as msg
from lorawire.codec import packb, unpackb
class R:
    speed = 1.0
    name = "u"
cfg = {CFG!r}
opts = {{"state_dir": {state_dir!r}, "stdin": False}}
key = bytes.fromhex(cfg["network_key"])
"""
