"""Where the board-shaped build lives: the checkout, build/board, the vendored source."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "board"
VENDOR = ROOT.parent / "shared" / "vendor"
TARBALL = VENDOR / "micropython-1.28.0-unix-src.tar.gz"
TARBALL_SHA256 = "11f9dd18e98e2bd6def297703a3459a9b6a328d749fdc0434b2b8948e52d6877"
