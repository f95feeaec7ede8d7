"""Protocols shared across the package: the contracts between its parts.

Data flows one way: user code -> (instrument) -> events -> (engine) -> findings ->
(report).  These Protocols are the seams, so each part can be tested against a fake of
its neighbour.
"""

from __future__ import annotations

from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from racecheck.report.findings import RaceFinding, Stack
from racecheck.sync.events import HappensBefore


class AccessSink(Protocol):
    """What rewritten user code reports into (implemented by ``engine.detector.Detector``).

    ``frame`` is the user's frame that made the access: the engine reads its code and
    line, and walks ``f_back`` only when it must record a stack.  It never stores frames.

    Locations: ``(obj, name)`` for attributes, module globals (``obj`` is the module) and
    closure cells (``obj`` is the scope object the rewriter made, ``name`` the variable);
    ``(container, key)`` for subscripts (list indices normalised by the caller);
    ``container`` as a whole for mutate/iterate.
    """

    def read_attr(self, obj: object, name: str, frame: FrameType) -> None: ...
    def write_attr(self, obj: object, name: str, frame: FrameType) -> None: ...
    def read_item(self, container: object, key: object, frame: FrameType) -> None: ...
    def write_item(self, container: object, key: object, frame: FrameType) -> None: ...
    def mutate(self, container: object, frame: FrameType) -> None: ...
    def iterate(self, container: object, frame: FrameType) -> None: ...


class ThreadLifecycle(Protocol):
    """What the ``threading`` patches report (implemented by the Detector)."""

    def fork(self, thread: Any, created_at: Stack) -> object:
        """In the parent, in ``Thread.start()`` before the child can run: register the
        child and return the token the child consumes when it begins."""

    def begin(self, thread: Any, token: object) -> None:
        """In the child, before its target runs."""

    def end(self, thread: Any) -> None:
        """In the child, after its target returned or raised: publish its final clock."""

    def joined(self, thread: Any) -> None:
        """In a thread that observed ``thread`` finished (``join`` returned with the
        thread dead, ``is_alive()`` returned False): order its past before ours."""


class Engine(AccessSink, ThreadLifecycle, HappensBefore, Protocol):
    """The whole detector as the rest of racecheck sees it."""

    def races(self) -> list[RaceFinding]:
        """Every race found so far (deduplicated by pair of source locations)."""

    def add_race_callback(self, callback: Callable[[RaceFinding], None]) -> None:
        """Called once per new (non-duplicate, non-suppressed) race, as it is found."""
