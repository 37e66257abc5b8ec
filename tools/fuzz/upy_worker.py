# The unix-port side of tools.fuzz: reads "<target> <hex input>" lines on stdin and
# answers each with "@@ " and the outcome line of tools/fuzz/wire_targets.py, the same
# code the CPython driver runs (the prefix sets answers apart from what MicroPython
# itself prints, such as "Warning: Comparison between bytes and str").
# argv: state directory, pseudo-terminal path (or "-").
import binascii
import sys

import wire_targets as wt

wt.STATE["dir"] = sys.argv[1]
wt.STATE["pty"] = None if sys.argv[2] == "-" else sys.argv[2]
print("@@ ready")
while True:
    line = sys.stdin.readline()
    if not line:
        break
    name, _, hexdata = line.strip().partition(" ")
    print("@@ " + wt.outcome(name, binascii.unhexlify(hexdata)))
