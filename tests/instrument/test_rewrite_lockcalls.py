"""Explicit raw-lock method calls in rewritten code (``lock.acquire()``, ``release()``,
``acquire_lock``/``release_lock``, ``__enter__``/``__exit__``) go through ``__rc__.lc``,
which reports the lock's edges itself: no sync backend (profiler) is running in these
tests unless one says so.

Threads run through ``start_raw`` (a ``_thread`` thread racecheck cannot see, waited for
with a raw signal in uninstrumented test code), so only the lock under test can order
them.  Each scenario runs in both orders.
"""

from __future__ import annotations

import _thread
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_stdlib_vc import Signal, VCEngine, one_after_another, start_raw

from racecheck.instrument import hooks, stdlib
from racecheck.sync import events

T = 5.0

detector_mod = pytest.importorskip("racecheck.engine.detector")

SOURCE = """\
def plain(lock, shared, key):
    lock.acquire()
    try:
        shared[key] = shared.get(key, 0) + 1
    finally:
        lock.release()

def timed(lock, shared, key):
    assert lock.acquire(True, 5)
    shared[key] = shared.get(key, 0) + 1
    lock.release()

def keyword(lock, shared, key):
    if lock.acquire(blocking=True, timeout=5):
        shared[key] = shared.get(key, 0) + 1
        lock.release()

def aliases(lock, shared, key):
    lock.acquire_lock()
    shared[key] = shared.get(key, 0) + 1
    lock.release_lock()

def dunders(lock, shared, key):
    lock.__enter__()
    try:
        shared[key] = shared.get(key, 0) + 1
    finally:
        lock.__exit__(None, None, None)

def try_lock(lock, shared, key):
    while not lock.acquire(False):
        pass
    shared[key] = shared.get(key, 0) + 1
    lock.release()

def unlocked(lock, shared, key):
    shared[key] = shared.get(key, 0) + 1

def attempt(lock, blocking, timeout):
    if blocking:
        return lock.acquire(True, timeout)
    return lock.acquire(False)

def take(lock):
    return lock.acquire()

def give(lock):
    lock.release()

def load_only(obj):
    return obj.acquire

def call(obj, *args):
    return obj.acquire(*args)

def release_it(obj):
    return obj.release()

def enter_exit(obj):
    with_value = obj.__enter__()
    return with_value, obj.__exit__(None, None, None)

def broken_release(lock):
    x = 1
    lock.release()  # not held
    return x

def missing(obj):
    return obj.acquire()
"""

FORMS = ["plain", "timed", "keyword", "dunders", "try_lock"]
if hasattr(_thread.allocate_lock(), "acquire_lock"):  # removed in 3.13
    FORMS.append("aliases")


def _line_of(text: str) -> int:
    """The line number of ``text`` in SOURCE (must occur once)."""
    lines = [i for i, line in enumerate(SOURCE.splitlines(), 1) if text in line]
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def m(load: Callable[..., Any]) -> Any:
    return load(SOURCE, "rc_lockcalls")


@pytest.fixture
def det() -> Iterator[Any]:
    """The real engine, fed by the rewritten code's hooks and the stdlib edges; no
    backend is started."""
    d = detector_mod.Detector()
    events.set_happens_before(d)
    stdlib.install(d)
    hooks.install(d)
    yield d
    hooks.uninstall()
    stdlib.uninstall()
    events.set_happens_before(None)




def make(kind: str) -> Any:
    return _thread.allocate_lock() if kind == "lock" else _thread.RLock()


def test_lock_types_and_names_match_the_backends() -> None:
    from racecheck.instrument.backends.base import LOCK_METHOD_NAMES
    from racecheck.instrument.stdlib_common import RAW_LOCK_TYPES

    assert set(hooks._RAW_LOCK_TYPES) == set(RAW_LOCK_TYPES)
    assert hooks.LOCK_METHODS == LOCK_METHOD_NAMES


# --- the real engine: a raw lock protects a shared dict -----------------------------------


@pytest.mark.parametrize("kind", ["lock", "rlock"])
@pytest.mark.parametrize("first", FORMS)
@pytest.mark.parametrize("reverse", [False, True], ids=["first-then-plain", "plain-then-first"])
def test_raw_lock_orders_the_threads(
    det: Any, m: Any, kind: str, first: str, reverse: bool
) -> None:
    lock, shared = make(kind), {}
    if first == "aliases" and kind == "rlock":
        pytest.skip("RLock has no acquire_lock/release_lock")
    fns = [getattr(m, first), m.plain]
    if reverse:
        fns.reverse()
    one_after_another(*(lambda f=f: f(lock, shared, "k") for f in fns))
    assert shared == {"k": 2}
    assert not lock.locked() if kind == "lock" else not lock._is_owned()
    assert det.races() == []


