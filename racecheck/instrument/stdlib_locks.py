"""Observed locks: ``threading.Lock()``/``RLock()`` made by the user's code while racecheck
is installed come back wrapped, so every way of taking them reports its edges.

Why: a raw C lock's ``__enter__`` raises no event any hook can see on 3.11-3.13, so
``with lock:`` in code the rewriter does not instrument (a library in site-packages, or
``logging.Handler.handle`` on 3.13), ``ExitStack.enter_context(lock)`` and explicit
``lock.__enter__()`` used to be invisible, and the data those locks protect was reported
as racy.  Like ThreadSanitizer intercepting ``pthread_mutex_*``, we intercept the
factories instead: the wrapper's methods are Python code, so they cannot be missed.

Only the *creator* decides, once, at creation: a lock made by racecheck itself or by a
contract-modelled stdlib module (``is_internal_file``: ``threading``, ``queue``,
``concurrent.futures``...) stays the raw C lock, because those modules' internal locks
must add no edges (``queue``'s contract promises put -> get, not "everything before any
put -> everything after any get").  Locks created before install (or through
``_thread`` directly, or through a ``from threading import Lock`` done before install)
stay raw: the backends and ``wrap_with`` cover their ``acquire()``/``release()`` and
instrumented ``with`` blocks, and ``with`` in uninstrumented code remains a blind spot.

Edges: consume the lock's token after every successful acquire, publish into it before
every release, exactly like ``wrap_with``'s region and the backends do for raw locks,
plus the lock-order events (``blocking=False`` for a try-acquire).  The token lives in
the wrapper: an RLock's is guarded by the RLock itself (only its owner may touch it); a
Lock may legally be released by another thread than its holder, so its token has a
small guard lock of its own.
"""

from __future__ import annotations

import operator
import sys
import threading
import time
from typing import Any

from racecheck._rawsync import allocate_lock
from racecheck.instrument.stdlib_common import RAW_LOCK_TYPES, Patcher, is_internal_file
from racecheck.sync import events

__all__ = [
    "OBSERVED_TYPES",
    "ObservedLock",
    "ObservedRLock",
    "install_lock_factories",
    "is_observed",
    "uninstall_lock_factories",
]

_RawLockType, _RawRLockType = RAW_LOCK_TYPES


def _repr_of(wrapper: object, raw: object) -> str:
    """The raw lock's repr (``<locked _thread.lock object at 0x...>``) with the
    wrapper's address, so it matches the ``id()`` reports show."""
    return repr(raw).replace(f"{id(raw):#x}", f"{id(wrapper):#x}")


def _cannot_pickle(raw: object) -> TypeError:
    kind = type(raw)
    return TypeError(f"cannot pickle '{kind.__module__}.{kind.__qualname__}' object")


_sleep = time.sleep  # bound now: a program may patch time.sleep (freezegun...)
_GIL = bool(getattr(sys, "_is_gil_enabled", lambda: True)())
_BACKOFF = (0.0, 0.0, 0.0, 0.00005, 0.0001, 0.0002, 0.0005, 0.001)


def _acquire_contended(raw: Any) -> bool:
    """A blocking acquire of a lock another thread holds, without a lock convoy.

    Under racecheck a critical section holds hook calls, where CPython may hand the GIL
    to another thread; that thread then blocks on the lock inside the C acquire, and
    from then on every release hands the lock to a sleeping waiter (two context
    switches per acquisition, for as long as the threads contend).  Uninstrumented, the
    same sections hold no such point and the waiters never queue.  So a waiter first
    yields the GIL and retries for about 2 ms (``sleep(0)`` lets the holder finish its
    section), and only then blocks as the real lock does.  Which waiter gets a released
    lock is undefined for ``threading.Lock`` too; a lock held longer than that is
    waited for exactly as before."""
    for delay in _BACKOFF:
        _sleep(delay)
        if raw.acquire(False):
            return True
    got: bool = raw.acquire()
    return got


class _Observed:
    """What both wrappers share: the lock interface around the raw lock, with the edges
    (``_took`` after a successful acquire, ``_giving_back`` before a release) left to
    each kind, and everything else delegated to the raw lock."""

    __slots__ = ()
    _raw: Any

    def _took(self, blocking: bool, depth: int) -> None:
        raise NotImplementedError

    def _giving_back(self) -> None:
        raise NotImplementedError

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        raw = self._raw
        if blocking is True and timeout == -1 and _GIL:
            got: bool = raw.acquire(False) or _acquire_contended(raw)
        else:
            got = raw.acquire(blocking, timeout)
        if got:
            self._took(bool(blocking), 1)
        return got

    def release(self) -> None:
        self._giving_back()
        self._raw.release()

    def __enter__(self) -> bool:
        raw = self._raw
        got: bool = raw.acquire(False) or (_acquire_contended(raw) if _GIL else raw.acquire())
        self._took(True, 1)
        return got

    def __exit__(self, *exc: object) -> None:
        self._giving_back()
        self._raw.release()

    def __repr__(self) -> str:
        return _repr_of(self, self._raw)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise _cannot_pickle(self._raw)

    def __getattr__(self, name: str) -> Any:
        if name == "_raw":  # half-built (copy/unpickle): never recurse
            raise AttributeError(name)
        return getattr(self._raw, name)


