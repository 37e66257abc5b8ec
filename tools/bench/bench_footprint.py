"""Firmware heap on the board-shaped 32-bit builds (`make board`): what a node holds.

For each build (plain: our code from .mpy files, as stock ESP32 firmware runs it;
frozen: our code in flash) and role, tools/bench/footprint_probe.py runs one node in one
interpreter and feeds it, from a file, the frames that fill every table (48 signed
announces -> 32 peers; link-tagged garbage from 18 of them -> 16 bans; 160 relayed
announces -> 64 seen entries and a full transmit queue; link-tagged TXs -> 16 pairwise
keys; first fragments of 4 messages -> 4 reassembly slots; then one more announce to
verify). It prints what the heap holds after gc.collect() (code imported, node up, every
table full) and the smallest `-X heapsize` under which the whole fill completes, found
by bisection in 1 KB steps: the peak including fragmentation and the transient heap of
an Ed25519 verification. The goals (issue 10, docs/ARCHITECTURE.md "Memory on a
board"): plain under 108 KB with 16 KB left over (so it must complete in 92 KB); frozen
in 64 KB, 48 KB wanted.

The unix port's simulated radio is not what a board runs: the node rows import
loranode.start and loranode.status (every board boots through them) and, on the plain
build, the LoRa driver of each chip from .mpy (lora-sx127x for the Heltec V2, the TTGO
LoRa32 and the T-Beam with an SX1276; lora-sx126x for the Heltec V3 and the T-Beam
SX1262), with our adapter loranode.radio_lora, as `mpremote mip install` puts them on a
board.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from lorawire import auth, compose, record
from lorawire import fragment as fg
from lorawire import frame as fr
from lorawire import messages as msg
from lorawire.identity import Identity
from tools.board import interpreters, mpytree
from tools.deploy import fwconfig

PROBE = Path(__file__).with_name("footprint_probe.py")
NETWORK_KEY = "5a" * 32
GOALS = {"plain": 92, "frozen": 64}  # KB of heap the fill must complete in
BOOT = ("loranode.start", "loranode.status")
DRIVERS = {  # chip -> what a board with that chip imports for its radio
    "sx1276": ("lora", "lora.sx127x", "lora.async_modem", "loranode.radio_lora"),
    "sx1262": ("lora", "lora.sx126x", "lora.async_modem", "loranode.radio_lora"),
}
PRESETS = {
    "heltec-v2": "sx1276",
    "ttgo-lora32": "sx1276",
    "tbeam-sx1276": "sx1276",
    "heltec-v3": "sx1262",
    "tbeam-sx1262": "sx1262",
}


def board_config(role: str) -> dict:
    raw = {
        "board": "heltec-v3",
        "region": "EU868",
        "role": role,
        "network_key": NETWORK_KEY,
        "node": {},
    }
    if role == "bridge":
        raw["bridge"] = {}
    return fwconfig.board_config(fwconfig.validate(raw))


def fill_frames(network_key: bytes, node: Identity) -> list[str]:
    """"phase hex" lines that fill every table of `node` (see the module docstring)."""
    seq = [100]

    def next_seq() -> int:
        seq[0] += 1
        return seq[0]

    ids = [Identity(bytes([7, k >> 8, k & 255]) + bytes(29)) for k in range(212)]
    direct, relayed, fragmenting = ids[:48], ids[48:208], ids[208:]
    lines: list[str] = []

    def announce(i: Identity, hop_limit: int = 0) -> bytes:
        fields = {"seq": 1, "kind": record.KIND_MESH, "services": 0, "mesh": (0, 7)}
        rec = record.encode_record(fields, i)
        f = fr.Frame(msg.ANNOUNCE, i.id, next_seq(), hop_limit=hop_limit)
        return auth.seal_frame(f, rec, network_key)

    def unicast(i: Identity, body: bytes) -> bytes:
        key = auth.link_key(i.x_secret(), i.id, node.public)
        f = fr.Frame(msg.TX, i.id, next_seq(), node.id, fr.FLAG_LINK, hop_limit=0)
        return auth.seal_frame(f, body, link_key=key)

    lines += ["direct " + announce(i).hex() for i in direct]
    lines += ["garbage " + unicast(i, b"\xc1").hex() for i in direct[16:] for _ in range(6)]
    lines += ["relayed " + announce(i, 2).hex() for i in relayed]
    tx = compose.encode_tx(b"\x01" * 16)
    lines += ["tx " + unicast(i, tx).hex() for i in direct + relayed]
    big = msg.fragment_payload(msg.TX, compose.encode_tx(bytes(500)))
    for k, i in enumerate(fragmenting):
        first = fg.split(big, 7 + k, fr.MAX_LORA_FRAME - fr.OVERHEAD_BROADCAST)[0]
        f = fr.Frame(msg.FRAGMENT, i.id, next_seq(), hop_limit=0)
        lines.append("frag " + auth.seal_frame(f, first, network_key).hex())
    lines.append("late " + announce(Identity(bytes([9]) + bytes(31))).hex())
    return lines


def _write_inputs(folder: Path, role: str) -> None:
    (folder / "config.json").write_text(json.dumps(board_config(role)))
    frames = fill_frames(bytes.fromhex(NETWORK_KEY), Identity(bytes(range(32))))
    (folder / "frames.txt").write_text("\n".join(frames) + "\n")


def probe(build: str, folder: Path, role: str, modules: tuple[str, ...], heap_kb: int):
    """(import, boot, full, tables) in bytes, or None when the fill fails in heap_kb."""
    interp = interpreters.get(build)
    path = interpreters.module_path(interp)
    env = dict(os.environ, MICROPYPATH=path)
    argv = [str(interp.path), "-X", f"heapsize={heap_kb}K", str(PROBE), str(folder), role]
    r = subprocess.run([*argv, *modules], capture_output=True, text=True, env=env, timeout=300)
    for line in r.stdout.splitlines():
        if line.startswith("PROBE "):
            v = [int(x) for x in line.split()[1:]]
            return v[0], v[1], v[2], v[3:]
    return None


def min_heap_kb(build: str, folder: Path, role: str, modules: tuple[str, ...]) -> int | None:
    lo, hi = 16, 512
    if probe(build, folder, role, modules, hi) is None:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(build, folder, role, modules, mid) is not None:
            hi = mid
        else:
            lo = mid
    return hi


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


def _row(build: str, folder: Path, role: str, what: str, modules: tuple[str, ...]) -> None:
    figures = probe(build, folder, role, modules, 512)
    if figures is None:
        print(f"footprint {build} {role} {what}: does not run in 512 KB")
        return
    imported, boot, full, tables = figures
    need = min_heap_kb(build, folder, role, modules)
    goal = GOALS[build]
    verdict = "meets" if need is not None and need <= goal else "misses"
    print(
        f"footprint {build} {role} {what}: code {_kb(imported)}, up {_kb(boot)}, "
        f"every table full {_kb(full)} (peers/bans/seen/keys/reassembly "
        f"{'/'.join(map(str, tables))}); completes in {need} KB "
        f"({verdict} the {goal} KB goal)"
    )


def main() -> None:
    missing = [b for b in interpreters.BOARD_NAMES if interpreters.missing(b)]
    if missing:
        print(f"footprint: skipped: {interpreters.missing(missing[0])}")
        return
    mpytree.ensure()
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        for role in ("node", "bridge"):
            folder = Path(tmp) / role
            folder.mkdir()
            _write_inputs(folder, role)
            _row("frozen", folder, role, "(no driver)", BOOT)
            _row("plain", folder, role, "(no driver)", BOOT)
            if mpytree.lora_source() is None:
                continue
            for chip, driver in DRIVERS.items():
                boards = ", ".join(b for b, c in PRESETS.items() if c == chip)
                _row("plain", folder, role, f"+ {chip} driver ({boards})", BOOT + driver)
