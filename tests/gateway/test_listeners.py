"""Listeners: every consumer registers, one that fails harms none of the others."""

from __future__ import annotations

import logging

import pytest

from loragate.listeners import Listeners

log = logging.getLogger("test.listeners")


def test_each_listener_runs_in_order_and_a_failing_one_is_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: list[str] = []
    on_x: Listeners[[str]] = Listeners("on_x", log)

    def broken(what: str) -> None:
        raise RuntimeError("boom")

    on_x.add(lambda what: got.append("first " + what))
    remove_broken = on_x.add(broken)
    remove_last = on_x.add(lambda what: got.append("last " + what))
    with caplog.at_level(logging.ERROR, "test.listeners"):
        on_x("a")
    assert got == ["first a", "last a"] and on_x.errors == 1
    assert "on_x listener" in caplog.text and "boom" in caplog.text
    remove_broken()
    remove_broken()  # removing twice is harmless
    remove_last()
    on_x("b")
    assert got == ["first a", "last a", "first b"] and len(on_x) == 1 and on_x.errors == 1
