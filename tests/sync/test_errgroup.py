"""ErrGroup: wait, first error, context cancellation, limits, happens-before, stress.
Interleavings are forced with events and the blocked-thread registry."""

from __future__ import annotations

import ctypes
import linecache
import sys
import threading
import time

import pytest

from racecheck.errors import MisuseError
from racecheck.sync import events
from racecheck.sync.atomic import AtomicInt
from racecheck.sync.context import Canceled, background, cause
from racecheck.sync.errgroup import ErrGroup

# ---- test helpers (duplicated per test module on purpose: no shared conftest is ours) ----


WAIT = 5.0  # bound on every blocking wait in these tests: a bug fails, never hangs


class FakeClocks:
    """A tiny vector-clock HappensBefore + LockListener, to check the edges for real."""

    def __init__(self):
        self._lock = threading.Lock()
        self._local = threading.local()
        self._next = 0
        self.audits = []
        self.lock_events = []

    def _clock(self):
        c = getattr(self._local, "clock", None)
        if c is None:
            with self._lock:
                self._next += 1
                me = self._next
            c = self._local.clock = {me: 1}
            self._local.me = me
        return self._local.me, c

    def publish(self, into):
        me, c = self._clock()
        token = dict(into or {})
        for k, v in c.items():
            token[k] = max(token.get(k, 0), v)
        c[me] += 1
        return token

    def consume(self, token):
        _, c = self._clock()
        for k, v in token.items():
            c[k] = max(c.get(k, 0), v)

    def audit(self, obj, op, what, depth):
        self.audits.append((obj, op, what, sys._getframe(depth + 1).f_code.co_name))

    def lock_acquired(self, lock, blocking, depth):
        name = sys._getframe(depth + 1).f_code.co_name
        self.lock_events.append(("acquired", lock, blocking, name))

    def lock_released(self, lock):
        self.lock_events.append(("released", lock))

    def mark(self):
        """The calling thread's current epoch; later work gets a later one."""
        me, c = self._clock()
        epoch = (me, c[me])
        c[me] += 1
        return epoch

    def ordered_after(self, epoch):
        """Whether ``epoch`` happens before the calling thread's present."""
        who, when = epoch
        _, c = self._clock()
        return c.get(who, 0) >= when


class installed:
    """Install a FakeClocks as the happens-before and lock listener; restore after."""

    def __enter__(self):
        self.fake = FakeClocks()
        self._old = (events._hb, events._locks)
        events.set_happens_before(self.fake)
        events.set_lock_listener(self.fake)
        return self.fake

    def __exit__(self, *exc):
        events.set_happens_before(self._old[0])
        events.set_lock_listener(self._old[1])


def spawn(fn, *args):
    """Run fn in a daemon thread; the returned thread has .error (BaseException or None)
    and .result."""

    def run():
        try:
            t.result = fn(*args)
        except BaseException as e:  # noqa: B036 - the tests inspect it
            t.error = e

    t = threading.Thread(target=run, daemon=True)
    t.error = None
    t.result = None
    t.start()
    return t


def finish(t):
    t.join(WAIT)
    assert not t.is_alive(), "thread did not finish"
    return t


def wait_until(pred, what="condition"):
    # Polling a state until it holds (never a sleep standing in for an ordering).
    deadline = time.monotonic() + WAIT
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.0005)


def wait_blocked(t, what, obj=None):
    def pred():
        info = events.blocked_threads().get(t.ident)
        return info is not None and info.what == what and (obj is None or info.obj is obj)

    wait_until(pred, f"{t.name} blocked in {what}")
    return events.blocked_threads()[t.ident]


_PARKING_LINES = {"got = waiter.acquire()", "parked.acquire()"}


def wait_parked(t):
    """Until thread ``t`` (already registered as blocked) sits in the blocking acquire
    of a racecheck sleeper: from then on an asynchronous exception can reach it only
    after it is woken, at a known point."""

    def pred():
        frame = sys._current_frames().get(t.ident)
        if frame is None:
            return False
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
        return "/racecheck/" in frame.f_code.co_filename and line.strip() in _PARKING_LINES

    wait_until(pred, f"{t.name} parked")


def async_raise(t, exc=KeyboardInterrupt):
    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident), ctypes.py_object(exc))
    assert n == 1


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
