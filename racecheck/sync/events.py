"""The one place a primitive announces what the detectors need to know.

Every racecheck primitive (and racecheck's patches of ``threading``/``queue``/...) reports
through the functions here and nowhere else:

* **happens-before**: ``publish()`` snapshots the calling thread's past into an opaque
  token (a release); ``consume(token)`` makes the calling thread's future follow it (an
  acquire).  Primitives keep the tokens themselves, next to the state they guard (a
  Mutex keeps the token of its last unlock, a buffered channel keeps one per value), so
  the engine needs no table keyed by primitive.  Both must be called while the
  primitive's internal lock is held, together with the state change they describe, so
  the edge is right without the GIL.
* **audits**: ``audit(obj, op, what)`` records an access to a primitive as if it were
  memory (a channel ``close`` is a write of the channel, every ``send`` a read), so the
  detector reports misuse that only some schedules would crash on.
* **locks held**: ``lock_acquired`` / ``lock_released`` feed the lock-order graph.
* **blocking**: ``blocking(obj, what)`` brackets every operation that may sleep, so the
  leak and deadlock checkers can say what a thread waits on, on which object (with its
  creation site) and since when.

When nothing listens every function is a cheap no-op: the listeners are module globals
read once per call, and installing one is a single reference store.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from racecheck._frames import user_frames
from racecheck._rawsync import allocate_lock, get_ident

AccessOp = Literal["read", "write", "mutate", "iterate"]
"""``mutate`` and ``iterate`` are the third kind of access: mutations are atomic writes
that conflict with iterations (``iterate``) but never with each other, and iterations
never conflict with each other (container mutations vs iterations; WaitGroup add vs
wait)."""

SiteFrame = tuple[str, int, str]
"""(filename, line number, function name): one frame of a creation site."""


class HappensBefore(Protocol):
    """What the race detector implements to learn about synchronisation."""

    def publish(self, into: object | None) -> object:
        """Release: return a token holding the calling thread's clock joined with ``into``
        (a token from an earlier ``publish``, or None)."""

    def consume(self, token: object) -> None:
        """Acquire: order everything ``token`` holds before the calling thread's future."""

    def audit(self, obj: object, op: AccessOp, what: str, depth: int) -> None:
        """An access to primitive ``obj`` by the calling thread; ``what`` names the
        operation (``"send"``, ``"close"``...); ``depth`` frames up is the user's call."""


class LockListener(Protocol):
    """What the lock-order checker implements."""

    def lock_acquired(self, lock: object, blocking: bool, depth: int) -> None: ...

    def lock_released(self, lock: object) -> None: ...


class BlockListener(Protocol):
    """What the deadlock checker implements: called after a thread registers as blocked
    and after it unregisters."""

    def blocked(self, info: BlockInfo) -> None: ...

    def unblocked(self, info: BlockInfo) -> None: ...


# The listeners.  Replaced as a whole (never mutated), so a reader sees either the old or
# the new one, with or without the GIL.
_hb: HappensBefore | None = None
_locks: LockListener | None = None
_blocks: BlockListener | None = None


def set_happens_before(listener: HappensBefore | None) -> None:
    global _hb
    _hb = listener


def set_lock_listener(listener: LockListener | None) -> None:
    global _locks
    _locks = listener


def set_block_listener(listener: BlockListener | None) -> None:
    global _blocks
    _blocks = listener


def publish(into: object | None = None) -> object | None:
    """Release the calling thread's past into a token (None when no detector listens)."""
    hb = _hb
    if hb is None:
        return into
    return hb.publish(into)


def consume(token: object | None) -> None:
    """Acquire a token from :func:`publish` (None is a no-op)."""
    hb = _hb
    if hb is not None and token is not None:
        hb.consume(token)


def audit(obj: object, op: AccessOp, what: str, depth: int = 1) -> None:
    """Record an access to a primitive; ``depth`` counts frames from the caller of
    ``audit`` up to the user's frame that called the primitive's public method."""
    hb = _hb
    if hb is not None:
        hb.audit(obj, op, what, depth + 1)


