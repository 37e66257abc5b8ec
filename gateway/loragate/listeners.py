"""A list of callbacks that several parts may register on, instead of one slot to swap.

A part that produces events (`Relay.on_object`, `MeshLink.on_frame`,
`SerialLink.on_state`, ...) holds a `Listeners`; each consumer calls `add(fn)` and keeps
the remover it gets back. Calling the `Listeners` calls every listener in the order
they were added. A listener that raises is logged (on the producer's logger) and
counted in `errors`; the others still run and the producer never sees the exception,
so one faulty consumer cannot break a receive path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, ParamSpec

P = ParamSpec("P")


class Listeners(Generic[P]):
    __slots__ = ("name", "errors", "_fns", "_log")

    def __init__(self, name: str, log: logging.Logger) -> None:
        self.name = name  # for the log line: which event's listener failed
        self.errors = 0
        self._fns: list[Callable[P, object]] = []
        self._log = log

    def add(self, fn: Callable[P, object]) -> Callable[[], None]:
        """Register `fn`; returns a function that removes it again (idempotent)."""
        self._fns.append(fn)

        def remove() -> None:
            if fn in self._fns:
                self._fns.remove(fn)

        return remove

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for fn in list(self._fns):
            try:
                fn(*args, **kwargs)
            except Exception:
                self.errors += 1
                self._log.exception("%s listener %r failed", self.name, fn)

    def __len__(self) -> int:
        return len(self._fns)