@pytest.mark.parametrize("reverse", [False, True])
def test_the_twin_without_the_lock_races(det: Any, m: Any, reverse: bool) -> None:
    lock, shared = _thread.allocate_lock(), {}
    fns = [m.unlocked, m.plain]
    if reverse:
        fns.reverse()
    one_after_another(*(lambda f=f: f(lock, shared, "k") for f in fns))
    assert shared == {"k": 2}
    assert len(det.races()) >= 1


def test_the_edges_come_from_the_hook(det: Any, m: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With lc's edge functions disabled the locked program races: nothing else (no
    backend, no patch) orders explicit calls on a raw lock."""
    monkeypatch.setattr(hooks, "_lock_edges", (lambda lock, name: None, lambda *a: None))
    lock, shared = _thread.allocate_lock(), {}
    one_after_another(lambda: m.plain(lock, shared, "k"), lambda: m.plain(lock, shared, "k"))
    assert len(det.races()) >= 1


def test_different_locks_add_no_edge(det: Any, m: Any) -> None:
    a, b, shared = _thread.allocate_lock(), _thread.allocate_lock(), {}
    one_after_another(lambda: m.plain(a, shared, "k"), lambda: m.plain(b, shared, "k"))
    assert len(det.races()) >= 1


# --- a failed acquire adds no edge ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["lock", "rlock"])
@pytest.mark.parametrize("blocking", [False, True], ids=["try", "timed-out"])
def test_failed_acquire_adds_no_edge(eng: VCEngine, m: Any, kind: str, blocking: bool) -> None:
    """The holder released the lock once (its token holds mark "before"), then holds it
    again while the main thread's acquire fails: that must not consume the token, even
    though the lock is locked at that moment (which a backend cannot tell apart)."""
    lock = make(kind)
    held, done = Signal(), Signal()

    def holder() -> None:
        assert m.take(lock)
        eng.mark("before")
        m.give(lock)
        assert m.take(lock)
        held.set()
        done.wait(T)
        m.give(lock)

    finished = start_raw(holder)
    held.wait(T)
    assert m.attempt(lock, blocking, 0.01) is False
    eng.mark("tried")
    done.set()
    finished.wait(T)
    assert eng.concurrent("before", "tried")
    # and a successful one, once the holder is gone, does order them
    assert m.attempt(lock, blocking, T) is True
    eng.mark("after")
    m.give(lock)
    assert eng.hb("before", "after")


# --- lock-order events: once each, blocking flag exact, attributed to the user ----------------


class LockEvents:
    def __init__(self) -> None:
        self.seen: list[tuple[str, object, bool | None, str]] = []

    def lock_acquired(self, lock: object, blocking: bool, depth: int) -> None:
        # depth counts from our caller (events.lock_acquired) to the user's frame
        frame = sys._getframe(depth + 1)
        self.seen.append(("acquired", lock, blocking, frame.f_code.co_name))

    def lock_released(self, lock: object) -> None:
        self.seen.append(("released", lock, None, ""))


@pytest.fixture
def lock_events(eng: VCEngine) -> Iterator[LockEvents]:
    listener = LockEvents()
    events.set_lock_listener(listener)
    yield listener
    events.set_lock_listener(None)


def _lock_event_script(m: Any, lock: Any) -> None:
    assert m.attempt(lock, False, 0)
    m.give(lock)
    assert m.attempt(lock, True, T)
    m.give(lock)
    m.enter_exit(lock)


def _expected_lock_events(lock: Any) -> list[tuple[str, object, bool | None, str]]:
    return [
        ("acquired", lock, False, "attempt"),
        ("released", lock, None, ""),
        ("acquired", lock, True, "attempt"),
        ("released", lock, None, ""),
        ("acquired", lock, True, "enter_exit"),
        ("released", lock, None, ""),
    ]


@pytest.mark.parametrize("kind", ["lock", "rlock"])
def test_lock_events_with_blocking_flag(lock_events: LockEvents, m: Any, kind: str) -> None:
    lock = make(kind)
    _lock_event_script(m, lock)
    assert lock_events.seen == _expected_lock_events(lock)


def test_a_running_backend_does_not_report_the_calls_twice(lock_events: LockEvents, m: Any) -> None:
    """The real call is made from racecheck's file, which the backends skip."""
    from racecheck.instrument.backends.base import choose_backend

    lock = _thread.allocate_lock()
    result: list[BaseException] = []

    def run() -> None:
        try:
            _lock_event_script(m, lock)
        except BaseException as exc:  # reported below, in the test's thread
            result.append(exc)

    backend = choose_backend()
    backend.start()
    try:
        # A threading.Thread: on 3.11 setprofile reaches only threads started after it.
        t = threading.Thread(target=run)
        t.start()
        t.join(T)
        assert not t.is_alive()
    finally:
        backend.stop()
    assert result == []
    assert [e for e in lock_events.seen if e[1] is lock] == _expected_lock_events(lock)


