"""Loranode: the MicroPython peer manager for LoRa boards."""
