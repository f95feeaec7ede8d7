"""AtomicInt, AtomicBool, AtomicRef: Go semantics, the release/acquire contract (a failed
compare_and_swap still reads), and stress with checked invariants."""

from __future__ import annotations

import time

from sync_helpers import (  # noqa: F401
    finish,
    installed,
    spawn,
)

from racecheck.sync.atomic import AtomicBool, AtomicInt, AtomicRef


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
