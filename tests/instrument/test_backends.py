"""Sync-capture backends: raw lock calls in code racecheck does not instrument produce
edges; racecheck's and the modelled stdlib's internal locks do not.

The stdlib patches are NOT installed here, so ``Thread.join`` adds no edge: threads run
one after the other (start, join) and only the backend can order their marks.
"""

from __future__ import annotations

import collections
import importlib
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_stdlib_vc import VCEngine

from racecheck.instrument.backends import base
from racecheck.instrument.backends.settrace import SetProfileBackend
from racecheck.instrument.stdlib_sync import LOCK_TOKENS
from racecheck.sync import events

HELPER = '''
"""A library racecheck does not instrument, protecting its state with its own lock."""
def locked(lock, fn):
    lock.acquire()
    try:
        fn()
    finally:
        lock.release()

def acquire(lock):
    lock.acquire()

def release(lock):
    lock.release()

def with_block(lock, fn):
    with lock:
        fn()

def try_acquire(lock):
    return lock.acquire(False)

def plain(fn):
    fn()
'''

BACKENDS = ["setprofile"] + (["sysmon"] if sys.version_info >= (3, 12) else [])


def _make(name: str) -> base.SyncBackend:
    if name == "sysmon":
        from racecheck.instrument.backends.sysmon import SysMonitoringBackend

        return SysMonitoringBackend()
    return SetProfileBackend()


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("helperlib")
    (folder / "rc_lockhelper.py").write_text(HELPER)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("rc_lockhelper")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("rc_lockhelper", None)


@pytest.fixture
def eng() -> Iterator[VCEngine]:
    engine = VCEngine()
    events.set_happens_before(engine)
    yield engine
    events.set_happens_before(None)
    LOCK_TOKENS.clear()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[base.SyncBackend]:
    b = _make(request.param)
    b.start()
    yield b
    b.stop()


def _in_thread(fn: Callable[[], object]) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join(5)
    assert not t.is_alive()


def test_lock_in_uninstrumented_helper_orders_threads(
    eng: VCEngine, backend: Any, helper: Any
) -> None:
    lock = threading.Lock()
    _in_thread(lambda: helper.locked(lock, lambda: eng.mark("first")))
    _in_thread(lambda: helper.locked(lock, lambda: eng.mark("second")))
    assert eng.hb("first", "second")


@pytest.mark.parametrize("make", [threading.Lock, threading.RLock], ids=["Lock", "RLock"])
def test_without_a_common_lock_there_is_no_edge(
    eng: VCEngine, backend: Any, helper: Any, make: Any
) -> None:
    a, b = make(), make()
    _in_thread(lambda: helper.locked(a, lambda: eng.mark("first")))
    _in_thread(lambda: helper.locked(b, lambda: eng.mark("second")))
    assert eng.concurrent("first", "second")


def test_without_a_backend_the_helper_lock_is_invisible(eng: VCEngine, helper: Any) -> None:
    lock = threading.Lock()
    _in_thread(lambda: helper.locked(lock, lambda: eng.mark("first")))
    _in_thread(lambda: helper.locked(lock, lambda: eng.mark("second")))
    assert eng.concurrent("first", "second")


def test_rlock_and_release_by_another_thread(eng: VCEngine, backend: Any, helper: Any) -> None:
    rlock = threading.RLock()
    _in_thread(lambda: helper.locked(rlock, lambda: eng.mark("r1")))
    _in_thread(lambda: helper.locked(rlock, lambda: eng.mark("r2")))
    assert eng.hb("r1", "r2")
    lock = threading.Lock()
    _in_thread(lambda: helper.acquire(lock))
    _in_thread(lambda: (eng.mark("releaser"), helper.release(lock)))
    _in_thread(lambda: (helper.acquire(lock), eng.mark("acquirer")))
    assert eng.hb("releaser", "acquirer")


def test_failed_try_acquire_of_a_free_lock_adds_no_edge(
    eng: VCEngine, backend: Any, helper: Any
) -> None:
    lock = threading.RLock()
    _in_thread(lambda: helper.locked(lock, lambda: eng.mark("first")))
    holder_has_it = threading.Event()  # stdlib not installed: no edge from this Event
    release = threading.Event()

    def holder() -> None:
        helper.acquire(lock)
        holder_has_it.set()
        release.wait(5)
        helper.release(lock)

    t = threading.Thread(target=holder)
    t.start()
    assert holder_has_it.wait(5)
    _in_thread(lambda: (helper.try_acquire(lock), eng.mark("failed")))
    release.set()
    t.join(5)
    # The failed attempt saw nothing; the holder's acquire did consume "first".
    assert eng.concurrent("first", "failed")


