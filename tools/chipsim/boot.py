# ruff: noqa: UP031
# mypy: ignore-errors
"""Unix port: boot a board whose radio is an emulated chip, then run the firmware.

    micropython -X heapsize=H tools/chipsim/boot.py BOARD_JSON MAIN_PY [args...]

(MICROPYPATH must hold the directory `tools/`, so `chipsim` imports.) BOARD_JSON says
what is soldered on the board:

    {"chip": "sx1276" | "sx1262",
     "pins": {"nss": 18, "sck": 5, "mosi": 27, "miso": 19, "nreset": 14,
              "dio0": 26, "dio1": 35},          (sx1262: "busy" and "dio1")
     "tcxo_mv": 1800 | null,                     (sx1262: the TCXO on DIO3, if any)
     "medium": ["127.0.0.1", 47000] | null,      (null: no antenna)
     "name": "n0"}                               (the topology's name for this board)

The shim builds the chip and its antenna, wires them as chipsim.machine's board,
installs chipsim.machine as `machine` (the unix port's own has no Pin or SPI), queues
the task that hands the chip what the medium sends while the firmware waits (the IRQ
lines must rise when a frame arrives, not when the driver next looks), and runs MAIN_PY
as a board runs main.py: compiled from source, with sys.argv shifted to its own
arguments. It prints `CHIPSIM <chip> <name>` first and, when MAIN_PY returns or raises,
`CHIPSIM-END <json>`: the chip's counters, the board's IRQ counts and every fault the
chip raised (chipsim.faults.LOG), so a test can assert there was none.

Imported instead of run (tests), `build(desc)` and `pump(chip)` do the same pieces.
"""

import json
import sys

import chipsim.machine as stand_in
from chipsim import faults


def _node_id(name):
    import hashlib

    return hashlib.sha256(name.encode()).digest()[:8]


def build(desc):
    air = None
    medium = desc.get("medium")
    if medium:
        from chipsim.air import Air

        air = Air(medium[0], medium[1], desc["name"], _node_id(desc["name"]))
    if desc["chip"] == "sx1276":
        from chipsim.sx1276 import SX1276

        chip = SX1276(air)
    elif desc["chip"] == "sx1262":
        from chipsim.sx1262 import SX1262

        chip = SX1262(air, desc.get("tcxo_mv"))
    else:
        raise ValueError("chip %r is not emulated (sx1276, sx1262)" % desc["chip"])
    board = stand_in.Board(chip, desc["pins"])
    stand_in.wire(board)
    sys.modules["machine"] = stand_in
    return chip, board


async def pump(chip):
    """Deliver the medium's datagrams and the chip's timeouts while nothing else runs."""
    import asyncio
    from asyncio import core

    sock = chip.air.sock

    def readable():
        yield core._io_queue.queue_read(sock)

    while chip.air.sock is not None:
        wait = chip.next_event_ms()
        if wait is None:
            await readable()
        else:
            try:
                await asyncio.wait_for_ms(readable(), max(1, wait))
            except asyncio.TimeoutError:
                pass
        try:
            chip.service()
        except faults.ChipFault as e:
            print("chipsim:", e)


def report(chip, board):
    return {
        "chip": chip.NAME,
        "counters": chip.counters(),
        "irqs": board.irqs,
        "irq_lost": board.irq_lost,
        "faults": list(faults.LOG),
    }


def main():
    with open(sys.argv[1]) as f:
        desc = json.loads(f.read())
    chip, board = build(desc)
    if chip.air is not None:
        import asyncio

        asyncio.create_task(pump(chip))  # runs once the firmware starts its event loop
    main_py = sys.argv[2]
    sys.argv[:] = [main_py] + sys.argv[3:]
    print("CHIPSIM %s %s" % (chip.NAME, desc.get("name")))
    with open(main_py) as f:
        code = compile(f.read(), main_py, "exec")
    try:
        exec(code, {"__name__": "__main__"})
    finally:
        print("CHIPSIM-END " + json.dumps(report(chip, board)))
        if chip.air is not None:
            chip.air.close()


if __name__ == "__main__":
    main()
