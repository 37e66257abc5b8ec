"""Runs before main.py on a board: keep it minimal (no network, no radio)."""

import gc

gc.collect()
try:
    # collect early and often: the node preallocates its tables and then runs with a
    # small, steady heap, so frequent small collections beat rare long pauses
    gc.threshold(gc.mem_free() // 4 + gc.mem_alloc())
except AttributeError:  # a port without gc.threshold / mem_free
    pass
