"""The embedding API (racecheck.enable / races / happens_before ...) and its policies."""

from __future__ import annotations

import sys
import threading
import time

import pytest

import racecheck
from racecheck import runtime


def test_lock_backend_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RACECHECK_SETPROFILE", raising=False)
    assert runtime._wants_backend() is (sys.version_info >= (3, 12))
    monkeypatch.setenv("RACECHECK_SETPROFILE", "1")
    assert runtime._wants_backend() is True


class Box:
    def __init__(self) -> None:
        self.value = 0


def _write(box: Box, sink) -> None:  # type: ignore[no-untyped-def]
    sink.write_attr(box, "value", sys._getframe())


def _spin_until(flag: list[bool]) -> None:
    deadline = time.monotonic() + 5
    while not flag:
        assert time.monotonic() < deadline, "the other thread never got there"
        time.sleep(0.001)  # waiting for a flag, not ordering anything


def test_enable_races_reset_disable_and_annotations() -> None:
    """Drives the engine directly (this test module is not instrumented): two threads
    write one attribute, first unordered (a race), then ordered by the annotations."""
    racecheck.enable(instrument_imports=False, deadlock="off")
    try:
        assert racecheck.is_enabled()
        from racecheck.instrument import hooks

        sink = hooks.current_sink()
        assert sink is not None
        box = Box()
        # A plain flag in this uninstrumented module: the detector cannot see it, so it
        # forces the order without ordering the accesses (an Event would be an edge).
        done: list[bool] = []

        def first() -> None:
            _write(box, sink)
            done.append(True)

        t = threading.Thread(target=first)
        t.start()
        _spin_until(done)
        _write(box, sink)  # unordered with the thread's write: nothing joined it yet
        t.join(5)
        assert len(racecheck.races()) == 1
        racecheck.reset()
        assert racecheck.races() == []

        other = Box()

        done.clear()

        def annotated() -> None:
            _write(other, sink)
            racecheck.happens_before("handoff")
            done.append(True)

        t = threading.Thread(target=annotated)
        t.start()
        _spin_until(done)
        racecheck.happens_after("handoff")
        _write(other, sink)  # ordered by the annotation, not by a join
        t.join(5)
        assert racecheck.races() == []
    finally:
        racecheck.disable()
    assert not racecheck.is_enabled()
    assert racecheck.findings() == []  # still readable after disable
