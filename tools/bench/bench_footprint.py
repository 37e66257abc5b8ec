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
import shutil
import subprocess
import tempfile
from pathlib import Path

from lorawire import auth, compose, record
from lorawire import fragment as fg
from lorawire import frame as fr
from lorawire import messages as msg
from lorawire.identity import Identity
from tools.board import interpreters, mpytree
from tools.board.paths import ROOT
from tools.deploy import boards, fwconfig

PROBE = Path(__file__).with_name("footprint_probe.py")
NETWORK_KEY = "5a" * 32
GOALS = {"plain": 92, "frozen": 64}  # KB of heap the fill must complete in
FULL = [32, 16, 64, 16, 4]  # peers, bans, seen, pairwise keys, reassembly: the capacities
BOOT = ("loranode.start", "loranode.status")
DRIVER_MODULES = {  # chip -> what a board with that chip imports for its radio
    "sx1276": ("lora", "lora.sx127x", "lora.async_modem", "loranode.radio_lora"),
    "sx1262": ("lora", "lora.sx126x", "lora.async_modem", "loranode.radio_lora"),
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
    """ "phase hex" lines that fill every table of `node` (see the module docstring)."""
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


def probe(
    build: str, folder: Path, role: str, modules: tuple[str, ...], heap_kb: int
) -> tuple[int, int, int, list[int]] | None:
    """(import, boot, full, tables) in bytes, or None when the fill fails in heap_kb.

    With a driver, `folder`/lib holds just its packages (as `mpremote mip install`
    leaves a board) and tools/chipsim's `machine` stand-in comes with it."""
    interp = interpreters.get(build)
    extra = [folder / "lib", ROOT / "tools"] if "lora" in modules else []
    path = interpreters.module_path(interp, *extra)
    env = dict(os.environ, MICROPYPATH=path)
    argv = [str(interp.path), "-X", f"heapsize={heap_kb}K", str(PROBE), str(folder), role]
    r = subprocess.run([*argv, *modules], capture_output=True, text=True, env=env, timeout=300)
    for line in r.stdout.splitlines():
        if line.startswith("PROBE "):
            v = [int(x) for x in line.split()[1:]]
            return v[0], v[1], v[2], v[3:]
    return None


def min_heap_kb(
    build: str, folder: Path, role: str, modules: tuple[str, ...], held: int
) -> int | None:
    """The smallest heap (KB) the fill completes in; it cannot be below what it holds."""
    lo = held // 1024
    hi = lo + 32
    while probe(build, folder, role, modules, hi) is None:
        lo, hi = hi, hi + 64
        if hi > 512:
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


def _row(
    build: str, folder: Path, role: str, what: str, modules: tuple[str, ...], search: bool
) -> None:
    figures = probe(build, folder, role, modules, 512)
    if figures is None:
        print(f"footprint {build} {role} {what}: does not run in 512 KB")
        return
    imported, boot, full, tables = figures
    line = (
        f"footprint {build} {role} {what}: code {_kb(imported)}, up {_kb(boot)}, "
        f"every table full {_kb(full)} (peers/bans/seen/keys/reassembly "
        f"{'/'.join(map(str, tables))}"
        f"{'' if tables == FULL else ': NOT FULL, the fill is out of date'})"
    )
    if search:
        need = min_heap_kb(build, folder, role, modules, full)
        goal = GOALS[build]
        verdict = "meets" if need is not None and need <= goal else "misses"
        line += f"; completes in {need} KB ({verdict} the {goal} KB goal)"
    print(line, flush=True)


def main(
    roles: tuple[str, ...] = ("node", "bridge"),
    search: bool = True,
    chips: tuple[str, ...] | None = None,
) -> None:
    """Every row; `search=False` skips the bisection (one run per row), `chips` keeps
    only those drivers' rows (both for tests)."""
    missing = [b for b in interpreters.BOARD_NAMES if interpreters.missing(b)]
    if missing:
        print(f"footprint: skipped: {interpreters.missing(missing[0])}")
        return
    mpytree.ensure()
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        for role in roles:
            folder = Path(tmp) / role
            folder.mkdir()
            _write_inputs(folder, role)
            _row("frozen", folder, role, "(no driver)", BOOT, search)
            _row("plain", folder, role, "(no driver)", BOOT, search)
            if mpytree.lora_source() is None:
                continue
            by_chip: dict[str, list[str]] = {}
            for name, preset in boards.BOARDS.items():
                by_chip.setdefault(str(preset["chip"]), []).append(name)
            for chip, names in sorted(by_chip.items()):
                if chips is not None and chip not in chips:
                    continue
                shutil.rmtree(folder / "lib", ignore_errors=True)
                packages = ("lora", *boards.packages(boards.BOARDS[names[0]]))
                mpytree.ensure_lora(folder / "lib", packages)
                what = f"+ {chip} driver ({', '.join(names)})"
                _row("plain", folder, role, what, BOOT + DRIVER_MODULES[chip], search)
