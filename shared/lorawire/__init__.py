"""Lorawire: the wire codec shared by the MicroPython firmware and the CPython gateway.

Every part is imported from its own submodule (`lorawire.codec` for the body encoding,
`lorawire.errors.DecodeError` for the one error a decoder raises, `lorawire.frame`,
`lorawire.record`, `lorawire.airtime`, ...): the package itself imports nothing, so a
board loads only what it uses (loranode.clock needs lorawire.airtime's tick arithmetic,
not the codec).
"""
