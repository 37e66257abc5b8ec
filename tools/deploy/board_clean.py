"""Runs ON THE BOARD (`mpremote run`): remove the code packages, then make empty dirs.

MicroPython imports `x.py` before `x.mpy`, so a stale .py left from an earlier deploy
would shadow a new .mpy: the packages are removed first. The deploy tool then copies
files into the directories listed in DIRS (it writes a copy of this script with DIRS
filled in; `mpremote cp -r` cannot be used, it fails on a new directory without
subdirectories). Identity (key.bin), config.json and /lib (drivers) stay.
"""

import os

# Relative to the current directory, "/" in the raw REPL (as for mpremote's own paths).
PACKAGES = ("lorawire", "loranode")
# the deploy tool fills DIRS in, parents first
DIRS = ()  # type: tuple[str, ...]


def remove_tree(path: str) -> None:
    try:
        mode = os.stat(path)[0]
    except OSError:
        return
    if mode & 0x4000:
        for name in os.listdir(path):
            remove_tree(path + "/" + name)
        os.rmdir(path)
    else:
        os.remove(path)


for _package in PACKAGES:
    remove_tree(_package)
for _path in DIRS:
    os.mkdir(_path)
print("removed", " ".join(PACKAGES), "made", len(DIRS), "directories")
