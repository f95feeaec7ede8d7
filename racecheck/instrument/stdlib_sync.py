"""Edges of the ``threading`` primitives, by their documented contract.

* locks the user creates after install are observed wrappers (``stdlib_locks``: the
  ``threading.Lock``/``RLock`` factories are replaced) that report their own edges;
* raw locks (made before install, or by contract-modelled modules; C objects that cannot
  be patched): tokens in :data:`LOCK_TOKENS`, fed by :func:`wrap_with` (``with lock:`` in
  rewritten code) and by the sync backends (``lock.acquire()``/``release()`` anywhere);
* ``Condition`` (via its lock; ``wait`` releases and re-acquires it), ``Event`` (set ->
  wait/is_set returning True), ``Semaphore``/``BoundedSemaphore`` (release -> acquire),
  ``Barrier`` (every arrival of a generation -> every departure of it): patched at class
  level, and only calls made from user code count, so the primitives the stdlib uses
  inside ``queue``, ``concurrent.futures``... order nothing of the user's.
"""

from __future__ import annotations

import threading
from typing import Any

from racecheck._rawsync import allocate_lock, get_ident
from racecheck.instrument.stdlib_common import (
    RAW_LOCK_TYPES,
    ObjectTokens,
    Patcher,
    RawLockTokens,
    add_transparent,
    called_from_user,
)
from racecheck.instrument.stdlib_locks import (
    install_lock_factories,
    is_observed,
    uninstall_lock_factories,
)
from racecheck.sync import events

LOCK_TOKENS = RawLockTokens()
"""The tokens of every raw lock, shared by ``wrap_with`` and the backends."""

_tokens = ObjectTokens()  # Event, Semaphore
_patcher = Patcher()


def raw_acquired(lock: object, blocking: bool = True, depth: int = 1) -> None:
    """After ``lock`` (a raw lock) was acquired by the calling thread."""
    LOCK_TOKENS.acquire(lock)
    events.lock_acquired(lock, blocking, depth + 1)


def raw_releasing(lock: object) -> None:
    """Just before ``lock`` (a raw lock) is released by the calling thread."""
    events.lock_released(lock)
    LOCK_TOKENS.release(lock)


class _LockedRegion:
    """What ``with raw_lock:`` becomes in rewritten code: the same acquire and release,
    plus the edges (consume after acquiring, publish before releasing)."""

    __slots__ = ("_lock",)

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def __enter__(self) -> Any:
        lock = self._lock
        result = lock.__enter__()
        raw_acquired(lock, True, 1)
        return result

    def __exit__(self, *exc: Any) -> Any:
        lock = self._lock
        raw_releasing(lock)
        return lock.__exit__(*exc)


def wrap_with(obj: Any) -> Any:
    """The rewriter's ``with X:`` -> ``with wrap_with(X):``.

    Returns ``obj`` itself unless it is a raw lock/RLock, whose ``__enter__`` no hook
    can see on 3.11-3.13; Python-level ``threading`` primitives have their ``__enter__``
    patched already.
    """
    if type(obj) in RAW_LOCK_TYPES:
        return _LockedRegion(obj)
    return obj


# --- Condition: edges via its lock --------------------------------------------------------

_C = threading.Condition
_orig_cond_enter = _C.__enter__
_orig_cond_exit = _C.__exit__
_orig_cond_wait = _C.wait


def _lock_of(cond: Any) -> Any:
    return cond._lock


def _acquired(lock: Any) -> None:
    if type(lock) in RAW_LOCK_TYPES:
        LOCK_TOKENS.acquire(lock)
    else:  # a user-supplied lock object: weakly keyed, never kept alive
        _tokens.consume(lock)


def _releasing(lock: Any) -> None:
    if type(lock) in RAW_LOCK_TYPES:
        LOCK_TOKENS.release(lock)
    else:
        _tokens.publish(lock)


def _cond_enter(self: Any) -> Any:
    result = _orig_cond_enter(self)
    lock = _lock_of(self)
    if not is_observed(lock) and called_from_user(1):
        _acquired(lock)
        events.lock_acquired(lock, True, 2)
    return result


def _cond_exit(self: Any, *exc: Any) -> Any:
    lock = _lock_of(self)
    if not is_observed(lock) and called_from_user(1):
        events.lock_released(lock)
        _releasing(lock)
    return _orig_cond_exit(self, *exc)


def _cond_wait(self: Any, timeout: float | None = None) -> bool:
    lock = _lock_of(self)
    if is_observed(lock) or not called_from_user(1):
        return _orig_cond_wait(self, timeout)  # an observed lock reports its own edges
    _releasing(lock)
    try:
        return _orig_cond_wait(self, timeout)
    finally:
        _acquired(lock)  # re-acquired, even on timeout or interrupt


# --- Event ----------------------------------------------------------------------------------

_E = threading.Event
_orig_event_set = _E.set
_orig_event_wait = _E.wait
_orig_event_is_set = _E.is_set


def _event_set(self: Any) -> None:
    if called_from_user(1):
        _tokens.publish(self)
    _orig_event_set(self)


def _event_wait(self: Any, timeout: float | None = None) -> bool:
    flag = _orig_event_wait(self, timeout)
    if flag and called_from_user(1):
        _tokens.consume(self)
    return flag


