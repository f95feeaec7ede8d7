"""Synchronisation capture for the stdlib: the public face of the ``stdlib_*`` modules.

``install(lifecycle)`` patches ``threading``, ``queue``, ``concurrent.futures``,
``multiprocessing.pool`` and asyncio's ``call_soon_threadsafe`` so that the edges their
*documented contracts* promise reach the detector (through ``racecheck.sync.events``
for happens-before, and ``lifecycle`` for threads), and nothing more: the locks and
conditions those modules use internally add no edges, or they would hide races.
``uninstall()`` puts back every original attribute exactly.  Both are idempotent.

While installed, ``threading.Lock()``/``RLock()`` called from the user's code return
:class:`ObservedLock`/:class:`ObservedRLock` (``stdlib_locks``), whose every acquire and
release, ``with`` included, reports its edges.  Raw locks (made before install, or by
the modelled modules, C objects) are covered by :func:`wrap_with` (``with lock:`` in
rewritten code) and by the sync backends (``racecheck.instrument.backends``) for
``acquire()``/``release()`` calls anywhere.

``track_threads()``/``untrack_threads()`` (refcounted, independent of detection) record
what the leak checker needs: :func:`thread_created_at`, :func:`thread_target`,
:func:`live_executors`, :func:`executor_of`.
"""

from __future__ import annotations

from racecheck._rawsync import allocate_lock
from racecheck._types import ThreadLifecycle
from racecheck.instrument import (
    stdlib_futures,
    stdlib_imports,
    stdlib_queue,
    stdlib_sync,
    stdlib_threads,
)
from racecheck.instrument.stdlib_locks import ObservedLock, ObservedRLock, is_observed
from racecheck.instrument.stdlib_sync import LOCK_TOKENS, raw_acquired, raw_releasing, wrap_with
from racecheck.instrument.stdlib_threads import (
    ExecutorRecord,
    capture_stack,
    executor_of,
    live_executors,
    thread_created_at,
    thread_target,
    track_threads,
    untrack_threads,
)

__all__ = [
    "LOCK_TOKENS",
    "ExecutorRecord",
    "ObservedLock",
    "ObservedRLock",
    "capture_stack",
    "executor_of",
    "install",
    "installed",
    "is_observed",
    "live_executors",
    "raw_acquired",
    "raw_releasing",
    "thread_created_at",
    "thread_target",
    "track_threads",
    "uninstall",
    "untrack_threads",
    "wrap_with",
]

_switch = allocate_lock()
_installed = False


def install(lifecycle: ThreadLifecycle) -> None:
    """Start reporting stdlib synchronisation (idempotent; a second call only swaps the
    lifecycle listener)."""
    global _installed
    with _switch:
        stdlib_threads.install_lifecycle(lifecycle)
        if _installed:
            return
        stdlib_sync.install_sync()
        stdlib_queue.install_queue()
        stdlib_futures.install_futures()
        stdlib_imports.install_imports()
        stdlib_threads.set_executor_shutdown_hook(stdlib_futures.executor_shut_down)
        _installed = True


def uninstall() -> None:
    """Remove every patch (idempotent).  Thread tracking for the leak checker stays if
    someone still holds it."""
    global _installed
    with _switch:
        stdlib_threads.set_executor_shutdown_hook(None)
        stdlib_imports.uninstall_imports()
        stdlib_futures.uninstall_futures()
        stdlib_queue.uninstall_queue()
        stdlib_sync.uninstall_sync()
        stdlib_threads.uninstall_lifecycle()
        _installed = False


def installed() -> bool:
    with _switch:
        return _installed
