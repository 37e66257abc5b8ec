"""Frame decoder CLI: `python -m tools.decode` (see tools.decode.__main__ and .dump)."""
