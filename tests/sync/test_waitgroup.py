"""WaitGroup, Once and Semaphore: Go semantics, misuse errors, happens-before and audit
contract, asynchronous-exception safety and stress.  Interleavings are forced with events
and the blocked-thread registry; no sleep stands in for an ordering."""

from __future__ import annotations

import threading

import pytest
from sync_helpers import (  # noqa: F401
    WAIT,
    async_raise,
    finish,
    installed,
    spawn,
    wait_blocked,
    wait_parked,
)

from racecheck.errors import MisuseError, SemaphoreMisuse, WaitGroupMisuse
from racecheck.sync import events
from racecheck.sync.atomic import AtomicInt
from racecheck.sync.waitgroup import Once, Semaphore, WaitGroup


@pytest.fixture
def thread_errors(monkeypatch):
    """Capture exceptions that escape threads (instead of a printed warning)."""
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


# ---- WaitGroup --------------------------------------------------------------------------


def test_waitgroup_wait_returns_after_every_done():
    wg = WaitGroup()
    wg.wait()  # zero: returns at once
    wg.add(2)
    w = spawn(wg.wait)
    wait_blocked(w, "WaitGroup.wait", wg)
    wg.done()
    assert w.ident in events.blocked_threads()  # one left: still waiting
    wg.done()
    assert finish(w).error is None
    wg.wait()


def test_waitgroup_negative_counter_raises_and_leaves_counter_alone():
    wg = WaitGroup()
    with pytest.raises(WaitGroupMisuse, match=r"^sync: negative WaitGroup counter") as info:
        wg.done()
    assert isinstance(info.value, MisuseError)
    wg.add(1)
    with pytest.raises(WaitGroupMisuse, match="negative"):
        wg.add(-2)
    w = spawn(wg.wait)
    wait_blocked(w, "WaitGroup.wait")  # still 1: the bad add changed nothing
    wg.done()
    assert finish(w).error is None


class _HoldUnblock:
    """A BlockListener that holds a thread on its way out of a WaitGroup.wait."""

    def __init__(self):
        self.leaving = threading.Event()
        self.go_on = threading.Event()

    def blocked(self, info):
        pass

    def unblocked(self, info):
        if info.what == "WaitGroup.wait":
            self.leaving.set()
            assert self.go_on.wait(WAIT)


def test_waitgroup_reused_before_previous_wait_returned():
    wg = WaitGroup()
    wg.add(1)
    hold = _HoldUnblock()
    events.set_block_listener(hold)
    try:
        w = spawn(wg.wait)
        wait_blocked(w, "WaitGroup.wait")
        wg.done()
        assert hold.leaving.wait(WAIT)  # released, but its wait has not returned yet
        with pytest.raises(
            WaitGroupMisuse, match=r"^sync: WaitGroup is reused before previous Wait has returned"
        ):
            wg.add(1)
        hold.go_on.set()
        assert finish(w).error is None
    finally:
        events.set_block_listener(None)
    wg.add(1)  # now fine
    wg.done()
    wg.wait()


def test_waitgroup_go_runs_fn_and_is_done_even_if_it_raises(thread_errors):
    wg = WaitGroup()
    out = []
    t1 = wg.go(out.append, 1)
    t2 = wg.go(lambda: 1 / 0)
    wg.wait()
    assert out == [1]
    finish(t1), finish(t2)
    assert not t1.daemon
    assert len(thread_errors) == 1 and isinstance(thread_errors[0], ZeroDivisionError)


def test_waitgroup_happens_before_and_audits():
    wg = WaitGroup()
    with installed() as fake:
        marks = []

        def worker():
            marks.append(fake.mark())
            wg.done()

        def user_code():
            wg.add(2)  # from zero: audited
            wg.add(1)  # not from zero: not audited
            wg.done()
            finish(spawn(worker))
            finish(spawn(worker))
            wg.wait()  # blocked or not, audited
            wg.wait()
            wg.go(lambda: None)
            wg.wait()

        user_code()
        assert all(fake.ordered_after(m) for m in marks) and len(marks) == 2
        assert [a[1:] for a in fake.audits] == [
            ("mutate", "add", "user_code"),
            ("iterate", "wait", "user_code"),
            ("iterate", "wait", "user_code"),
            ("mutate", "add", "user_code"),
            ("iterate", "wait", "user_code"),
        ]
        assert all(a[0] is wg for a in fake.audits)

        late = []
        wg.add(1)
        t = spawn(lambda: (late.append(fake.mark()), wg.done()))
        finish(t)
        assert not fake.ordered_after(late[0])  # not waited for yet: no edge
        wg.wait()
        assert fake.ordered_after(late[0])


