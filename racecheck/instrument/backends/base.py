"""The sync-capture backend interface and what every backend does with a lock call.

``threading.Lock()``/``RLock()`` return C objects: no patch can see ``lock.acquire()``.
A backend watches C calls instead (``sys.monitoring`` on 3.12+, ``sys.setprofile`` on
3.11) and turns calls of a raw lock's ``acquire``/``release`` made from *any* code that
is not racecheck's or a contract-modelled stdlib module into happens-before edges, so a
library that protects the user's data with its own lock is not reported as racy.

Since the ``threading.Lock``/``RLock`` factories return observed wrappers for locks the
user creates after install (``stdlib_locks``), the backends matter for the raw locks made
before install.  Known blind spot for those: ``with lock:`` calls ``__enter__`` without
any event on 3.11-3.13 (the rewriter covers it in instrumented code).  ``__exit__`` is seen; at that point the
thread has held the lock since its invisible acquire, so consuming the lock's token
there is sound and orders at least what follows the block.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

from racecheck.instrument.stdlib_common import RAW_LOCK_TYPES
from racecheck.instrument.stdlib_sync import LOCK_TOKENS, raw_acquired, raw_releasing
from racecheck.sync import events


class SyncBackend(Protocol):
    """One mechanism for seeing raw-lock calls; started once, stopped once."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


ACQUIRES = frozenset({"acquire", "acquire_lock"})
RELEASES = frozenset({"release", "release_lock"})
EXITS = frozenset({"__exit__"})
LOCK_METHOD_NAMES = ACQUIRES | RELEASES | EXITS | {"__enter__"}

_BuiltinMethod = type(len)
_MethodDescriptor = type(str.join)
_RLockType = RAW_LOCK_TYPES[1]


def lock_call(func: Any, arg0: Any) -> tuple[Any, str] | None:
    """``(lock, method name)`` when ``func`` (called with first argument ``arg0``) is a
    raw lock's acquire/release/__exit__, else None.  Handles bound methods and method
    descriptors (3.12+ reports ``lock.acquire()`` as the descriptor with ``arg0=lock``)."""
    kind = type(func)
    if kind is _BuiltinMethod:
        lock = func.__self__
        if type(lock) not in RAW_LOCK_TYPES:
            return None
    elif kind is _MethodDescriptor:
        if func.__objclass__ not in RAW_LOCK_TYPES or type(arg0) not in RAW_LOCK_TYPES:
            return None
        lock = arg0
    else:
        return None
    name: str = func.__name__
    return (lock, name) if name in LOCK_METHOD_NAMES else None


def _held(lock: Any) -> bool:  # lock: a raw lock
    """After an acquire returned: did it succeed?  Exact for RLock (owner); for Lock,
    ``locked()`` can be True because another thread holds it after a failed try-acquire,
    which only adds an edge (it can hide a race, never invent one)."""
    if type(lock) is _RLockType:
        return bool(lock._is_owned())  # type: ignore[attr-defined]
    return bool(lock.locked())


def _nobody_listens() -> bool:
    """No detector and no lock-order checker: the backend has nothing to report."""
    return events._hb is None and events._locks is None


def before_call(lock: Any, name: str) -> None:
    if _nobody_listens():
        return
    if name in RELEASES:
        raw_releasing(lock)
    elif name in EXITS:
        LOCK_TOKENS.acquire(lock)  # the invisible __enter__'s edge, late but sound
        raw_releasing(lock)


def after_return(lock: Any, name: str, depth: int) -> None:
    if name in ACQUIRES and not _nobody_listens() and _held(lock):
        raw_acquired(lock, True, depth + 1)


def choose_backend() -> SyncBackend:
    """The backend for this interpreter: sys.monitoring on 3.12+, else setprofile."""
    if sys.version_info >= (3, 12):
        from racecheck.instrument.backends.sysmon import SysMonitoringBackend

        return SysMonitoringBackend()
    from racecheck.instrument.backends.settrace import SetProfileBackend

    return SetProfileBackend()
