"""ErrGroup: wait, first error, context cancellation, limits, happens-before, stress.
Interleavings are forced with events and the blocked-thread registry."""

from __future__ import annotations

import threading

import pytest
from sync_helpers import (  # noqa: F401
    WAIT,
    finish,
    installed,
    spawn,
    wait_blocked,
)

from racecheck.errors import MisuseError
from racecheck.sync.atomic import AtomicInt
from racecheck.sync.context import Canceled, background, cause
from racecheck.sync.errgroup import ErrGroup


@pytest.fixture
def thread_errors(monkeypatch):
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


def test_wait_returns_after_every_function(thread_errors):
    g = ErrGroup()
    g.wait()  # nothing started
    out, release = [], threading.Event()

    def slow(x):
        assert release.wait(WAIT)
        out.append(x)

    g.go(out.append, 1)
    g.go(slow, 2)
    w = spawn(g.wait)
    wait_blocked(w, "ErrGroup.wait", g)
    release.set()
    assert finish(w).error is None
    assert sorted(out) == [1, 2]
    assert thread_errors == []


def test_wait_reraises_the_first_error_after_all_finished(thread_errors):
    g = ErrGroup()
    first = ValueError("first")
    failed, release = threading.Event(), threading.Event()
    finished = []

    def fail():
        try:
            raise first
        finally:
            failed.set()

    def later():
        assert failed.wait(WAIT)
        assert release.wait(WAIT)
        finished.append(True)
        raise KeyError("second")

    g.go(fail)
    g.go(later)
    w = spawn(g.wait)
    wait_blocked(w, "ErrGroup.wait")
    release.set()
    assert finish(w).error is first
    assert finished == [True]
    assert thread_errors == []  # errors go to wait(), not to threading.excepthook
    with pytest.raises(ValueError):
        g.wait()


def test_with_context_cancelled_on_first_failure_and_by_wait():
    g, ctx = ErrGroup.with_context(background())
    boom = RuntimeError("boom")

    def fail():
        raise boom

    def watcher():
        ctx.done().recv()
        return cause(ctx)

    g.go(watcher)
    g.go(fail)
    with pytest.raises(RuntimeError):
        g.wait()
    assert isinstance(ctx.err(), Canceled) and cause(ctx) is boom

    g2, ctx2 = ErrGroup.with_context(background())
    g2.go(lambda: None)
    g2.wait()
    assert isinstance(ctx2.err(), Canceled) and isinstance(cause(ctx2), Canceled)


def test_limit_try_go_and_blocked_go():
    g = ErrGroup()
    g.set_limit(1)
    release = threading.Event()
    started = []
    g.go(lambda: (started.append(1), release.wait(WAIT)))
    assert not g.try_go(started.append, 2)
    with pytest.raises(MisuseError, match=r"^errgroup: modify limit while 1 goroutines"):
        g.set_limit(2)
    second = spawn(g.go, started.append, 3)
    wait_blocked(second, "ErrGroup.go", g)
    release.set()
    assert finish(second).error is None
    g.wait()
    assert sorted(started) == [1, 3]
    g.set_limit(-1)
    assert g.try_go(lambda: None)
    g.wait()


def test_happens_before_go_to_start_and_return_to_wait():
    with installed() as fake:
        g = ErrGroup()
        before = fake.mark()
        seen_at_start = []
        marks = []

        def fn():
            seen_at_start.append(fake.ordered_after(before))
            marks.append(fake.mark())

        g.go(fn)
        g.go(fn)
        g.wait()
        assert seen_at_start == [True, True]
        assert all(fake.ordered_after(m) for m in marks) and len(marks) == 2


def test_base_exceptions_are_delivered_to_wait(thread_errors):
    g = ErrGroup()

    def interrupt():
        raise KeyboardInterrupt

    g.go(interrupt)
    with pytest.raises(KeyboardInterrupt):
        g.wait()
    assert thread_errors == []


def test_stress_limit_is_respected():
    g = ErrGroup()
    g.set_limit(4)
    active, peak, total = AtomicInt(), AtomicInt(), AtomicInt()

    def work():
        now = active.add(1)
        while True:
            seen = peak.load()
            if now <= seen or peak.compare_and_swap(seen, now):
                break
        total.add(1)
        active.add(-1)

    for _ in range(200):
        g.go(work)
    g.wait()
    assert total.load() == 200 and active.load() == 0
    assert 1 <= peak.load() <= 4
