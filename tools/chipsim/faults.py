# mypy: ignore-errors
"""What an emulated chip raises, and the record of everything it raised."""

LOG = []  # every fault raised in this process, as one-line strings (most recent last)
LOG_MAX = 32


class ChipFault(Exception):
    """An access the real chip would not accept. Not an OSError/RuntimeError/ValueError,
    so no driver or firmware `except` clause mistakes it for a radio condition."""


class NotModelled(ChipFault):
    """A feature of the chip that the micropython-lib drivers do not use."""


def fault(chip, message, cls=ChipFault):
    """Record and return the exception `cls` for `chip`: `raise fault(...)`."""
    text = "%s: %s" % (chip, message)
    if len(LOG) >= LOG_MAX:
        LOG.pop(0)
    LOG.append(text)
    return cls(text)
