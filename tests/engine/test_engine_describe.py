"""How reports name locations' owners (engine.shadow.describe), never running user code."""

from __future__ import annotations

import types

from racecheck.engine.shadow import describe
from racecheck.instrument.hooks import CellScope


def test_closure_scope_is_named_after_its_function() -> None:
    scope = CellScope("make")
    prefix, desc = describe(scope)
    assert prefix == "make"
    assert desc.startswith("closure variable of make, scope at 0x")


def test_objects_modules_and_classes() -> None:
    class Counter:
        @property
        def __class__(self):  # type: ignore[override]  # a user property never runs
            raise AssertionError("user code ran")

    prefix, desc = describe(Counter())
    assert prefix == "Counter" and " object at 0x" in desc
    mod = types.ModuleType("app")
    assert describe(mod) == ("app", "module app")
    assert describe(Counter)[1].startswith("class ")