def test_with_block_in_helper_orders_what_follows_it(
    eng: VCEngine, backend: Any, helper: Any
) -> None:
    lock = threading.Lock()
    _in_thread(lambda: helper.with_block(lock, lambda: eng.mark("inside-first")))
    _in_thread(lambda: (helper.with_block(lock, lambda: None), eng.mark("after-second")))
    assert eng.hb("inside-first", "after-second")


def test_stdlib_and_racecheck_internal_locks_carry_no_edges(
    eng: VCEngine, backend: Any, helper: Any
) -> None:
    q: queue.Queue[int] = queue.Queue()
    q.put(1)
    assert q.get() == 1
    cond = threading.Condition()
    with cond:
        cond.notify_all()
    ev = threading.Event()
    ev.set()
    ev.wait(1)
    internal = [q.mutex, cond._lock, LOCK_TOKENS._lock]  # type: ignore[attr-defined]
    assert not any(id(lock) in LOCK_TOKENS._entries for lock in internal)
    # ... while the same kind of lock used by user-level code does get a token
    mine = threading.Lock()
    helper.locked(mine, lambda: None)
    assert id(mine) in LOCK_TOKENS._entries


def test_stop_removes_the_backend(eng: VCEngine, helper: Any) -> None:
    for name in BACKENDS:
        b = _make(name)
        b.start()
        b.stop()
        b.stop()  # idempotent
    lock = threading.Lock()
    helper.locked(lock, lambda: None)
    assert id(lock) not in LOCK_TOKENS._entries


