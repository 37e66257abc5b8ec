"""meshsim: a simulated LoRa medium on loopback UDP (see medium.py for the protocol)."""

from .medium import Medium, parse_stats, serve
from .topology import Link, Model, Topology, from_dict, grid, line, load, random

__all__ = [
    "Link",
    "Medium",
    "Model",
    "Topology",
    "from_dict",
    "grid",
    "line",
    "load",
    "parse_stats",
    "random",
    "serve",
]