# --- everything else is unchanged --------------------------------------------------------


class Pool:
    def __init__(self) -> None:
        self.taken = 0

    def acquire(self, n: int = 1) -> int:
        self.taken += n
        return self.taken

    def release(self) -> str:
        return "released"

    def __enter__(self) -> str:
        return "entered"

    def __exit__(self, *exc: object) -> bool:
        return False


def test_non_lock_objects_keep_working_and_their_read_is_recorded(sink: Any, m: Any) -> None:
    pool = Pool()
    m.load_only(pool)
    as_plain_load = sink.on(pool)
    assert as_plain_load == [("read", "acquire")]
    assert m.call(pool, 3) == 3
    assert sink.on(pool) == as_plain_load
    assert m.release_it(pool) == "released"
    assert sink.on(pool) == [("read", "release")]
    assert m.enter_exit(pool) == ("entered", False)
    assert sink.on(pool) == [("read", "__enter__"), ("read", "__exit__")]


def test_instance_attribute_named_acquire(sink: Any, m: Any) -> None:
    class Holder:
        pass

    h = Holder()
    h.acquire = lambda *args: ("called", args)  # type: ignore[attr-defined]
    assert m.call(h, 1, 2) == ("called", (1, 2))
    assert sink.on(h) == [("read", "acquire")]


def test_python_level_primitives_get_their_bound_methods(sink: Any, m: Any) -> None:
    sem = threading.Semaphore(1)
    assert m.call(sem, False) is True
    assert m.call(sem, False) is False
    m.release_it(sem)
    assert m.call(sem, False) is True
    m.release_it(sem)
    assert m.load_only(sem) == sem.acquire


def test_passthrough_without_any_listener(m: Any) -> None:
    """No sink, no detector: raw locks still behave exactly like raw locks."""
    lock, rlock = _thread.allocate_lock(), _thread.RLock()
    assert m.attempt(lock, False, 0) is True
    assert m.attempt(lock, False, 0) is False
    m.give(lock)
    assert not lock.locked()
    assert m.take(rlock) and m.take(rlock)
    m.give(rlock)
    m.give(rlock)
    assert not rlock._is_owned()
    assert m.load_only(lock) == lock.acquire


def test_the_bound_method_wrapper_looks_like_the_method(m: Any) -> None:
    lock = _thread.allocate_lock()
    wrapped = m.__rc__.lc(lock, "acquire")
    assert wrapped == lock.acquire and hash(wrapped) == hash(lock.acquire)
    assert wrapped.__name__ == "acquire" and wrapped.__self__ is lock
    assert repr(wrapped) == repr(lock.acquire)


# --- tracebacks keep the user's frames and lines -----------------------------------------


def _user_frames(exc: BaseException) -> list[tuple[str, int]]:
    return [
        (fs.name, fs.lineno or 0)
        for fs in traceback.extract_tb(exc.__traceback__)
        if fs.filename.endswith("rc_lockcalls.py") or "racecheck" in fs.filename
    ]


@pytest.mark.parametrize("kind", ["lock", "rlock"])
def test_failing_release_traceback_points_at_the_user_line(m: Any, kind: str) -> None:
    with pytest.raises(RuntimeError) as info:
        m.broken_release(make(kind))
    frames = _user_frames(info.value)
    assert frames == [("broken_release", _line_of("# not held"))]


def test_missing_method_traceback_points_at_the_user_line(m: Any) -> None:
    with pytest.raises(AttributeError) as info:
        m.missing(object())
    assert _user_frames(info.value) == [("missing", _line_of("return obj.acquire()"))]


@pytest.mark.skipif(
    hasattr(_thread.allocate_lock(), "acquire_lock"), reason="acquire_lock still exists"
)
def test_removed_alias_raises_attribute_error_at_the_user_line(m: Any) -> None:
    with pytest.raises(AttributeError) as info:
        m.aliases(_thread.allocate_lock(), {}, "k")
    assert _user_frames(info.value) == [("aliases", _line_of("lock.acquire_lock()"))]


def test_events_then_signal_helpers_are_invisible(eng: VCEngine) -> None:
    """Sanity of the harness: two raw threads with nothing between them are concurrent."""
    one_after_another(lambda: eng.mark("a"), lambda: eng.mark("b"))
    assert eng.concurrent("a", "b")