class ObservedLock(_Observed):
    """A ``threading.Lock`` whose acquire/release (however reached) report edges."""

    __slots__ = ("__weakref__", "_created_at", "_guard", "_raw", "_token")

    def __init__(self, raw: Any, created_at: tuple[events.SiteFrame, ...] = ()) -> None:
        self._raw = raw
        self._guard = allocate_lock()  # guards _token: any thread may release a Lock
        self._token: object | None = None
        self._created_at = created_at

    # -- the edges ----------------------------------------------------------------------

    def _took(self, blocking: bool, depth: int) -> None:
        """After a successful acquire by the calling thread."""
        # The listeners are called directly (not through events.consume/lock_acquired):
        # this runs inside the user's critical section, every call counts.
        hb = events._hb
        token = self._token  # one attribute read: atomic, no guard needed
        if hb is not None and token is not None:
            hb.consume(token)
        locks = events._locks
        if locks is not None:
            locks.lock_acquired(self, blocking, depth + 1)

    def _giving_back(self) -> None:
        """Just before the release (only if the lock is held: a failing release must
        hand no edge to the next acquirer)."""
        locks = events._locks
        if locks is not None:
            locks.lock_released(self)
        hb = events._hb
        if hb is not None and self._raw.locked():
            with self._guard:
                self._token = hb.publish(self._token)

    # -- the lock's interface -----------------------------------------------------------

    acquire_lock = _Observed.acquire  # the old aliases the C lock still has
    release_lock = _Observed.release

    def locked(self) -> bool:
        return bool(self._raw.locked())

    def _at_fork_reinit(self) -> None:
        # The child has one thread: a guard held by a thread that did not survive the
        # fork must not stay held.
        self._raw._at_fork_reinit()
        self._guard = allocate_lock()


class ObservedRLock(_Observed):
    """A ``threading.RLock`` whose acquire/release (however reached, including
    ``Condition.wait``'s ``_release_save``/``_acquire_restore``) report edges."""

    __slots__ = ("__weakref__", "_created_at", "_raw", "_token")

    def __init__(self, raw: Any, created_at: tuple[events.SiteFrame, ...] = ()) -> None:
        self._raw = raw
        self._token: object | None = None  # guarded by the RLock: only its owner uses it
        self._created_at = created_at

    def _took(self, blocking: bool, depth: int) -> None:
        hb = events._hb  # listeners called directly, as in ObservedLock
        token = self._token
        if hb is not None and token is not None:
            hb.consume(token)
        locks = events._locks
        if locks is not None:
            locks.lock_acquired(self, blocking, depth + 1)

    def _giving_back(self) -> None:
        if not self._raw._is_owned():
            return  # the release will raise; nothing was ours to publish
        locks = events._locks
        if locks is not None:
            locks.lock_released(self)
        hb = events._hb
        if hb is not None:
            self._token = hb.publish(self._token)

    def _is_owned(self) -> bool:
        return bool(self._raw._is_owned())

    def _release_save(self) -> Any:
        """Condition.wait: release every level at once (one lock-order release: the
        checker keeps the rest of the count, and the restore below adds it back)."""
        self._giving_back()
        return self._raw._release_save()

    def _acquire_restore(self, state: Any) -> None:
        self._raw._acquire_restore(state)
        self._took(True, 1)

    def _at_fork_reinit(self) -> None:
        self._raw._at_fork_reinit()


OBSERVED_TYPES: tuple[type, ...] = (ObservedLock, ObservedRLock)


def is_observed(lock: object) -> bool:
    """True for the wrappers: they report their own edges, so the Condition patches
    must not report them a second time."""
    return type(lock) in OBSERVED_TYPES


def _creator_is_internal() -> bool:
    """Whether the factory's caller (two frames up from here) is racecheck or a
    contract-modelled module."""
    try:
        return is_internal_file(sys._getframe(2).f_code.co_filename)
    except ValueError:
        return True


class _LockFactory:
    """Stands in for ``threading.Lock``.  A callable object rather than a function
    because on 3.13 ``threading.Lock`` is the lock *type*: ``isinstance(x,
    threading.Lock)`` and ``threading.Lock | None`` must keep working."""

    def __init__(self, original: Any) -> None:
        self._original = original
        self.__doc__ = original.__doc__
        self.__module__ = getattr(original, "__module__", "threading")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raw = self._original(*args, **kwargs)
        if _creator_is_internal():
            return raw
        return ObservedLock(raw, events.creation_site(1, limit=4))

    def __instancecheck__(self, obj: object) -> bool:
        return isinstance(obj, (_RawLockType, ObservedLock))

    def __subclasscheck__(self, cls: type) -> bool:
        return issubclass(cls, (_RawLockType, ObservedLock))

    def __or__(self, other: Any) -> Any:
        return operator.or_(self._original, other)

    def __ror__(self, other: Any) -> Any:
        return operator.or_(other, self._original)

    def __getattr__(self, name: str) -> Any:
        if name == "_original":
            raise AttributeError(name)
        return getattr(self._original, name)

    def __repr__(self) -> str:
        return repr(self._original)


_patcher = Patcher()


def install_lock_factories() -> None:
    """Replace ``threading.Lock`` and ``threading.RLock`` (idempotent).

    ``threading._allocate_lock`` is left alone: only ``threading`` itself calls it
    (Condition's waiter locks, thread state locks), which must stay raw anyway.
    """
    if _patcher:
        return
    original_rlock = threading.RLock

    def RLock(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - the name it replaces
        raw = original_rlock(*args, **kwargs)
        if type(raw) is not _RawRLockType or _creator_is_internal():
            return raw  # (the pure-Python _PyRLock is Python code: nothing to wrap)
        return ObservedRLock(raw, events.creation_site(1, limit=4))

    _patcher.patch(threading, "Lock", _LockFactory(threading.Lock))
    _patcher.patch(threading, "RLock", RLock)


def uninstall_lock_factories() -> None:
    """Put back the original factories (the wrappers made meanwhile keep working)."""
    _patcher.restore()
