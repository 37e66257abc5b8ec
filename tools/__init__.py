"""Developer tools: simulator, deploy, decoder, benchmarks, demo. They run from a checkout.

The firmware package (firmware/loranode) is not installed on the host; the tools that
read its tables and constants (the simulator's status view, the deploy tool) import it
from the checkout, so its directory goes on sys.path here, once for every tool.
"""

import sys
from pathlib import Path

_FIRMWARE = str(Path(__file__).resolve().parents[1] / "firmware")
if _FIRMWARE not in sys.path:
    sys.path.append(_FIRMWARE)
