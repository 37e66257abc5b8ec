"""Firmware entry point: loranode.start.run (config -> identity -> radio -> node or bridge).

Board: runs at boot with no arguments and reads "config.json" (written by the deploy
tool) from the flash. Unix port: `micropython firmware/main.py CONFIG`.

Code from .py sources: a board compiles a module when it imports it, deep inside the
import chain, and our modules do not compile within an ESP32's 15 KB C stack (nor do
their sources fit its heap next to the result). So on a board (any platform but the
unix port) main.py refuses, in one line, to start when our packages are on the
filesystem as .py files; the deploy tool always ships .mpy files. Anywhere, a compile
that runs out of C stack or heap ends the boot with one line, not a traceback.
"""

import sys


def _sources():
    """The first directory on sys.path whose copy of our packages is .py sources, or None
    (the first copy found is the one that would be imported)."""
    import os

    for d in sys.path:
        for pkg in ("loranode", "lorawire"):
            base = (d + "/" if d else "") + pkg + "/__init__."
            for ext, found in (("mpy", None), ("py", d or ".")):
                try:
                    os.stat(base + ext)
                    return found
                except OSError:
                    pass
    return None


def main():
    src = _sources()
    if src is not None and sys.platform != "linux":
        print("firmware: %s holds our packages as .py sources, which a board cannot compile;"
              " deploy .mpy files (make flash)" % src)
        sys.exit(2)
    try:
        from loranode import start
    except (RuntimeError, MemoryError) as e:  # compiling sources ran out of C stack or heap
        print("firmware: cannot load loranode (%s): deploy .mpy files (make flash)" % (e,))
        sys.exit(2)
    argv = getattr(sys, "argv", None) or []
    start.run(argv[1] if len(argv) > 1 else "config.json")


main()
