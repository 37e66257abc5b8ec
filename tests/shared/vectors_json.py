# The typed-JSON form of the vector files, read the same way on MicroPython and CPython:
# bytes are {"$bin": hex}, maps are {"$map": [[key, value], ...]} (keys may be non-str).
import binascii


def untyped(v):
    if isinstance(v, dict):
        if "$bin" in v:
            return binascii.unhexlify(v["$bin"])
        out = {}
        for k, item in v["$map"]:
            out[untyped(k)] = untyped(item)
        return out
    if isinstance(v, list):
        return [untyped(x) for x in v]
    return v
