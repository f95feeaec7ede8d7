"""Helpers for driving the engine with real threads in a forced order.

The engine only sees what the tests report to it (fork/begin/end/joined,
publish/consume, accesses); the threading.Events used here to force the interleaving
are invisible to it, so they order execution without adding happens-before edges.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from racecheck.engine.detector import Detector
from racecheck.report.findings import Frame

WAIT = 5.0
F = sys._getframe


class EngineThread:
    """A real thread whose lifecycle is reported to the detector like the stdlib
    patches do (fork in start, begin/end around the target, joined after join)."""

    def __init__(self, d: Detector, fn: Callable[[], Any], name: str | None = None) -> None:
        self.d = d
        self.fn = fn
        self.thread = threading.Thread(target=self._run, name=name)
        self.token: object = None
        self.error: BaseException | None = None

    def start(self) -> EngineThread:
        self.token = self.d.fork(self.thread, (Frame("spawner.py", 7, "main"),))
        self.thread.start()
        return self

    def _run(self) -> None:
        self.d.begin(self.thread, self.token)
        try:
            self.fn()
        except BaseException as e:  # surfaced by join()
            self.error = e
        finally:
            self.d.end(self.thread)

    def join(self, sync: bool = True) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "thread did not finish"
        if self.error is not None:
            raise self.error
        if sync:
            self.d.joined(self.thread)


def run_in_thread(d: Detector, fn: Callable[[], Any], sync: bool = True) -> EngineThread:
    """Start, run to completion, join (with the join edge only when ``sync``)."""
    t = EngineThread(d, fn).start()
    t.join(sync=sync)
    return t


class Obj:
    """A plain weakrefable user object."""


def wait(ev: threading.Event) -> None:
    assert ev.wait(WAIT), "forced interleaving timed out"