def test_waitgroup_async_exception_in_wait_keeps_the_group_usable():
    wg = WaitGroup()
    wg.add(1)
    w = spawn(wg.wait)
    wait_blocked(w, "WaitGroup.wait")
    wait_parked(w)
    async_raise(w)
    wg.done()  # releases w, which is interrupted on its way out
    assert isinstance(finish(w).error, KeyboardInterrupt)
    wg.add(1)  # not mistaken for reuse before Wait returned
    w2 = spawn(wg.wait)
    wait_blocked(w2, "WaitGroup.wait")
    wg.done()
    assert finish(w2).error is None


def test_waitgroup_stress_rounds():
    wg = WaitGroup()
    total = AtomicInt()
    for round_ in range(30):
        n = 8
        wg.add(n)
        for _ in range(n):
            spawn(lambda: (total.add(1), wg.done()))
        waiters = [spawn(wg.wait) for _ in range(3)]
        wg.wait()
        assert total.load() == (round_ + 1) * n
        for w in waiters:
            assert finish(w).error is None


# ---- Once -------------------------------------------------------------------------------


def test_once_runs_fn_once_and_concurrent_callers_wait():
    once = Once()
    calls = []
    entered, release = threading.Event(), threading.Event()

    def fn():
        calls.append(1)
        entered.set()
        assert release.wait(WAIT)

    first = spawn(once.do, fn)
    assert entered.wait(WAIT)
    second = spawn(once.do, fn)
    wait_blocked(second, "Once.do", once)
    assert not once.done()
    release.set()
    assert finish(first).error is None and finish(second).error is None
    once.do(fn)
    assert calls == [1] and once.done()


def test_once_fn_raising_is_still_done_and_only_first_caller_sees_it():
    once = Once()
    entered, release = threading.Event(), threading.Event()

    def boom():
        entered.set()
        assert release.wait(WAIT)
        raise ValueError("boom")

    first = spawn(once.do, boom)
    assert entered.wait(WAIT)
    second = spawn(once.do, boom)
    wait_blocked(second, "Once.do")
    release.set()
    assert isinstance(finish(first).error, ValueError)
    assert finish(second).error is None
    once.do(boom)  # done: not called again, no exception


def test_once_async_exception_in_waiting_caller_leaves_once_intact():
    once = Once()
    entered, release = threading.Event(), threading.Event()
    first = spawn(once.do, lambda: (entered.set(), release.wait(WAIT)))
    assert entered.wait(WAIT)
    waiter = spawn(once.do, pytest.fail)
    wait_blocked(waiter, "Once.do")
    wait_parked(waiter)
    other = spawn(once.do, pytest.fail)
    wait_blocked(other, "Once.do")
    async_raise(waiter)
    release.set()
    assert isinstance(finish(waiter).error, KeyboardInterrupt)
    assert finish(first).error is None and finish(other).error is None
    assert once.done()


def test_once_happens_before_fn_return_to_every_do():
    once = Once()
    with installed() as fake:
        marks = []
        once.do(lambda: marks.append(fake.mark()))
        assert finish(spawn(lambda: (once.do(pytest.fail), fake.ordered_after(marks[0])))).result[1]
        assert not finish(spawn(lambda: fake.ordered_after(marks[0]))).result


def test_once_stress():
    for _ in range(20):
        once = Once()
        calls = AtomicInt()
        start = threading.Barrier(12, timeout=WAIT)

        def caller(once=once, calls=calls, start=start):
            start.wait()
            once.do(lambda: calls.add(1))
            return calls.load()

        ts = [spawn(caller) for _ in range(12)]
        assert [finish(t).result for t in ts] == [1] * 12


# ---- Semaphore --------------------------------------------------------------------------


