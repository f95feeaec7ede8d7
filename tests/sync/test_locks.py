"""Mutex, RWMutex and Cond: Go semantics, misuse errors, happens-before contract,
asynchronous-exception safety and stress.  Interleavings are forced with events and the
blocked-thread registry; no sleep stands in for an ordering."""

from __future__ import annotations

import sys
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

from racecheck.errors import MisuseError, UnlockError
from racecheck.sync import events
from racecheck.sync.locks import Cond, Mutex, RWMutex

# ---- Mutex ------------------------------------------------------------------------------


def test_mutex_lock_unlock_and_try_lock():
    m = Mutex()
    assert m.try_lock()
    assert not m.try_lock()
    m.unlock()
    with m:
        assert m.locked()
        assert not m.try_lock()
    assert not m.locked()
    m.lock()
    m.unlock()


def test_mutex_unlock_of_unlocked_raises_gos_words():
    m = Mutex()
    with pytest.raises(UnlockError, match=r"^sync: unlock of unlocked mutex") as info:
        m.unlock()
    assert isinstance(info.value, MisuseError)
    m.lock()
    m.unlock()
    with pytest.raises(UnlockError):
        m.unlock()


def test_mutex_may_be_unlocked_by_another_thread():
    m = Mutex()
    m.lock()
    finish(spawn(m.unlock))
    assert m.try_lock()
    m.unlock()


def test_mutex_blocked_lock_is_registered_and_proceeds_after_unlock():
    m, made_at = Mutex(), sys._getframe().f_lineno
    m.lock()
    got = threading.Event()

    def locker():
        m.lock()
        got.set()
        m.unlock()

    t = spawn(locker)
    info = wait_blocked(t, "Mutex.lock", m)
    assert info.created_at[0] == (__file__, made_at, sys._getframe().f_code.co_name)
    assert not got.is_set()
    m.unlock()
    assert got.wait(WAIT)
    assert finish(t).error is None
    assert t.ident not in events.blocked_threads()
    assert not m.locked()


def test_mutex_async_exception_in_blocked_lock_leaves_it_free_and_passes_the_wakeup():
    m = Mutex()
    m.lock()
    b = spawn(m.lock)
    wait_blocked(b, "Mutex.lock")
    wait_parked(b)
    c_got = threading.Event()

    def c_locker():
        m.lock()
        c_got.set()

    c = spawn(c_locker)
    wait_blocked(c, "Mutex.lock")
    wait_parked(c)
    async_raise(b)
    m.unlock()  # wakes b (first in line), which is interrupted and must pass it on to c
    assert isinstance(finish(b).error, KeyboardInterrupt)
    assert c_got.wait(WAIT)
    finish(c)
    assert m.locked()  # held by c, exactly once
    m.unlock()
    assert m.try_lock()
    m.unlock()
    with pytest.raises(UnlockError):
        m.unlock()


def test_mutex_happens_before_unlock_to_next_lock_and_lock_events():
    m = Mutex()
    with installed() as fake:
        marks = {}

        def first():
            m.lock()
            marks["a"] = fake.mark()
            m.unlock()

        finish(spawn(first))

        def second():
            m.lock()
            ok = fake.ordered_after(marks["a"])
            m.unlock()
            return ok

        assert finish(spawn(second)).result is True

        def unsynchronised():
            return fake.ordered_after(marks["a"])

        assert finish(spawn(unsynchronised)).result is False  # the fake is not vacuous

        def user_code():
            m.lock()
            m.unlock()
            assert m.try_lock()
            m.unlock()
            with m:
                pass

        fake.lock_events.clear()
        user_code()
        assert fake.lock_events == [
            ("acquired", m, True, "user_code"),
            ("released", m),
            ("acquired", m, False, "user_code"),
            ("released", m),
            ("acquired", m, True, "user_code"),
            ("released", m),
        ]


def test_mutex_stress_mutual_exclusion():
    m = Mutex()
    state = {"inside": 0, "count": 0, "violations": 0}
    threads, iterations = 8, 2000

    def worker():
        for _ in range(iterations):
            with m:
                state["inside"] += 1
                if state["inside"] != 1:
                    state["violations"] += 1
                state["count"] += 1
                state["inside"] -= 1

    ts = [spawn(worker) for _ in range(threads)]
    for t in ts:
        assert finish(t).error is None
    assert state == {"inside": 0, "count": threads * iterations, "violations": 0}
    assert not m.locked()


# ---- RWMutex ----------------------------------------------------------------------------


