"""The board-shaped MicroPython: a 32-bit unix port built from the vendored 1.28 source.

    python -m tools.board build          (what `make board` runs)
    python -m tools.board path plain     the interpreter's path, once built

Two interpreters from one variant (tools/board/variant, its header says which ESP32
settings it copies), both built into build/board/:

  plain   `lorachain-plain`: nothing of ours frozen, the firmware runs from .mpy or .py
          files as on stock ESP32 firmware;
  frozen  `lorachain-frozen`: lorawire, loranode and micropython-lib's lora drivers
          frozen through firmware/manifest.py, as in a custom board build.

The source is `../shared/vendor/micropython-1.28.0-unix-src.tar.gz` beside the checkout
(checked against its sha256), or a MicroPython checkout named by MICROPY_SRC. The build
needs a compiler that makes 32-bit programs (Debian: gcc-multilib). What the tests need
is in `tools.board.interpreters`.
"""