def test_semaphore_try_acquire_release_and_misuse():
    s = Semaphore(3)
    assert s.try_acquire(2)
    assert not s.try_acquire(2)
    assert s.try_acquire(1)
    s.release(3)
    with pytest.raises(SemaphoreMisuse, match=r"^semaphore: released more than held") as info:
        s.release()
    assert isinstance(info.value, MisuseError)
    s.acquire(3)
    s.release(3)


def test_semaphore_fifo_head_blocks_smaller_later_acquires():
    s = Semaphore(3)
    s.acquire(2)  # one left
    a = spawn(s.acquire, 2)
    wait_blocked(a, "Semaphore.acquire", s)
    b = spawn(s.acquire, 1)
    wait_blocked(b, "Semaphore.acquire")  # one is free, but a is first in line
    assert not s.try_acquire(1)
    s.release(1)  # two free: a's turn
    assert finish(a).error is None
    assert b.ident in events.blocked_threads()
    s.release(1)
    assert finish(b).error is None
    s.release(3)  # a's 2 and b's 1: all held weight is back
    assert s.try_acquire(3)


def test_semaphore_acquire_more_than_size_without_context_blocks_forever():
    s = Semaphore(1)
    doomed = spawn(s.acquire, 2)
    info = wait_blocked(doomed, "Semaphore.acquire", s)
    assert info.timeout is None
    s.acquire()  # the doomed acquire blocks nobody
    queued = spawn(s.acquire)
    wait_blocked(queued, "Semaphore.acquire")
    wait_parked(doomed)
    async_raise(doomed)  # the only way out, delivered at its next wake-up
    s.release()  # grants queued; the wake-up reaches doomed too, which stays doomed
    assert finish(queued).error is None
    assert isinstance(finish(doomed).error, KeyboardInterrupt)
    s.release()
    assert s.try_acquire()


def test_semaphore_happens_before_release_to_acquire():
    s = Semaphore(1)
    s.acquire()
    with installed() as fake:
        marks = []

        def releaser():
            marks.append(fake.mark())
            s.release()

        t = spawn(s.acquire)
        wait_blocked(t, "Semaphore.acquire")
        finish(spawn(releaser))
        finish(t)
        assert finish(spawn(lambda: fake.ordered_after(marks[0]))).result is False
        s.release()
        s.acquire()  # fast path, after the releases
        assert fake.ordered_after(marks[0])


def test_semaphore_async_exception_after_grant_gives_the_weight_back():
    s = Semaphore(1)
    s.acquire()
    w = spawn(s.acquire)
    wait_blocked(w, "Semaphore.acquire")
    wait_parked(w)
    async_raise(w)
    s.release()  # granted to w, which is interrupted and must hand it back
    assert isinstance(finish(w).error, KeyboardInterrupt)
    assert s.try_acquire()
    s.release()


def test_semaphore_async_exception_in_granted_head_passes_the_weight_down_the_queue():
    s = Semaphore(2)
    s.acquire(2)
    head = spawn(s.acquire, 2)
    wait_blocked(head, "Semaphore.acquire")
    wait_parked(head)
    nxt = spawn(s.acquire, 1)
    wait_blocked(nxt, "Semaphore.acquire")
    async_raise(head)
    s.release(2)  # granted to head, which is interrupted and must hand it on to nxt
    assert isinstance(finish(head).error, KeyboardInterrupt)
    assert finish(nxt).error is None
    assert not s.try_acquire(2)
    s.release(1)
    assert s.try_acquire(2)


def test_semaphore_stress_never_over_capacity():
    size = 4
    s = Semaphore(size)
    lock = threading.Lock()
    state = {"in_use": 0, "violations": 0, "rounds": 0}

    def worker(weight):
        for _ in range(300):
            s.acquire(weight)
            with lock:
                state["in_use"] += weight
                if state["in_use"] > size:
                    state["violations"] += 1
                state["rounds"] += 1
            with lock:
                state["in_use"] -= weight
            s.release(weight)

    ts = [spawn(worker, 1 + i % size) for i in range(8)]
    for t in ts:
        assert finish(t).error is None
    assert state == {"in_use": 0, "violations": 0, "rounds": 2400}
    assert s.try_acquire(size)
