# mypy: ignore-errors
"""Emulated LoRa radio chips for the unix port: a board without the hardware.

MicroPython code that runs inside a unix-port node process (and on CPython, for the
host-side tests of the models). It stands in for the parts of a LoRa board that the
firmware cannot bring with it:

  sx1276   the SX1276 register model (Semtech SX1276/77/78/79 datasheet rev 7);
  sx1262   the SX1262 command model with its BUSY line (SX1261/2 datasheet rev 2.1);
  toa      time on air from a chip's own modulation settings (both datasheets);
  air      the link to tools/meshsim's medium (the UDP protocol of medium.py);
  machine  a `machine` module (Pin, SPI, SoftSPI) wired to an emulated chip the way a
           board preset (firmware/loranode/boards.py) says the board is wired;
  boot     the boot shim: `micropython tools/chipsim/boot.py BOARD.json MAIN [args]`
           installs the stand-in as `machine`, powers the chip, then runs MAIN.

A chip raises `faults.ChipFault` on any access the real chip would not accept (a
register outside the map, a write it would ignore in that mode, a command while BUSY,
an unknown opcode, ...) and `faults.NotModelled` for a feature the drivers do not use;
both are also recorded in `faults.LOG`, so a test can assert that nothing was raised,
even where a driver swallowed the exception. Nothing here is ever deployed to a board.
"""
