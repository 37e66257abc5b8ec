# Runs under MicroPython (and CPython): checks tests/vectors/codec.json against lorawire's
# pure codec and prints one line per failure, then a summary line the test parses.
import binascii
import json
import sys

from vectors_json import untyped

from lorawire import _purecodec as codec
from lorawire.errors import DecodeError


def main(path):
    with open(path) as f:
        vectors = json.load(f)
    failures = 0
    for vec in vectors:
        data = binascii.unhexlify(vec["hex"])
        if vec.get("error"):
            try:
                codec.unpackb(data)
                print("FAIL accepted:", vec["name"])
                failures += 1
            except DecodeError:
                pass
            continue
        value = untyped(vec["value"])
        encoded = codec.packb(value)
        if encoded != data:
            print("FAIL encode:", vec["name"], binascii.hexlify(encoded))
            failures += 1
        decoded = codec.unpackb(data)
        # True == 1 on MicroPython: compare the re-encoding too, which keeps the types
        if decoded != value or codec.packb(decoded) != data:
            print("FAIL decode:", vec["name"])
            failures += 1
    print("vectors:", len(vectors), "failures:", failures)


main(sys.argv[1])
