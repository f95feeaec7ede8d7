"""Observed locks: ``threading.Lock()``/``RLock()`` created by the user after install
report their edges however they are taken (``with`` in uninstrumented code,
``ExitStack``, explicit ``__enter__``), while the modelled modules' locks stay raw.

Threads run one after the other through ``start_raw`` (a ``_thread`` thread racecheck
cannot see, waited for with a raw signal), so only the lock under test can order them.
"""

from __future__ import annotations

import _thread
import contextlib
import importlib
import logging
import pickle
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_stdlib_vc import Signal, VCEngine, one_after_another, start_raw

from racecheck.instrument import stdlib
from racecheck.instrument.stdlib_common import RAW_LOCK_TYPES
from racecheck.instrument.stdlib_locks import ObservedLock, ObservedRLock
from racecheck.sync import events

T = 5.0

FAKELIB = '''
"""A library racecheck does not instrument: its lock guards the user's callbacks."""
import threading

class Bus:
    def __init__(self):
        self._lock = threading.Lock()
        self._subs = []

    def subscribe(self, fn):
        with self._lock:
            self._subs.append(fn)

    def publish(self, msg):
        with self._lock:
            for fn in self._subs:
                fn(msg)

class RacyBus:
    def __init__(self):
        self._lock = threading.Lock()  # made, never used
        self._subs = []

    def subscribe(self, fn):
        self._subs.append(fn)

    def publish(self, msg):
        for fn in self._subs:
            fn(msg)

def stack_enter(lock, fn):
    import contextlib
    with contextlib.ExitStack() as stack:
        stack.enter_context(lock)
        fn()

def explicit_enter(lock, fn):
    lock.__enter__()
    try:
        fn()
    finally:
        lock.__exit__(None, None, None)

def make_lock():
    return threading.Lock()

def make_rlock():
    return threading.RLock()
'''