def _event_is_set(self: Any) -> bool:
    flag = _orig_event_is_set(self)
    if flag and called_from_user(1):
        _tokens.consume(self)
    return flag


# --- Semaphore / BoundedSemaphore -------------------------------------------------------

_S = threading.Semaphore
_B = threading.BoundedSemaphore
_orig_sem_acquire = _S.acquire
_orig_sem_release = _S.release
_orig_bsem_release = _B.release
_orig_sem_exit = _S.__exit__


def _sem_acquire(self: Any, blocking: bool = True, timeout: float | None = None) -> bool:
    got = _orig_sem_acquire(self, blocking, timeout)
    if got and called_from_user(1):
        _tokens.consume(self)
    return got


def _sem_enter(self: Any) -> bool:
    got = _orig_sem_acquire(self)
    if got and called_from_user(1):
        _tokens.consume(self)
    return got


def _sem_release(self: Any, n: int = 1) -> None:
    if called_from_user(1):
        _tokens.publish(self)
    _orig_sem_release(self, n)


def _bsem_release(self: Any, n: int = 1) -> None:
    if called_from_user(1):
        _tokens.publish(self)
    _orig_bsem_release(self, n)


def _sem_exit(self: Any, *exc: Any) -> None:
    if called_from_user(1):
        _tokens.publish(self)
    _orig_sem_exit(self, *exc)  # calls self.release() from threading.py: no second edge


# --- Barrier --------------------------------------------------------------------------------

_Bar = threading.Barrier
_orig_bar_wait = _Bar.wait
_orig_bar_enter = _Bar._enter  # type: ignore[attr-defined]
_orig_bar_release = _Bar._release  # type: ignore[attr-defined]


class _BarrierState:
    """Tokens per generation.  Updated only inside the barrier's own lock (from ``_enter``
    and ``_release``), so our idea of a generation is exactly the barrier's."""

    __slots__ = ("generation", "tokens")

    def __init__(self) -> None:
        self.generation = 0
        self.tokens: dict[int, object] = {}


_barrier_lock = allocate_lock()
_barriers: Any = None  # WeakKeyDictionary[Barrier, _BarrierState], made in install()
_my_generation: dict[tuple[int, int], int] = {}  # (thread ident, id(barrier)) -> gen


def _barrier_state(barrier: Any) -> _BarrierState:
    with _barrier_lock:
        state: _BarrierState | None = _barriers.get(barrier)
        if state is None:
            state = _barriers[barrier] = _BarrierState()
        return state


def _bar_enter(self: Any) -> None:
    _orig_bar_enter(self)
    # We hold the barrier's lock and it is filling: self._count is our index.
    state = _barrier_state(self)
    with _barrier_lock:
        if self._count == 0:
            state.generation += 1
            for old in [g for g in state.tokens if g < state.generation - 1]:
                del state.tokens[old]
        gen = state.generation
        token = events.publish(state.tokens.get(gen))
        if token is not None:
            state.tokens[gen] = token
        _my_generation[(get_ident(), id(self))] = gen


def _bar_release(self: Any) -> None:
    # The last arrival runs the action: it must see every arrival, and every departure
    # must see the action.
    state = _barrier_state(self)
    with _barrier_lock:
        gen = state.generation
        token = state.tokens.get(gen)
    events.consume(token)
    _orig_bar_release(self)
    with _barrier_lock:
        token = events.publish(state.tokens.get(gen))
        if token is not None:
            state.tokens[gen] = token


def _bar_wait(self: Any, timeout: float | None = None) -> int:
    key = (get_ident(), id(self))
    try:
        index: int = _orig_bar_wait(self, timeout)
    except BaseException:
        with _barrier_lock:
            _my_generation.pop(key, None)
        raise
    state = _barrier_state(self)
    with _barrier_lock:
        gen = _my_generation.pop(key, None)
        token = state.tokens.get(gen) if gen is not None else None
    events.consume(token)
    return index


# --- install --------------------------------------------------------------------------------


def install_sync() -> None:
    global _barriers
    if _patcher:
        return
    from weakref import WeakKeyDictionary

    _barriers = WeakKeyDictionary()
    add_transparent(_C.wait_for)
    p = _patcher
    p.patch(_C, "__enter__", _cond_enter)
    p.patch(_C, "__exit__", _cond_exit)
    p.patch(_C, "wait", _cond_wait)
    p.patch(_E, "set", _event_set)
    p.patch(_E, "wait", _event_wait)
    p.patch(_E, "is_set", _event_is_set)
    p.patch(_S, "acquire", _sem_acquire)
    p.patch(_S, "__enter__", _sem_enter)
    p.patch(_S, "release", _sem_release)
    p.patch(_S, "__exit__", _sem_exit)
    p.patch(_B, "release", _bsem_release)
    p.patch(_Bar, "wait", _bar_wait)
    p.patch(_Bar, "_enter", _bar_enter)
    p.patch(_Bar, "_release", _bar_release)
    install_lock_factories()


def uninstall_sync() -> None:
    uninstall_lock_factories()
    _patcher.restore()
    _tokens.clear()
    LOCK_TOKENS.clear()
    with _barrier_lock:
        _my_generation.clear()
