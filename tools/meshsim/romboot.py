# ruff: noqa: UP031
# mypy: ignore-errors
"""Unix port: boot the firmware from a ROMFS image, as a board with a ROMFS partition.

    micropython -X heapsize=H tools/meshsim/romboot.py IMAGE MAIN_PY [args...]

A board mounts its ROMFS partition at /rom and imports from it in place. The unix port
has no ROM, so the image is read into one bytearray allocated first (it takes exactly
its own size at the bottom of the heap; a board keeps it in flash), mounted with
`vfs.VfsRom` and put first on sys.path, the frozen modules (asyncio) after it. Then
MAIN_PY runs as a board runs main.py: compiled from source, with sys.argv shifted so it
sees its own arguments. The line `ROMFS <image bytes> <heap alloc after mount>` comes
first, so a test can tell the image from what the firmware allocates.
"""

import gc
import os
import sys

import vfs

_image = bytearray(os.stat(sys.argv[1])[6])
with open(sys.argv[1], "rb") as _f:
    _f.readinto(_image)
vfs.mount(vfs.VfsRom(_image), "/rom")
sys.path[:] = ["/rom", ".frozen"]
_main = sys.argv[2]
sys.argv[:] = [_main] + sys.argv[3:]
gc.collect()
print("ROMFS %d %d" % (len(_image), gc.mem_alloc()))
with open(_main) as _f:
    _code = compile(_f.read(), _main, "exec")
del _f
gc.collect()
exec(_code, {"__name__": "__main__"})
