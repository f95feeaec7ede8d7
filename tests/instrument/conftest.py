"""Fixtures for the rewriter/hooks/import-hook tests: a recording fake sink and a loader
that turns source text into an instrumented module."""

from __future__ import annotations

import sys
import textwrap
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from racecheck.instrument import hooks
from racecheck.instrument.rewrite import compile_instrumented


class RecordingSink:
    """An AccessSink that records ``(op, obj, key, lineno)`` for every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any, int]] = []
        self._lock = threading.Lock()

    def _add(self, op: str, obj: Any, key: Any, frame: Any) -> None:
        assert isinstance(frame, types.FrameType)
        with self._lock:
            self.calls.append((op, obj, key, frame.f_lineno))

    def read_attr(self, obj: Any, name: str, frame: Any) -> None:
        self._add("read", obj, name, frame)

    def write_attr(self, obj: Any, name: str, frame: Any) -> None:
        self._add("write", obj, name, frame)

    def read_item(self, container: Any, key: Any, frame: Any) -> None:
        self._add("read_item", container, key, frame)

    def write_item(self, container: Any, key: Any, frame: Any) -> None:
        self._add("write_item", container, key, frame)

    def mutate(self, container: Any, frame: Any) -> None:
        self._add("mutate", container, None, frame)

    def iterate(self, container: Any, frame: Any) -> None:
        self._add("iterate", container, None, frame)

    def take(self) -> list[tuple[str, Any, Any, int]]:
        with self._lock:
            calls, self.calls = self.calls, []
        return calls

    def ops(self) -> list[tuple[str, Any]]:
        """The calls as ``(op, key)`` pairs, consumed."""
        return [(op, key) for op, _obj, key, _line in self.take()]

    def on(self, obj: Any) -> list[tuple[str, Any]]:
        """The calls on ``obj`` as ``(op, key)`` pairs; all calls are consumed."""
        return [(op, key) for op, o, key, _line in self.take() if o is obj]


_HOOK_CLASSES = [pytest.param(hooks.PyModuleHooks, id="pyhooks")]
if getattr(hooks, "NativeModuleHooks", None) is not None:
    _HOOK_CLASSES.append(pytest.param(hooks.NativeModuleHooks, id="chooks"))


@pytest.fixture(autouse=True, params=_HOOK_CLASSES)
def hook_class(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every instrument test runs against both hook implementations: the pure-Python
    reference and the C hooks (when built), so they must record the same calls."""
    monkeypatch.setattr(hooks, "ModuleHooks", request.param)
    return request.param


@pytest.fixture
def sink():
    recorder = RecordingSink()
    hooks.install(recorder)
    try:
        yield recorder
    finally:
        hooks.uninstall()


@pytest.fixture
def load(tmp_path: Path):
    """``load(source, name="m")``: write, instrument and execute a module; returns it."""
    created: list[str] = []

    def _load(source: str, name: str = "rcmod") -> types.ModuleType:
        source = textwrap.dedent(source)
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        module = types.ModuleType(name)
        module.__file__ = str(path)
        sys.modules[name] = module
        created.append(name)
        exec(compile_instrumented(source, str(path)), module.__dict__)
        return module

    yield _load
    for name in created:
        sys.modules.pop(name, None)


@pytest.fixture
def eng() -> Iterator[Any]:
    """A vector-clock fake engine receiving the edges of the patched stdlib (modules
    needing another setup define their own ``eng``)."""
    from test_stdlib_vc import VCEngine

    from racecheck.instrument import stdlib
    from racecheck.sync import events

    engine = VCEngine()
    events.set_happens_before(engine)
    stdlib.install(engine)
    yield engine
    stdlib.uninstall()
    events.set_happens_before(None)
