"""Helpers shared by the primitives' tests: a vector-clock fake of the detector (to check
the happens-before edges for real), thread spawning with bounded joins, waiting until a
thread is registered blocked or parked (instead of sleeping), and raising an asynchronous
exception into a blocked thread."""

from __future__ import annotations

import ctypes
import linecache
import sys
import threading
import time

from racecheck.sync import events

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


def _ident(t):
    """A thread (``threading.Thread`` or ``Worker``) or its ident."""
    return t if isinstance(t, int) else t.ident


def wait_blocked(t, what, obj=None):
    """Wait until thread ``t`` (or ident) is registered as blocked in ``what``."""
    ident = _ident(t)

    def pred():
        info = events.blocked_threads().get(ident)
        return info is not None and info.what == what and (obj is None or info.obj is obj)

    wait_until(pred, f"thread {ident} blocked in {what}")
    return events.blocked_threads()[ident]


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
    """Schedule ``exc`` in thread ``t`` (or ident): raised when it next runs bytecode."""
    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(_ident(t)), ctypes.py_object(exc)
    )
    assert n == 1


class Interrupt(Exception):
    """The asynchronous exception the tests inject."""


class Worker:
    """A daemon thread running ``fn`` that records its result or exception."""

    def __init__(self, fn, name=None):
        self.result = None
        self.error = None
        self._fn = fn
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.result = self._fn()
        except BaseException as exc:  # noqa: BLE001 - recorded for the test to check
            self.error = exc

    @property
    def ident(self):
        assert self.thread.ident is not None
        return self.thread.ident

    def join(self):
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "worker still blocked"
        return self