def test_rwmutex_readers_share_writers_exclude():
    rw = RWMutex()
    both_in = threading.Barrier(2, timeout=WAIT)

    def reader():
        with rw.rlocker():
            both_in.wait()  # only passes if two readers hold the lock at once

    r1, r2 = spawn(reader), spawn(reader)
    assert finish(r1).error is None and finish(r2).error is None
    with rw:
        assert not rw.try_rlock()
        assert not rw.try_lock()
    assert rw.try_rlock()
    assert not rw.try_lock()
    rw.runlock()
    assert rw.try_lock()
    rw.unlock()


def test_rwmutex_misuse_errors():
    rw = RWMutex()
    with pytest.raises(UnlockError, match=r"^sync: RUnlock of unlocked RWMutex"):
        rw.runlock()
    with pytest.raises(UnlockError, match=r"^sync: Unlock of unlocked RWMutex"):
        rw.unlock()
    rw.rlock()
    with pytest.raises(UnlockError, match=r"^sync: Unlock of unlocked RWMutex"):
        rw.unlock()
    rw.runlock()
    rw.lock()
    with pytest.raises(UnlockError, match=r"^sync: RUnlock of unlocked RWMutex"):
        rw.runlock()
    rw.unlock()


def test_rwmutex_writer_preference_blocks_new_readers():
    rw = RWMutex()
    rw.rlock()  # reader 1 (this thread)
    w_in = threading.Event()
    w_release = threading.Event()

    def writer():
        rw.lock()
        w_in.set()
        assert w_release.wait(WAIT)
        rw.unlock()

    w = spawn(writer)
    wait_blocked(w, "RWMutex.lock", rw)
    assert not rw.try_rlock()  # a waiting writer keeps new readers out
    r2_in = threading.Event()

    def reader2():
        rw.rlock()
        r2_in.set()
        rw.runlock()

    r2 = spawn(reader2)
    wait_blocked(r2, "RWMutex.rlock", rw)
    assert not w_in.is_set()
    rw.runlock()  # the last reader leaves: the writer goes first
    assert w_in.wait(WAIT)
    assert r2.ident in events.blocked_threads()
    assert not r2_in.is_set()
    w_release.set()
    assert r2_in.wait(WAIT)
    assert finish(w).error is None and finish(r2).error is None


def test_rwmutex_waiting_readers_go_before_the_next_writer():
    rw = RWMutex()
    rw.lock()
    r_in, r_release, w2_in = threading.Event(), threading.Event(), threading.Event()

    def reader():
        rw.rlock()
        r_in.set()
        assert r_release.wait(WAIT)
        rw.runlock()

    def writer2():
        rw.lock()
        w2_in.set()
        rw.unlock()

    r = spawn(reader)
    wait_blocked(r, "RWMutex.rlock")
    w2 = spawn(writer2)
    wait_blocked(w2, "RWMutex.lock")
    rw.unlock()
    assert r_in.wait(WAIT)  # admitted although a writer was waiting
    assert not w2_in.is_set()
    r_release.set()
    assert w2_in.wait(WAIT)
    assert finish(r).error is None and finish(w2).error is None


def test_rwmutex_happens_before_edges():
    rw = RWMutex()
    with installed() as fake:
        marks = {}

        def write_then_unlock():
            with rw:
                marks["w"] = fake.mark()

        def read_then_runlock():
            with rw.rlocker():
                marks["r"] = fake.mark()

        def rlock_sees(key):
            with rw.rlocker():
                return fake.ordered_after(marks[key])

        def lock_sees(key):
            with rw:
                return fake.ordered_after(marks[key])

        finish(spawn(write_then_unlock))
        assert finish(spawn(rlock_sees, "w")).result is True  # Unlock -> RLock
        finish(spawn(read_then_runlock))
        assert finish(spawn(rlock_sees, "r")).result is False  # readers don't order readers
        assert finish(spawn(lock_sees, "r")).result is True  # RUnlock -> Lock
        assert finish(spawn(lock_sees, "w")).result is True


def test_rwmutex_async_exception_in_waiting_writer_admits_the_readers_it_held_back():
    rw = RWMutex()
    rw.rlock()
    w = spawn(rw.lock)
    wait_blocked(w, "RWMutex.lock")
    r2_in = threading.Event()

    def reader2():
        rw.rlock()
        r2_in.set()

    r2 = spawn(reader2)
    wait_blocked(r2, "RWMutex.rlock")
    wait_parked(w)
    async_raise(w)
    rw.runlock()  # wakes the writer, which is interrupted and must let reader2 in
    assert isinstance(finish(w).error, KeyboardInterrupt)
    assert r2_in.wait(WAIT)
    finish(r2)
    rw.runlock()  # reader2's
    assert rw.try_lock()  # nothing left held
    rw.unlock()


