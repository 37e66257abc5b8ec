"""Rebuild lorawire._ed25519_comb, the fixed-base comb table of the pure Ed25519.

    python -m tools.gen_comb        # rewrites shared/lorawire/_ed25519_comb.py

Entry i (1..31) = sum over the set bits j of i of 2**(j * COMB_SPACING) B, affine,
stored as (y+x, y-x, 2*d*x*y), each 32 bytes little-endian. The test of the pure path
(tests/shared/test_ed25519.py) compares the file with `table_bytes()`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "shared") not in sys.path:
    sys.path.insert(0, str(ROOT / "shared"))

from lorawire import _ed25519_pure as ed  # noqa: E402

OUT = ROOT / "shared" / "lorawire" / "_ed25519_comb.py"
BYTES_PER_LINE = 16
HEADER = '''"""The fixed-base comb table of lorawire._ed25519_pure, as one bytes constant.

Entry i (1..31) is the affine point sum over the set bits j of i of 2**(j*51) B, stored
as three 32-byte little-endian field elements (y+x, y-x, 2*d*x*y) at offset (i-1)*96.
A bytes constant costs no heap when the module runs from a ROMFS image (it stays in
flash) and a third of the big ints it replaces otherwise; the table no longer has to be
computed on the first signature. Generated data: tests/shared/test_ed25519.py rebuilds
the table from the curve and checks it against this file (`tools/gen_comb.py` rewrites it).
"""

ENTRY = 96
'''


def _add(a: tuple[int, int, int, int], x2: int, y2: int) -> tuple[int, int, int, int]:
    """Extended point a plus the affine point (x2, y2) (add-2008-hwcd-3)."""
    p = ed.P
    x1, y1, z1, t1 = a
    aa = (y1 - x1) * (y2 - x2) % p
    b = (y1 + x1) * (y2 + x2) % p
    c = t1 * ed.D2 % p * x2 % p * y2 % p
    dd = 2 * z1
    e, f, g, h = b - aa, dd - c, dd + c, b + aa
    return e * f % p, g * h % p, f * g % p, e * h % p


def _affine(pt: tuple[int, int, int, int]) -> tuple[int, int]:
    zi = pow(pt[2], ed.P - 2, ed.P)
    return pt[0] * zi % ed.P, pt[1] * zi % ed.P


def table_bytes() -> bytes:
    """The 31 comb entries, 96 bytes each."""
    p = ed.P
    teeth = []
    tooth = (ed.BX, ed.BY, 1, ed.BX * ed.BY % p)
    for _ in range(ed.COMB_TEETH):
        teeth.append(_affine(tooth))
        for _ in range(ed.COMB_SPACING):
            tooth = _add(tooth, *_affine(tooth))  # doubling = adding the point itself
    out = bytearray()
    for i in range(1, 1 << ed.COMB_TEETH):
        acc = (0, 1, 1, 0)
        for j in range(ed.COMB_TEETH):
            if i >> j & 1:
                acc = _add(acc, *teeth[j])
        x, y = _affine(acc)
        for v in ((y + x) % p, (y - x) % p, ed.D2 * x % p * y % p):
            out += v.to_bytes(32, "little")
    return bytes(out)


def render(blob: bytes) -> str:
    rows = []
    for i in range(0, len(blob), BYTES_PER_LINE):
        chunk = blob[i : i + BYTES_PER_LINE]
        rows.append('    b"' + "".join(f"\\x{b:02x}" for b in chunk) + '"')
    return HEADER + "COMB = (\n" + "\n".join(rows) + "\n)\n"


def main() -> None:
    OUT.write_text(render(table_bytes()), encoding="utf-8")
    print(f"{OUT}: {len(table_bytes())} bytes of table")


if __name__ == "__main__":
    main()
