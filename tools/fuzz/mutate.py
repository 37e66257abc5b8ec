"""A seeded byte mutator: the same seed gives the same inputs, so a finding replays.

Each input is a seed picked at random with one to four edits (AFL's havoc stage, in
small): flip a bit, set a byte to a boundary value, insert or delete a run, duplicate
a run, splice in a piece of another seed, truncate; one input in twenty is random
bytes, so the decoders also meet what no seed looks like.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

BOUNDARY = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC0, 0xC4, 0xCC, 0xCD, 0xCE, 0xDC, 0xDE, 0x90, 0x80)


class Mutator:
    def __init__(self, seeds: list[bytes], seed: int, max_len: int) -> None:
        if not seeds:
            raise ValueError("a mutator needs at least one seed input")
        self.seeds = seeds
        self.rng = random.Random(seed)
        self.max_len = max_len

    def __iter__(self) -> Iterator[bytes]:
        while True:
            yield self.next()

    def next(self) -> bytes:
        rng = self.rng
        if rng.randrange(20) == 0:
            return rng.randbytes(rng.randrange(self.max_len // 2 + 1))
        data = bytearray(rng.choice(self.seeds))
        for _ in range(rng.randint(1, 4)):
            self._edit(data)
        return bytes(data[: self.max_len])

    def _edit(self, data: bytearray) -> None:
        rng = self.rng
        n = len(data)
        op = rng.randrange(8)
        if n == 0 or op == 0:  # insert a short run
            at = rng.randrange(n + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 1:
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 2:
            data[rng.randrange(n)] = rng.choice(BOUNDARY)
        elif op == 3:
            data[rng.randrange(n)] = rng.randrange(256)
        elif op == 4:  # delete a run
            at = rng.randrange(n)
            del data[at : at + rng.randint(1, max(1, n // 4))]
        elif op == 5:  # duplicate a run
            at = rng.randrange(n)
            run = data[at : at + rng.randint(1, 16)]
            data[at:at] = run
        elif op == 6:  # splice a piece of another seed
            other = rng.choice(self.seeds)
            if other:
                a = rng.randrange(len(other))
                piece = other[a : a + rng.randint(1, 32)]
                at = rng.randrange(n + 1)
                data[at : at + len(piece)] = piece
        else:  # truncate
            del data[rng.randrange(n) :]
