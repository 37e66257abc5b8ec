from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from upy import run_upy  # noqa: E402

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
settings.load_profile("ci")


@pytest.fixture
def upy():  # noqa: ANN201 - a callable fixture
    """Run code under the MicroPython unix port: `upy(code, heap="64K")`."""
    return run_upy
