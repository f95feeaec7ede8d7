"""A tiny vector-clock engine standing in for the Detector in the stdlib/backend tests,
plus the helpers they share, and tests of the fake itself.

It implements HappensBefore and ThreadLifecycle with real vector clocks, so a test can
ask "is this mark ordered before that one?" instead of inspecting call sequences.  It
uses no lock (per-thread clocks live in a threading.local, tokens are immutable), so it
cannot itself create edges through racecheck's patches or backends.
"""

from __future__ import annotations

import _thread
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from racecheck.sync import events


@dataclass(frozen=True)
class Mark:
    slot: int
    clock: int
    vc: dict[int, int]


class Token:
    __slots__ = ("vc",)

    def __init__(self, vc: dict[int, int]) -> None:
        self.vc = vc


def _join(a: dict[int, int], b: dict[int, int]) -> dict[int, int]:
    out = dict(a)
    for k, v in b.items():
        if v > out.get(k, 0):
            out[k] = v
    return out


class VCEngine:
    """HappensBefore + ThreadLifecycle over plain vector clocks."""

    def __init__(self) -> None:
        self._slots = itertools.count()
        self._tls = threading.local()
        self.marks: dict[str, Mark] = {}
        self.finals: dict[int, Token] = {}
        self.calls: list[tuple[str, str]] = []
        self.audits: list[tuple[str, str]] = []

    def _vc(self) -> tuple[int, dict[int, int]]:
        tls = self._tls
        if not hasattr(tls, "vc"):
            tls.slot = next(self._slots)
            tls.vc = {tls.slot: 1}
        return tls.slot, tls.vc

    # HappensBefore
    def publish(self, into: object | None) -> object:
        slot, vc = self._vc()
        out = dict(vc)
        if isinstance(into, Token):
            out = _join(out, into.vc)
        vc[slot] += 1
        return Token(out)

    def consume(self, token: object) -> None:
        assert isinstance(token, Token), token
        slot, vc = self._vc()
        self._tls.vc = _join(vc, token.vc)

    def audit(self, obj: object, op: Any, what: str, depth: int) -> None:
        self.audits.append((op, what))

    # ThreadLifecycle
    def fork(self, thread: Any, created_at: Any) -> object:
        self.calls.append(("fork", thread.name))
        return self.publish(None)

    def begin(self, thread: Any, token: object) -> None:
        self.calls.append(("begin", thread.name))
        self.consume(token)

    def end(self, thread: Any) -> None:
        self.calls.append(("end", thread.name))
        self.finals[id(thread)] = self.publish(None)  # type: ignore[assignment]

    def joined(self, thread: Any) -> None:
        self.calls.append(("joined", thread.name))
        self.consume(self.finals[id(thread)])

    # what tests ask
    def mark(self, name: str) -> None:
        """Record an 'access' by the calling thread now."""
        slot, vc = self._vc()
        self.marks[name] = Mark(slot, vc[slot], dict(vc))

    def hb(self, a: str, b: str) -> bool:
        """Mark a happens before mark b."""
        ma, mb = self.marks[a], self.marks[b]
        return mb.vc.get(ma.slot, 0) >= ma.clock

    def concurrent(self, a: str, b: str) -> bool:
        return not self.hb(a, b) and not self.hb(b, a)


class Signal:
    """A one-shot signal racecheck cannot see (a raw lock used only in test code, with
    no backend running): forces a schedule without adding an edge."""

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()

    def set(self) -> None:
        self._lock.release()

    def wait(self, timeout: float = 5.0) -> None:
        assert self._lock.acquire(True, timeout), "signal not set in time"


def one_after_another(*fns: Callable[[], object], timeout: float = 5.0) -> None:
    """Run each fn in its own invisible thread, strictly in order, adding no edge."""
    for fn in fns:
        start_raw(fn).wait(timeout)


def start_raw(fn: Any, *args: Any) -> Signal:
    """Run fn in a thread racecheck does not see (``_thread``), return its done signal."""
    done = Signal()

    def run() -> None:
        try:
            fn(*args)
        finally:
            done.set()

    _thread.start_new_thread(run, ())
    return done


@pytest.fixture
def fake() -> Any:
    """The fake engine as the events listener, without any patches."""
    engine = VCEngine()
    events.set_happens_before(engine)
    yield engine
    events.set_happens_before(None)


# --- the fake itself ----------------------------------------------------------------


def test_publish_consume_orders_and_unsynchronised_threads_are_concurrent(fake: VCEngine) -> None:
    fake.mark("main-before")
    token = fake.publish(None)
    fake.mark("main-after")
    box: dict[str, object] = {}

    def child() -> None:
        fake.mark("child-before")
        fake.consume(box["token"])  # type: ignore[arg-type]
        fake.mark("child-after")

    box["token"] = token
    start_raw(child).wait()
    assert fake.hb("main-before", "child-after")
    assert not fake.hb("main-after", "child-after")
    assert fake.concurrent("main-before", "child-before")