def test_setprofile_chains_an_existing_profile_function(helper: Any) -> None:
    seen: list[str] = []

    def existing(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and getattr(arg, "__name__", "") == "acquire":
            seen.append(event)

    old = sys.getprofile()
    sys.setprofile(existing)
    try:
        b = SetProfileBackend()
        b.start()
        try:
            helper.locked(threading.Lock(), lambda: None)
            assert seen == ["c_call"]
        finally:
            b.stop()
        assert sys.getprofile() is existing
    finally:
        sys.setprofile(old)


def test_settrace_is_never_touched(helper: Any) -> None:
    before = sys.gettrace()
    b = SetProfileBackend()
    b.start()
    try:
        assert sys.gettrace() is before
    finally:
        b.stop()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
def test_sysmon_takes_a_free_tool_id_and_never_coverage_or_debugger() -> None:
    from racecheck.instrument.backends.sysmon import SysMonitoringBackend

    mon: Any = sys.monitoring  # type: ignore[attr-defined]
    free = [i for i in (3, 4, 5) if mon.get_tool(i) is None]
    mon.use_tool_id(free[0], "someone-else")
    try:
        b = SysMonitoringBackend()
        b.start()
        try:
            assert b.tool_id not in (0, 1, 2, free[0])
            assert mon.get_tool(b.tool_id) == "racecheck"
        finally:
            b.stop()
        assert mon.get_tool(free[1]) is None
    finally:
        mon.free_tool_id(free[0])


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
def test_sysmon_disables_call_sites_that_never_call_locks(
    monkeypatch: pytest.MonkeyPatch, helper: Any
) -> None:
    from racecheck.instrument.backends import sysmon

    calls: list[str] = []
    real = sysmon._on_call

    def counting(code: Any, offset: int, func: Any, arg0: Any) -> Any:
        if code.co_filename == helper.__file__:
            calls.append(code.co_name)
        return real(code, offset, func, arg0)

    monkeypatch.setattr(sysmon, "_on_call", counting)
    sys.monitoring.restart_events()  # sites an earlier test (or parametrisation) disabled
    b = sysmon.SysMonitoringBackend()
    b.start()
    try:
        for _ in range(50):
            helper.plain(lambda: None)
        lock = threading.Lock()
        for _ in range(50):
            helper.locked(lock, lambda: None)
    finally:
        b.stop()
    assert calls.count("plain") == 1  # disabled after the first call
    assert calls.count("locked") >= 100  # lock sites stay live


def test_choose_backend_picks_by_version() -> None:
    chosen = base.choose_backend()
    expected = "sys.monitoring" if sys.version_info >= (3, 12) else "setprofile"
    assert chosen.name == expected


def test_lock_call_classifies_bound_and_unbound_methods() -> None:
    lock, rlock = threading.Lock(), threading.RLock()
    assert base.lock_call(lock.acquire, None) == (lock, "acquire")
    assert base.lock_call(type(lock).release, lock) == (lock, "release")
    assert base.lock_call(rlock.__exit__, None) == (rlock, "__exit__")
    assert base.lock_call(lock.locked, None) is None
    assert base.lock_call(len, None) is None
    assert base.lock_call(threading.Semaphore().acquire, None) is None


def test_helper_file_is_not_internal(helper: Any) -> None:
    from racecheck.instrument.stdlib_common import is_internal_file

    assert not is_internal_file(helper.__file__)
    assert is_internal_file(threading.__file__)
    assert is_internal_file(str(Path(base.__file__)))


@pytest.mark.parametrize("name", BACKENDS)
def test_cold_internal_cache_with_backend_running_does_not_self_deadlock(
    eng: VCEngine, name: str
) -> None:
    """Regression: is_internal_file used to fill its cache under a lock; the lock's own
    ``__exit__`` fired the backend, which re-entered is_internal_file and deadlocked."""
    from racecheck.instrument import stdlib_common
    from racecheck.instrument.stdlib_common import called_from_user

    saved = dict(stdlib_common._internal_cache)
    stdlib_common._internal_cache.clear()
    results: list[bool] = []

    def cold() -> None:
        b = _make(name)
        b.start()
        try:
            results.append(called_from_user(0))
            results.append(stdlib_common.is_internal_file("/nowhere/cold_file.py"))
        finally:
            b.stop()

    t = threading.Thread(target=cold, daemon=True)
    t.start()
    t.join(5)
    stdlib_common._internal_cache.update(saved)
    assert not t.is_alive(), "deadlocked"
    assert results == [True, False]


# --- a program installing its own profiler while the setprofile backend runs ------------


class _Recorder:
    """A user's profile function: records the thread of every event.  No lock: it is
    itself called for the calls made while reading it, which a lock would deadlock;
    deque appends and ``list(deque)`` are single C calls."""

    def __init__(self) -> None:
        self.events: collections.deque[int] = collections.deque()

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        self.events.append(threading.get_ident())

    def threads(self) -> set[int]:
        return set(list(self.events))


class _LockEvents:
    def __init__(self) -> None:
        self.released: list[object] = []

    def lock_acquired(self, lock: object, blocking: bool, depth: int) -> None:
        pass

    def lock_released(self, lock: object) -> None:
        self.released.append(lock)


def test_user_profiler_is_chained_with_ours(eng: VCEngine, helper: Any) -> None:
    user = _Recorder()
    saved = sys.getprofile(), threading.getprofile()
    b = SetProfileBackend()
    b.start()
    try:
        threading.setprofile(user)  # replaces ours without the chaining
        sys.setprofile(user)
        assert sys.getprofile() is user and threading.getprofile() is user  # fidelity
        lock = threading.Lock()  # raw: stdlib not installed, only the backend sees it
        helper.locked(lock, lambda: eng.mark("main"))  # this thread: sys.setprofile
        idents: list[int] = []

        def worker() -> None:
            idents.append(threading.get_ident())
            helper.locked(lock, lambda: eng.mark("worker"))  # new thread: the hook

        _in_thread(worker)
        assert eng.hb("main", "worker")
        assert idents[0] in user.threads() and threading.get_ident() in user.threads()
    finally:
        b.stop()
        assert sys.getprofile() is user  # the user's profiler stays, as without us
        assert threading.getprofile() is user
        sys.setprofile(saved[0])
        threading.setprofile(saved[1])
    assert sys.setprofile is not None and type(sys.setprofile) is type(len)  # original


def test_user_profiler_removed_keeps_ours(eng: VCEngine, helper: Any) -> None:
    saved = sys.getprofile(), threading.getprofile()
    b = SetProfileBackend()
    b.start()
    try:
        sys.setprofile(_Recorder())
        sys.setprofile(None)  # the user turns their profiler off: ours keeps running
        assert sys.getprofile() is None
        lock = threading.Lock()
        helper.locked(lock, lambda: eng.mark("main"))
        threading.setprofile(None)
        _in_thread(lambda: helper.locked(lock, lambda: eng.mark("worker")))
        assert eng.hb("main", "worker")
    finally:
        b.stop()
        sys.setprofile(saved[0])
        threading.setprofile(saved[1])


def test_thread_hook_is_not_wrapped_twice(eng: VCEngine, helper: Any) -> None:
    """threading's bootstrap passes the hook (already ours) to sys.setprofile: each lock
    call must still be reported exactly once."""
    saved = sys.getprofile(), threading.getprofile()
    listener = _LockEvents()
    events.set_lock_listener(listener)
    b = SetProfileBackend()
    b.start()
    try:
        threading.setprofile(_Recorder())
        lock = threading.Lock()
        _in_thread(lambda: helper.locked(lock, lambda: None))
        assert listener.released == [lock]
    finally:
        b.stop()
        events.set_lock_listener(None)
        sys.setprofile(saved[0])
        threading.setprofile(saved[1])
