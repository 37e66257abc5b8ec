"""Lorawire: the wire codec shared by the MicroPython firmware and the CPython gateway."""
