"""Reassembly starvation (issue 15, finding 3), one scenario for CPython and MicroPython.

Two attacker sources keep every reassembly slot of a 4-slot Reassembler busy: each holds
two messages open with a first fragment only, and opens two new ones the moment the
old ones time out (every 30 s). Meanwhile an honest source sends `messages` fragmented
messages of 3 fragments, 1 s apart, each starting at a pseudo-random time. The scenario
prints how many of the honest messages were reassembled.

Run as a script under the unix port (`micropython starvation_scenario.py [messages]`)
or call `run()` from CPython: same code, same pseudo-random times (a 31-bit LCG, so
both runtimes draw the same numbers).
"""

from lorawire import fragment

ATTACKERS = (b"\xa1" * 8, b"\xa2" * 8)
HONEST = b"\x0c" * 8
PERIOD_MS = fragment.DEFAULT_TIMEOUT_MS
GAP_MS = 1000


def _lcg(x):
    return (x * 1103515245 + 12345) & 0x7FFFFFFF


def _body(m):
    return f"honest {m} ".encode() * 20


def schedule(messages, seed=1):
    """Every fragment in time order: (time_ms, source, fields). At equal times the
    attacker goes first (its worst case for the honest sender)."""
    events = []
    rounds = messages + 1
    for k in range(rounds):
        t = k * PERIOD_MS
        for a, src in enumerate(ATTACKERS):
            for j in range(2):
                msg_id = (k * 4 + a * 2 + j) & 0xFFFF
                events.append((t, 0, src, [msg_id, 0, 16, b"\xee" * 200]))
    x = seed
    for m in range(messages):
        x = _lcg(x)
        start = m * PERIOD_MS + 1 + x % (PERIOD_MS - 3 * GAP_MS)
        body = _body(m)
        third = (len(body) + 2) // 3
        for i in range(3):
            chunk = body[i * third : (i + 1) * third]
            events.append((start + i * GAP_MS, 1, HONEST, [m & 0xFFFF, i, 3, chunk]))
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def run(messages=600, seed=1, reassembler=None):
    """(honest messages reassembled intact, honest messages sent)."""
    r = reassembler if reassembler is not None else fragment.Reassembler()
    delivered = 0
    for t, _, src, fields in schedule(messages, seed):
        try:
            out = r.add(src, fields, t)
        except fragment.ReassemblyError:
            continue
        if out is not None and src == HONEST:
            if out == _body(fields[0]):
                delivered += 1
    return delivered, messages


def main(argv):
    n = int(argv[1]) if len(argv) > 1 else 600
    delivered, sent = run(n)
    print(f"honest delivered: {delivered} of {sent}")


if __name__ == "__main__":
    import sys

    main(sys.argv)