def lock_acquired(lock: object, blocking: bool = True, depth: int = 1) -> None:
    """A lock-like primitive was acquired by the calling thread.  ``blocking`` is False
    for a ``try_lock`` (which cannot deadlock, so it adds no lock-order edge)."""
    ll = _locks
    if ll is not None:
        ll.lock_acquired(lock, blocking, depth + 1)


def lock_released(lock: object) -> None:
    ll = _locks
    if ll is not None:
        ll.lock_released(lock)


def creation_site(depth: int = 1, limit: int = 8) -> tuple[SiteFrame, ...]:
    """The stack of the caller ``depth`` frames up, innermost first, as plain tuples.

    Primitives record it in ``__init__`` so reports can say where a channel or mutex was
    made.  Plain tuples, never frames: a frame would keep the user's locals alive.
    Which frames count is ``racecheck._frames.user_frames``'s rule.
    """
    try:
        frame: Any = sys._getframe(depth + 1)
    except ValueError:
        return ()
    return tuple(
        (f.f_code.co_filename, f.f_lineno, f.f_code.co_name) for f in user_frames(frame, limit)
    )


_PACKAGE_DIR = __file__.rsplit("/sync/", 1)[0].rsplit("\\sync\\", 1)[0]


@dataclass(slots=True)
class BlockInfo:
    """What one thread is blocked on: the operation in Go's words (``chan receive``,
    ``select``, ``WaitGroup.wait``, ``Mutex.lock``...), the primitive, where it was
    created, since when (``time.monotonic()``), and whether the wait has a timeout (a
    wait with a timeout can always make progress, so it never counts towards a
    deadlock).  ``wake``, when the primitive provides it, wakes the blocked thread so it
    re-checks its state (the deadlock checker uses it after raising ``DeadlockError``
    into the thread)."""

    thread_ident: int
    what: str
    obj: object
    created_at: tuple[SiteFrame, ...]
    since: float
    timeout: float | None
    wake: Callable[[], object] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_registry_lock = allocate_lock()
_blocked: dict[int, BlockInfo] = {}


class blocking:  # noqa: N801 - used like a function: ``with events.blocking(...)``
    """Register the calling thread as blocked on ``obj`` for the duration of the block.

    Primitives enter it only on their slow path (when they are about to sleep), so the
    fast path pays nothing.  Nested use (a select waiting on several channels) keeps the
    outermost registration.  A class rather than a generator-based context manager:
    it sits on every blocking hand-off of a channel, where the generator machinery was
    measurable.
    """

    __slots__ = ("_info", "_outer")

    def __init__(
        self,
        obj: object,
        what: str,
        timeout: float | None = None,
        created_at: tuple[SiteFrame, ...] = (),
        wake: Callable[[], object] | None = None,
    ) -> None:
        self._info = BlockInfo(
            get_ident(), what, obj, created_at, time.monotonic(), timeout, wake
        )
        self._outer: BlockInfo | None = None

    def __enter__(self) -> BlockInfo:
        info = self._info
        with _registry_lock:
            outer = _blocked.get(info.thread_ident)
            if outer is None:
                _blocked[info.thread_ident] = info
        if outer is not None:
            self._outer = outer
            return outer
        listener = _blocks
        if listener is not None:
            try:
                listener.blocked(info)
            except BaseException:
                self._unregister()
                raise
        return info

    def __exit__(self, *exc: object) -> None:
        if self._outer is None:
            self._unregister()

    def _unregister(self) -> None:
        info = self._info
        with _registry_lock:
            if _blocked.get(info.thread_ident) is info:
                del _blocked[info.thread_ident]
        listener = _blocks
        if listener is not None:
            listener.unblocked(info)


def blocked_threads() -> dict[int, BlockInfo]:
    """A snapshot of every thread blocked in a racecheck primitive, by thread ident."""
    with _registry_lock:
        return dict(_blocked)
