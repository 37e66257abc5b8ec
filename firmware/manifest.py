# The firmware's frozen modules, in MicroPython's manifest format (docs/DEPLOY.md).
#
# A board build that keeps our code in flash passes this file to the port's build:
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=$PWD/firmware/manifest.py
#
# It includes the port's own board manifest first (on the ESP32: _boot, the filesystem
# set-up, asyncio, ...), then micropython-lib's LoRa drivers and the two packages.
# tools/board includes it in the board-shaped unix build with port_manifest=False (the
# unix port's manifest wants micropython-lib packages a board does not have) and
# sim_radio=True (the simulated radio, which only the unix port can run).
options.defaults(port_manifest=True, sim_radio=False)

if options.port_manifest:
    include("$(PORT_DIR)/boards/manifest.py")

require("lora-sx127x")
require("lora-sx126x")
require("lora-async")

# Never on a board (tools/deploy/romfs.py BOARD_EXCLUDE, checked against this list by
# tests/firmware/test_manifest.py): CPython's fast paths, the gateway's TCP handshake, the
# hosts' message builders and names for shared codes, and the SHA-512 layout of ports
# with 62-bit small ints (a board's are 31-bit).
_CPYTHON_ONLY = (
    "_fastcodec.py",
    "_ed25519_fast.py",
    "handshake.py",
    "compose.py",
    "names.py",
    "_sha512_halves.py",
)
# The simulated radio and the protocol it speaks to the meshsim medium: unix port only.
_UNIX_PORT_ONLY = {"loranode": ("radio_sim.py",), "lorawire": ("simproto.py",)}


def _files(folder, package_name, leave_out=()):
    import os

    if not options.sim_radio:
        leave_out = tuple(leave_out) + _UNIX_PORT_ONLY[package_name]
    return sorted(f for f in os.listdir(folder) if f.endswith(".py") and f not in leave_out)


# opt=3 as the deploy tool compiles .mpy files: no line numbers, no asserts
package(
    "lorawire",
    files=_files("../shared/lorawire", "lorawire", _CPYTHON_ONLY),
    base_path="../shared",
    opt=3,
)
package(
    "loranode",
    files=_files("loranode", "loranode"),
    base_path=".",
    opt=3,
)
