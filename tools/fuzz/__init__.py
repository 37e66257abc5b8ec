"""Fuzzing every decoder entry point (`make fuzz`, `python -m tools.fuzz`).

Targets (tools/fuzz/wire_targets.py, host_targets.py): every lorawire function that
decodes untrusted bytes, the firmware's entry points for frames, UART bytes, its
config file and its ban file, the gateway's for TCP frames, its TOML config and its
key file, and the deploy tool's check of a board config. Inputs come from a seeded
mutator over the test vectors (mutate.py, seeds.py); the loop (run.py) checks that
nothing but the documented error escapes on CPython and that the unix ports give the
same outcome for the same inputs.
"""
