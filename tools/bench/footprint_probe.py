# A node (or bridge) with every table at capacity, inside one MicroPython process: the
# heap it holds. Run by tools/bench/bench_footprint.py on the board-shaped builds:
#
#   micropython -X heapsize=N footprint_probe.py DIR ROLE [MODULE ...]
#
# DIR holds config.json (as the deploy tool writes it) and frames.txt (one "phase hex"
# line per received frame, made by the bench on CPython). MODULEs are imported first, as
# a board's boot imports them (the LoRa driver, the boot sequence). Prints
# "PROBE <import> <boot> <full> <peers> <bans> <seen> <keys> <reassembly>": bytes held
# after gc.collect() once the code is imported, once the node is up, once every frame is
# in; a MemoryError anywhere is the answer "does not fit in N".
import gc
import sys

if "lora" in sys.argv[3:]:
    # the drivers import machine.Pin/SPI, which the unix port lacks: tools/chipsim's
    # stand-in, imported before the baseline (a board's machine module is built in)
    import chipsim.machine

    sys.modules["machine"] = chipsim.machine
gc.collect()
_base = gc.mem_alloc()


def _imports(names):
    for name in names:
        __import__(name)


def _probe(folder, role, modules):
    import json
    from binascii import unhexlify

    _imports(modules)
    from loranode.constants import GC_THRESHOLD
    from lorawire.identity import Identity

    if role == "bridge":
        from loranode.bridge import Bridge as node_class
    else:
        from loranode.node import Node as node_class
    gc.collect()
    imported = gc.mem_alloc() - _base

    class Radio:  # the medium is the frame file: nothing is sent
        speed = 1
        name = "probe"

    class Port:  # the bridge's UART with the gateway unplugged
        is_open = False

        def close(self):
            pass

    class Clock:
        t = 1000

        def now(self):
            return self.t

        def wall_ms(self, ms):
            return ms

    clock = Clock()
    with open(folder + "/config.json") as f:
        cfg = json.loads(f.read())
    cfg["node"]["state_dir"] = folder
    cfg["node"]["stdin"] = False
    ident = Identity(bytes(range(32)))
    gc.threshold(GC_THRESHOLD)  # as loranode.start.run sets it
    if role == "bridge":
        node = node_class(cfg, ident, Radio(), Port(), clock=clock)
    else:
        node = node_class(cfg, ident, Radio(), clock=clock)
    cfg = None
    node.start()
    gc.collect()
    boot = gc.mem_alloc() - _base
    f = open(folder + "/frames.txt")
    while True:
        line = f.readline()
        if not line:
            break
        phase, data = line.split()
        clock.t += 100
        node.handle_frame(unhexlify(data), -80, 8)
        if phase != "relayed":  # relays pile up in the transmit queue: that is a table too
            while node.next_frame() is not None:
                pass
    f.close()
    gc.collect()
    full = gc.mem_alloc() - _base
    reasm = node.reasm.live_slots()
    sizes = (len(node.peers), len(node.bans), len(node.seen), len(node.link_keys), reasm)
    print("PROBE %d %d %d %d %d %d %d %d" % ((imported, boot, full) + sizes))


_probe(sys.argv[1], sys.argv[2], sys.argv[3:])
