"""Logging for the gateway: one line per event, journald-aware.

On a terminal or in a file: ``2026-11-25 16:00:00 INFO loragate.x: message``.

Under systemd (stderr connected to the journal, which systemd announces in
``$JOURNAL_STREAM`` as ``<device>:<inode>`` of that stream) each line carries no
timestamp (journald adds its own) and starts with the sd-daemon priority prefix
``<N>`` (``sd-daemon(3)``), so ``journalctl -p warning`` filters by level.

A record is always one line: newlines in the message and in a traceback are replaced by
`` | ``, because journald (and ``grep``) would split them into unrelated entries.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# syslog priorities (sd-daemon.h: SD_DEBUG 7, SD_INFO 6, SD_WARNING 4, SD_ERR 3, SD_CRIT 2)
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def syslog_priority(levelno: int) -> int:
    for threshold, prio in _PRIORITY:
        if levelno >= threshold:
            return prio
    return 7


class OneLineFormatter(logging.Formatter):
    """Formats a record (with any traceback) as a single line."""

    def __init__(self, journald: bool) -> None:
        fmt = "%(levelname)s %(name)s: %(message)s" if journald else TEXT_FORMAT
        super().__init__(fmt, DATE_FORMAT)
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        text = " | ".join(line for line in super().format(record).splitlines() if line.strip())
        if self.journald:
            return f"<{syslog_priority(record.levelno)}>{text}"
        return text


def under_journald(stream: IO[str] | None = None) -> bool:
    """True if ``stream`` (default stderr) is the journal stream systemd gave us."""
    value = os.environ.get("JOURNAL_STREAM")
    if not value:
        return False
    stream = stream if stream is not None else sys.stderr
    try:
        dev_text, ino_text = value.split(":")
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    # A child of a journald-logged process inherits the variable but may log elsewhere.
    return st.st_dev == int(dev_text) and st.st_ino == int(ino_text)


_HANDLER_MARK = "_loragate_handler"


def setup_logging(
    level: str = "info", stream: IO[str] | None = None, journald: bool | None = None
) -> logging.Handler:
    """Configure the root logger (idempotent: replaces the handler it added before).

    ``level`` is one of ``LEVELS``; ``journald=None`` detects it from $JOURNAL_STREAM.
    Raises ValueError for an unknown level.
    """
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} must be one of {', '.join(LEVELS)}")
    stream = stream if stream is not None else sys.stderr
    if journald is None:
        journald = under_journald(stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter(journald))
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    return handler