@pytest.fixture(scope="module")
def fakelib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The library, imported plainly (no import hook is installed: not instrumented)."""
    folder: Path = tmp_path_factory.mktemp("fakesite")
    (folder / "rc_fakelib.py").write_text(FAKELIB)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("rc_fakelib")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("rc_fakelib", None)




# --- the reviewer's repro, against the real detector ----------------------------------

detector_mod = pytest.importorskip("racecheck.engine.detector")


@pytest.fixture
def det() -> Iterator[Any]:
    d = detector_mod.Detector()
    events.set_happens_before(d)
    stdlib.install(d)
    yield d
    stdlib.uninstall()
    events.set_happens_before(None)


class Box:
    value = 0


def _bump(d: Any, box: Box) -> None:
    d.read_attr(box, "value", sys._getframe(1))
    d.write_attr(box, "value", sys._getframe(1))
    box.value += 1


@pytest.mark.parametrize(("bus", "races"), [("Bus", 0), ("RacyBus", 1)])
def test_callbacks_under_a_library_with_lock(det: Any, fakelib: Any, bus: str, races: int) -> None:
    box = Box()
    b = getattr(fakelib, bus)()  # made after install: its lock is observed
    b.subscribe(lambda msg: _bump(det, box))
    one_after_another(*(lambda: [b.publish(i) for i in range(3)] for _ in range(3)))
    assert box.value == 9
    assert len(det.races()) == races


class CountingHandler(logging.Handler):
    def __init__(self, det: Any) -> None:
        super().__init__()
        self.det = det
        self.box = Box()

    def emit(self, record: logging.LogRecord) -> None:
        _bump(self.det, self.box)  # state guarded only by Handler.handle's lock


def test_stateful_logging_handler_is_not_racy(det: Any) -> None:
    handler = CountingHandler(det)  # created after install: Handler.createLock is observed
    assert type(handler.lock) is ObservedRLock
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "m", None, None)
    one_after_another(*(lambda: handler.handle(record) for _ in range(3)))
    assert handler.box.value == 3
    assert det.races() == []


# --- every way of taking an observed lock orders the threads ----------------------------


@pytest.mark.parametrize("how", ["stack_enter", "explicit_enter"])
@pytest.mark.parametrize("maker", ["make_lock", "make_rlock"])
def test_exit_stack_and_explicit_enter(eng: VCEngine, fakelib: Any, how: str, maker: str) -> None:
    lock = getattr(fakelib, maker)()
    take = getattr(fakelib, how)
    one_after_another(
        lambda: take(lock, lambda: eng.mark("a")), lambda: take(lock, lambda: eng.mark("b"))
    )
    assert eng.hb("a", "b")


@pytest.mark.parametrize("maker", ["make_lock", "make_rlock"])
def test_different_locks_add_no_edge(eng: VCEngine, fakelib: Any, maker: str) -> None:
    x, y = getattr(fakelib, maker)(), getattr(fakelib, maker)()
    one_after_another(
        lambda: fakelib.explicit_enter(x, lambda: eng.mark("a")),
        lambda: fakelib.explicit_enter(y, lambda: eng.mark("b")),
    )
    assert eng.concurrent("a", "b")


def test_acquire_release_and_release_by_another_thread(eng: VCEngine) -> None:
    lock = threading.Lock()
    assert type(lock) is ObservedLock

    def first() -> None:
        assert lock.acquire(True, T)
        eng.mark("a")
        lock.release()

    def second() -> None:
        assert lock.acquire()
        eng.mark("b")

    def releaser() -> None:
        eng.mark("c")
        lock.release()  # a Lock may be released by a thread that does not hold it

    def third() -> None:
        with lock:
            eng.mark("d")

    one_after_another(first, second, releaser, third)
    assert eng.hb("a", "b")
    assert eng.hb("c", "d")


def test_failed_try_acquire_adds_no_edge(eng: VCEngine) -> None:
    lock = threading.Lock()
    held, done = Signal(), Signal()

    def holder() -> None:
        with lock:
            eng.mark("holder")
            held.set()
            done.wait(T)

    finished = start_raw(holder)
    held.wait(T)
    assert lock.acquire(False) is False
    assert lock.acquire(True, 0.01) is False
    eng.mark("tried")
    done.set()
    finished.wait(T)
    assert eng.concurrent("holder", "tried")


def test_release_of_an_unlocked_lock_raises_and_publishes_nothing(eng: VCEngine) -> None:
    lock, rlock = threading.Lock(), threading.RLock()
    one_after_another(lambda: eng.mark("a"))
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(RuntimeError):
        rlock.release()

    def later() -> None:
        with lock, rlock:
            eng.mark("b")

    one_after_another(later)
    assert eng.concurrent("a", "b")


def test_rlock_recursion(eng: VCEngine) -> None:
    rlock = threading.RLock()

    def nested() -> None:
        with rlock:
            with rlock:
                eng.mark("inner")
            eng.mark("outer")

    def after() -> None:
        assert rlock.acquire()
        eng.mark("after")
        rlock.release()

    one_after_another(nested, after)
    assert eng.hb("inner", "after") and eng.hb("outer", "after")
    assert not rlock._is_owned()


# --- Condition over an observed lock ----------------------------------------------------


@pytest.mark.parametrize("make", ["Lock", "RLock"])
def test_condition_over_observed_lock(eng: VCEngine, make: str) -> None:
    lock = getattr(threading, make)()
    assert type(lock) in (ObservedLock, ObservedRLock)
    cond = threading.Condition(lock)
    state = {"ready": False}
    waiting = Signal()

    def waiter() -> None:
        with cond:
            waiting.set()
            assert cond.wait_for(lambda: state["ready"], T)
            eng.mark("woken")

    done = start_raw(waiter)
    waiting.wait(T)
    with cond:  # the waiter is inside wait(): the lock was released for us
        eng.mark("notifier")
        state["ready"] = True
        cond.notify()
    eng.mark("after-notify")
    done.wait(T)
    assert eng.hb("notifier", "woken")
    assert eng.concurrent("after-notify", "woken")
    assert not lock.locked() if make == "Lock" else not lock._is_owned()


def test_condition_wait_releases_the_observed_rlock_at_every_level(eng: VCEngine) -> None:
    cond = threading.Condition(threading.RLock())
    waiting = Signal()

    def waiter() -> None:
        with cond, cond:  # held twice: wait() must release both levels
            waiting.set()
            assert cond.wait(T)
            eng.mark("woken")
            assert cond._is_owned()

    done = start_raw(waiter)
    waiting.wait(T)
    with cond:
        eng.mark("notifier")
        cond.notify()
    done.wait(T)
    assert eng.hb("notifier", "woken")


# --- the modelled modules keep raw locks: no edge from their internals ------------------


def test_internal_creators_get_raw_locks(eng: VCEngine) -> None:
    raw_lock, raw_rlock = RAW_LOCK_TYPES
    q: queue.Queue[int] = queue.Queue()
    assert type(q.mutex) is raw_lock
    assert type(threading.Condition()._lock) is raw_rlock  # RLock() called by threading
    assert type(threading.Event()._cond._lock) is raw_lock
    ns: dict[str, Any] = {"threading": threading}
    exec(compile("l = threading.Lock(); r = threading.RLock()", threading.__file__, "exec"), ns)
    assert type(ns["l"]) is raw_lock and type(ns["r"]) is raw_rlock
    assert type(threading.Lock()) is ObservedLock
    assert type(threading.RLock()) is ObservedRLock


def test_queue_internal_lock_adds_no_edge(eng: VCEngine) -> None:
    q: queue.Queue[int] = queue.Queue()
    q.put(1)

    def a() -> None:
        eng.mark("a")
        q.qsize()  # takes q.mutex: must order nothing

    def b() -> None:
        q.qsize()
        eng.mark("b")

    one_after_another(a, b)
    assert eng.concurrent("a", "b")


# --- lock order ---------------------------------------------------------------------------


class LockEvents:
    def __init__(self) -> None:
        self.seen: list[tuple[str, object, bool | None]] = []

    def lock_acquired(self, lock: object, blocking: bool, depth: int) -> None:
        self.seen.append(("acquired", lock, blocking))

    def lock_released(self, lock: object) -> None:
        self.seen.append(("released", lock, None))


@pytest.fixture
def lock_events(eng: VCEngine) -> Iterator[LockEvents]:
    listener = LockEvents()
    events.set_lock_listener(listener)
    yield listener
    events.set_lock_listener(None)


def test_lock_events_with_blocking_flag(lock_events: LockEvents, fakelib: Any) -> None:
    lock, rlock = threading.Lock(), threading.RLock()
    assert lock.acquire(False)
    lock.release()
    fakelib.explicit_enter(rlock, lambda: None)
    assert lock.acquire(blocking=True, timeout=T)
    lock.release()
    assert lock_events.seen == [
        ("acquired", lock, False),
        ("released", lock, None),
        ("acquired", rlock, True),
        ("released", rlock, None),
        ("acquired", lock, True),
        ("released", lock, None),
    ]


def test_lock_order_inversion_reported_for_observed_locks(eng: VCEngine, fakelib: Any) -> None:
    from racecheck.liveness.lockorder import LockOrderChecker

    checker = LockOrderChecker()
    events.set_lock_listener(checker)
    try:
        a, b = fakelib.make_lock(), fakelib.make_rlock()

        def ab() -> None:
            with a, b:
                pass

        def ba() -> None:
            with b:
                fakelib.explicit_enter(a, lambda: None)

        def ba_try() -> None:
            with b:
                assert a.acquire(False)
                a.release()

        one_after_another(ab, ba_try)
        assert checker.findings == []  # a try-acquire cannot deadlock
        one_after_another(ba)
        (finding,) = checker.findings
        text = repr(finding)
        assert hex(id(a)) in text and hex(id(b)) in text
    finally:
        events.set_lock_listener(None)


# --- fidelity ----------------------------------------------------------------------------


def test_wrappers_behave_like_the_real_locks(eng: VCEngine) -> None:
    lock, rlock = threading.Lock(), threading.RLock()
    assert repr(lock) == f"<unlocked _thread.lock object at {id(lock):#x}>"
    with lock:
        assert lock.locked()
        assert repr(lock).startswith("<locked _thread.lock object at ")
    assert not lock.locked()
    assert "_thread.RLock object owner=0 count=0" in repr(rlock)
    for obj in (lock, rlock):
        with pytest.raises(TypeError, match="cannot pickle"):
            pickle.dumps(obj)
    assert not hasattr(lock, "_release_save")  # so Condition uses its own, as for Lock
    assert hasattr(rlock, "_release_save") and hasattr(rlock, "_is_owned")
    lock.acquire()
    lock._at_fork_reinit()
    assert not lock.locked()
    rlock.acquire()
    rlock._at_fork_reinit()
    assert not rlock._is_owned()
    assert isinstance(lock, threading.Lock) and isinstance(_thread.allocate_lock(), threading.Lock)
    assert lock.acquire_lock() and (lock.release_lock() is None)
    with pytest.raises(ValueError):
        lock.acquire(False, 1)  # same argument checks as the C lock


@pytest.mark.skipif(sys.version_info < (3, 13), reason="threading.Lock is a type on 3.13+")
def test_lock_type_still_usable_in_annotations(eng: VCEngine) -> None:
    assert (threading.Lock | None) == (_thread.LockType | None)


def test_uninstall_restores_the_factories() -> None:
    lock_factory, rlock_factory = threading.Lock, threading.RLock
    engine = VCEngine()
    stdlib.install(engine)
    try:
        assert threading.Lock is not lock_factory
        assert threading.RLock.__name__ == "RLock" and threading.RLock.__module__ == "threading"
        made = threading.Lock()
    finally:
        stdlib.uninstall()
    assert threading.Lock is lock_factory and threading.RLock is rlock_factory
    assert type(threading.Lock()) is RAW_LOCK_TYPES[0]
    with made:  # wrappers made during the session keep working
        assert made.locked()


def test_handler_lock_survives_fork_reinit(eng: VCEngine) -> None:
    handler = logging.Handler()
    handler.acquire()
    handler._at_fork_reinit()  # what logging does in a forked child
    assert handler.lock.acquire(False)
    handler.release()
    with contextlib.suppress(Exception):
        handler.close()


# -- contended acquisition (no lock convoy) ----------------------------------------------


def _spy_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    from racecheck.instrument import stdlib_locks

    calls: list[float] = []
    real = stdlib_locks._sleep

    def spy(delay: float) -> None:
        calls.append(delay)
        real(delay)

    monkeypatch.setattr(stdlib_locks, "_sleep", spy)
    return calls


@pytest.mark.parametrize("how", ["with", "acquire"])
def test_contended_acquire_waits_for_the_holder(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Held by another thread: the waiter backs off, then blocks, and gets the lock as
    soon as it is released, however long it was held."""
    from racecheck.instrument.stdlib_locks import ObservedLock

    sleeps = _spy_sleep(monkeypatch)
    lock = ObservedLock(_thread.allocate_lock())
    got = threading.Event()
    done = threading.Event()

    def waiter() -> None:
        if how == "with":
            with lock:
                got.set()
                done.wait(5)
        else:
            assert lock.acquire()
            got.set()
            done.wait(5)
            lock.release()

    assert lock.acquire()
    t = threading.Thread(target=waiter)
    t.start()
    assert not got.wait(0.05)  # always true: the lock is held throughout
    lock.release()
    assert got.wait(5)
    assert lock.locked()
    assert not lock.acquire(False)  # the waiter holds it now
    done.set()
    t.join(5)
    assert not lock.locked()
    if _GIL_BUILD:
        assert sleeps[:3] == [0.0, 0.0, 0.0]  # it yielded before blocking


def test_contended_lock_still_excludes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four threads incrementing under the lock: no update is lost."""
    from racecheck.instrument.stdlib_locks import ObservedLock

    lock = ObservedLock(_thread.allocate_lock())
    box = [0]
    start = threading.Barrier(4)

    def bump() -> None:
        start.wait(5)
        for _ in range(2000):
            with lock:
                value = box[0]
                box[0] = value + 1

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert box[0] == 8000


def test_timeouts_and_non_blocking_keep_the_raw_semantics() -> None:
    from racecheck.instrument.stdlib_locks import ObservedLock

    lock = ObservedLock(_thread.allocate_lock())
    assert lock.acquire()
    assert lock.acquire(True, 0.01) is False
    assert lock.acquire(False) is False
    with pytest.raises(ValueError):
        lock.acquire(False, 1.0)
    lock.release()


_GIL_BUILD = bool(getattr(sys, "_is_gil_enabled", lambda: True)())
