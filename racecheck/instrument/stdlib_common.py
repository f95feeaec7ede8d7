"""Shared machinery of the stdlib patches: reversible patching, who-is-calling checks,
and the token tables that hold happens-before tokens next to stdlib objects.

Why a separate module: the thread, lock, queue and futures patches all need the same
three things, and each must stay small.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from types import CodeType, FunctionType
from typing import Any
from weakref import WeakKeyDictionary

from racecheck._rawsync import allocate_lock
from racecheck.sync import events

_MISSING = object()


class Patcher:
    """Replaces attributes and puts back exactly what was there.

    An attribute the owner only inherited is deleted again on restore (not set to the
    inherited value), so ``vars(cls)`` is identical before and after.
    """

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, object]] = []

    def patch(self, owner: Any, name: str, value: object) -> None:
        own = vars(owner).get(name, _MISSING) if hasattr(owner, "__dict__") else _MISSING
        self._saved.append((owner, name, own))
        original = getattr(owner, name, None)
        if isinstance(value, FunctionType) and isinstance(original, FunctionType):
            # Reports (a leaked thread's target, tracebacks' names) keep saying
            # ``threading.Event.wait``, not the name of racecheck's stand-in.
            value.__name__ = original.__name__
            value.__qualname__ = original.__qualname__
            value.__module__ = original.__module__
            value.__doc__ = original.__doc__
        setattr(owner, name, value)

    def restore(self) -> None:
        while self._saved:
            owner, name, own = self._saved.pop()
            if own is _MISSING:
                try:
                    delattr(owner, name)
                except AttributeError:
                    pass
            else:
                setattr(owner, name, own)

    def __bool__(self) -> bool:
        return bool(self._saved)


# --- who is calling -------------------------------------------------------------------

_RACECHECK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module_dir(name: str) -> str:
    module = sys.modules.get(name)
    if module is None:
        __import__(name)
        module = sys.modules[name]
    return os.path.dirname(os.path.abspath(module.__file__ or ""))


def _stdlib_file(name: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(threading.__file__)), name)


#: Files (or directories, ending in a separator) whose synchronisation racecheck models
#: by contract, so their internal locks, conditions and events must add no edges.
INTERNAL_PREFIXES: tuple[str, ...] = (
    _RACECHECK_DIR + os.sep,
    os.path.abspath(threading.__file__),
    _stdlib_file("queue.py"),
    _stdlib_file("_threading_local.py"),
    _stdlib_file("concurrent") + os.sep,
    _stdlib_file("asyncio") + os.sep,
    _stdlib_file(os.path.join("multiprocessing", "pool.py")),
    _stdlib_file(os.path.join("multiprocessing", "dummy")) + os.sep,
)

_internal_cache: dict[str, bool] = {}
"""A memo of pure, idempotent verdicts.  Deliberately lock-free: the backends call
:func:`is_internal_file` from inside profile/monitoring callbacks, which can fire while
racecheck itself holds a lock (the ``__exit__`` of a ``with`` block is a C call), so
taking a lock here could self-deadlock.  Single ``dict`` get/set calls are thread-safe
on free-threaded builds too (per-object locks), and a lost write only costs a recompute."""


def is_internal_file(filename: str) -> bool:
    """True for racecheck's own files and the stdlib modules whose contract is modelled."""
    known = _internal_cache.get(filename)
    if known is not None:
        return known
    path = os.path.abspath(filename) if filename and not filename.startswith("<") else filename
    verdict = any(path.startswith(prefix) for prefix in INTERNAL_PREFIXES)
    _internal_cache[filename] = verdict
    return verdict


_transparent_codes: set[CodeType] = set()
"""Code objects of stdlib helpers that merely forward a user's call (``Condition.wait_for``
calls ``wait``): a call from them counts as a call from their caller."""


def add_transparent(func: Callable[..., Any]) -> None:
    _transparent_codes.add(func.__code__)