def test_rwmutex_async_exception_in_admitted_reader_gives_the_read_lock_back():
    rw = RWMutex()
    rw.lock()
    r = spawn(rw.rlock)
    wait_blocked(r, "RWMutex.rlock")
    wait_parked(r)
    async_raise(r)
    rw.unlock()  # admits r, which is interrupted
    assert isinstance(finish(r).error, KeyboardInterrupt)
    assert rw.try_lock()
    rw.unlock()


def test_rwmutex_stress_invariants():
    rw = RWMutex()
    lock = threading.Lock()
    state = {"readers": 0, "writers": 0, "violations": 0, "writes": 0}

    def enter(kind):
        with lock:
            state[kind] += 1
            if state["writers"] > 1 or (state["writers"] and state["readers"]):
                state["violations"] += 1

    def leave(kind):
        with lock:
            state[kind] -= 1

    def writer():
        for _ in range(300):
            with rw:
                enter("writers")
                state["writes"] += 1
                leave("writers")

    def reader():
        for _ in range(600):
            with rw.rlocker():
                enter("readers")
                leave("readers")

    ts = [spawn(writer) for _ in range(3)] + [spawn(reader) for _ in range(5)]
    for t in ts:
        assert finish(t).error is None
    assert state == {"readers": 0, "writers": 0, "violations": 0, "writes": 900}
    assert rw.try_lock()
    rw.unlock()


# ---- Cond -------------------------------------------------------------------------------


def test_cond_wait_signal_relocks():
    m = Mutex()
    c = Cond(m)
    ready = []

    def waiter():
        with m:
            while not ready:
                c.wait()
            return m.locked()

    t = spawn(waiter)
    wait_blocked(t, "Cond.wait", c)
    with m:
        ready.append(True)
        c.signal()
    assert finish(t).result is True
    assert not m.locked()


def test_cond_signal_wakes_one_broadcast_wakes_all():
    m = Mutex()
    c = Cond(m)
    woke = []

    def waiter(i):
        with m:
            c.wait()
            woke.append(i)

    ts = [spawn(waiter, i) for i in range(3)]
    for t in ts:
        wait_blocked(t, "Cond.wait")
    c.signal()  # wakes the longest waiter only
    assert finish(ts[0]).error is None
    assert woke == [0]
    assert ts[1].ident in events.blocked_threads() and ts[2].ident in events.blocked_threads()
    c.broadcast()
    for t in ts[1:]:
        assert finish(t).error is None
    assert sorted(woke) == [0, 1, 2]
    c.signal()  # nobody waits: a no-op, not remembered
    c.broadcast()


def test_cond_wait_without_the_lock_raises_and_leaves_no_stale_waiter():
    m = Mutex()
    c = Cond(m)
    with pytest.raises(UnlockError):
        c.wait()
    t = spawn(lambda: (m.lock(), c.wait(), m.unlock()))
    wait_blocked(t, "Cond.wait")
    c.signal()  # must reach t, not the failed wait's ticket
    assert finish(t).error is None


def test_cond_with_read_locker():
    rw = RWMutex()
    c = Cond(rw.rlocker())
    t = spawn(lambda: (rw.rlock(), c.wait(), rw.runlock()))
    wait_blocked(t, "Cond.wait")
    assert rw.try_lock()  # the waiter released its read lock while waiting
    rw.unlock()
    c.signal()
    assert finish(t).error is None
    assert rw.try_lock()
    rw.unlock()


def test_cond_async_exception_passes_the_signal_on_and_relocks():
    m = Mutex()
    c = Cond(m)
    held_after = []

    def interrupted():
        m.lock()
        try:
            c.wait()
        finally:
            held_after.append(m.locked())
            m.unlock()

    a = spawn(interrupted)
    wait_blocked(a, "Cond.wait")
    wait_parked(a)
    b_woke = threading.Event()

    def other():
        with m:
            c.wait()
            b_woke.set()

    b = spawn(other)
    wait_blocked(b, "Cond.wait")
    async_raise(a)
    c.signal()  # goes to a, which is interrupted and must pass it to b
    assert isinstance(finish(a).error, KeyboardInterrupt)
    assert held_after == [True]
    assert b_woke.wait(WAIT)
    assert finish(b).error is None
    assert not m.locked()


def test_cond_stress_producer_consumer():
    m = Mutex()
    not_empty, not_full = Cond(m), Cond(m)
    buf, got = [], []
    n, cap = 3000, 4

    def producer():
        for i in range(n):
            with m:
                while len(buf) >= cap:
                    not_full.wait()
                buf.append(i)
                not_empty.signal()

    def consumer():
        for _ in range(n):
            with m:
                while not buf:
                    not_empty.wait()
                got.append(buf.pop(0))
                not_full.signal()

    p, q = spawn(producer), spawn(consumer)
    assert finish(p).error is None and finish(q).error is None
    assert got == list(range(n))
