"""AtomicInt, AtomicBool, AtomicRef: Go semantics, the release/acquire contract (a failed
compare_and_swap still reads), and stress with checked invariants."""

from __future__ import annotations

import ctypes
import linecache
import sys
import threading
import time

from racecheck.sync import events
from racecheck.sync.atomic import AtomicBool, AtomicInt, AtomicRef

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


def test_atomic_int_operations():
    a = AtomicInt()
    assert a.load() == 0
    a.store(5)
    assert a.add(3) == 8  # returns the new value, like Go
    assert a.add(-10) == -2
    assert a.swap(7) == -2  # returns the old value
    assert not a.compare_and_swap(6, 1)
    assert a.load() == 7
    assert a.compare_and_swap(7, 1)
    assert a.load() == 1
    assert repr(AtomicInt(4)) == "AtomicInt(4)"


def test_atomic_bool_operations():
    b = AtomicBool()
    assert b.load() is False
    assert b.swap(True) is False
    assert b.load() is True
    assert not b.compare_and_swap(False, False)
    assert b.compare_and_swap(True, False)
    b.store(True)
    assert AtomicBool(True).load() is True


def test_atomic_ref_compares_by_identity():
    first, equal_twin = [1], [1]
    r: AtomicRef[list[int]] = AtomicRef()
    assert r.load() is None
    r.store(first)
    assert r.load() is first
    assert not r.compare_and_swap(equal_twin, [2])  # equal but not the same object
    assert r.load() is first
    assert r.compare_and_swap(first, equal_twin)
    assert r.swap(None) is equal_twin
    assert r.load() is None


def _edges(fake, write, read):
    """Whether ``write`` in one thread, then ``read`` in another, orders a mark made
    before the write before the reader's present."""
    marks = []

    def writer():
        marks.append(fake.mark())
        write()

    finish(spawn(writer))
    return finish(spawn(lambda: (read(), fake.ordered_after(marks[0]))[1])).result


def test_writes_release_and_reads_acquire():
    with installed() as fake:
        a = AtomicInt()
        assert _edges(fake, lambda: a.store(1), a.load)
        assert _edges(fake, lambda: a.add(1), a.load)
        assert _edges(fake, lambda: a.swap(9), a.load)
        assert _edges(fake, lambda: a.compare_and_swap(9, 10), a.load)
        assert _edges(fake, lambda: a.store(1), lambda: a.compare_and_swap(99, 0))  # failed
        assert _edges(fake, lambda: a.store(2), lambda: a.add(0))
        assert _edges(fake, lambda: a.store(3), lambda: a.swap(3))
        # a failed compare_and_swap writes nothing: it releases nothing
        assert not _edges(fake, lambda: a.compare_and_swap(99, 0), a.load)
        # a store only writes: no edge into the storing thread
        assert not _edges(fake, lambda: a.store(4), lambda: a.store(5))
        b = AtomicBool()
        assert _edges(fake, lambda: b.store(True), b.load)
        assert _edges(fake, lambda: b.swap(False), lambda: b.compare_and_swap(True, True))
        r: AtomicRef[object] = AtomicRef()
        assert _edges(fake, lambda: r.store(object()), r.load)
        assert not _edges(fake, lambda: r.compare_and_swap(object(), None), r.load)


def test_stress_add_and_cas_counters():
    counter, cas_counter, flag_flips = AtomicInt(), AtomicInt(), AtomicInt()
    flag = AtomicBool()
    threads, iterations = 8, 2000

    def worker():
        for _ in range(iterations):
            counter.add(1)
            while True:
                seen = cas_counter.load()
                if cas_counter.compare_and_swap(seen, seen + 1):
                    break
            if flag.compare_and_swap(False, True):
                flag_flips.add(1)
                assert flag.swap(False) is True

    ts = [spawn(worker) for _ in range(threads)]
    for t in ts:
        assert finish(t).error is None
    assert counter.load() == threads * iterations
    assert cas_counter.load() == threads * iterations
    assert flag.load() is False and flag_flips.load() >= 1


def test_stress_ref_handoff_each_object_taken_once():
    slot: AtomicRef[int] = AtomicRef()
    taken = []
    n = 500

    def producer():
        for i in range(n):
            while not slot.compare_and_swap(None, i):
                time.sleep(0)  # a yield so the spinning is cheap; not synchronisation

    def consumer():
        while len(taken) < n:
            v = slot.swap(None)
            if v is None:
                time.sleep(0)
            else:
                taken.append(v)

    p, c = spawn(producer), spawn(consumer)
    assert finish(p).error is None and finish(c).error is None
    assert taken == list(range(n))