def called_from_user(depth: int) -> bool:
    """Whether the frame ``depth`` frames above the caller belongs to user code.

    racecheck frames and transparent forwarders are skipped, so ``cond.wait_for()`` in
    user code counts as user waits while ``Barrier``'s internal ``wait_for`` does not.
    """
    try:
        frame: Any = sys._getframe(depth + 1)
    except ValueError:
        return True
    while frame is not None:
        code = frame.f_code
        if code in _transparent_codes or code.co_filename.startswith(_RACECHECK_DIR):
            frame = frame.f_back
            continue
        return not is_internal_file(code.co_filename)
    return True


# --- token tables -----------------------------------------------------------------------


class ObjectTokens:
    """Happens-before tokens of weakly referenceable objects (Event, Semaphore, Future...).

    Tokens only accumulate (each publish joins into the previous token), which models
    "every release before this acquire is ordered before it".  The table lock makes the
    read-join-store of a token atomic without the GIL; entries vanish with their object.
    """

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._tokens: WeakKeyDictionary[Any, object] = WeakKeyDictionary()

    def publish(self, obj: object) -> None:
        try:
            with self._lock:
                token = events.publish(self._tokens.get(obj))
                if token is not None:
                    self._tokens[obj] = token
        except TypeError:
            pass  # unhashable or not weakly referenceable: no edge, never a broken call

    def consume(self, obj: object) -> None:
        try:
            with self._lock:
                token = self._tokens.get(obj)
        except TypeError:
            return
        events.consume(token)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


def _refcount_baseline() -> int:
    probe = RawLockTokens(prune_at=1 << 30)
    lock = allocate_lock()
    probe._entries[id(lock)] = (lock, None)
    del lock
    return probe._count_refs_of_first()


class RawLockTokens:
    """Tokens of raw ``_thread.lock`` / ``_thread.RLock`` objects.

    Raw locks are neither weakly referenceable nor patchable, so the table is keyed by
    ``id(lock)``.  An id is only meaningful while its object lives, so the table keeps a
    strong reference to each lock it has a token for: a raw lock references nothing of
    the user's, so this keeps no user object alive, and while the entry exists no other
    lock can get the same id (a stale token handed to an unrelated lock would add false
    edges and hide races).  Entries are pruned, amortised, when the table's reference is
    the only one left (``sys.getrefcount``): nobody else can ever acquire that lock again,
    so forgetting its token loses no edge.  Memory is thus bounded by the live locks
    (times two, the pruning slack).
    """

    def __init__(self, prune_at: int = 1024) -> None:
        self._lock = allocate_lock()
        self._entries: dict[int, tuple[object, object]] = {}
        self._min_prune = prune_at
        self._prune_at = prune_at

    def release(self, lock: object) -> None:
        """Publish the caller's past into ``lock``'s token (call before releasing it)."""
        key = id(lock)
        with self._lock:
            entry = self._entries.get(key)
            token = events.publish(entry[1] if entry is not None else None)
            if token is None:
                return
            self._entries[key] = (lock, token)
            if len(self._entries) >= self._prune_at:
                self._prune()

    def acquire(self, lock: object) -> None:
        """Consume ``lock``'s token (call after acquiring it)."""
        with self._lock:
            entry = self._entries.get(id(lock))
        if entry is not None:
            events.consume(entry[1])

    def _count_refs_of_first(self) -> int:
        for lock, _token in self._entries.values():
            return sys.getrefcount(lock)
        return 0

    def _prune(self) -> None:
        dead = [
            key
            for key, (lock, _token) in self._entries.items()
            if sys.getrefcount(lock) <= _BASELINE
        ]
        for key in dead:
            del self._entries[key]
        self._prune_at = max(self._min_prune, 2 * len(self._entries))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def prune(self) -> None:
        with self._lock:
            self._prune()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_BASELINE = 1 << 30  # provisional, so the probe below prunes nothing
_BASELINE = _refcount_baseline()

RAW_LOCK_TYPES: tuple[type, ...] = (type(allocate_lock()), type(threading.RLock()))
"""``_thread.lock`` and ``_thread.RLock`` (what ``threading.Lock()``/``RLock()`` return)."""
