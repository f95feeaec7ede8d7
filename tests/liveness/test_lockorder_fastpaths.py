"""The lock-order checker's one-lock-at-a-time fast paths: robust where they run (inside
a user's critical section, from C callers, under signal handlers)."""

from __future__ import annotations

import threading

from racecheck.liveness.lockorder import LockOrderChecker


class _Lock:
    """Any weak-referenceable object stands for a lock here."""


def _warm(checker: LockOrderChecker, lock: object) -> None:
    checker.lock_acquired(lock, True, 1)  # slow path: registers the thread and the node
    checker.lock_released(lock)


def test_fast_path_with_no_python_caller_does_not_raise() -> None:
    """``_thread.start_new_thread(lock.acquire, ())`` has no Python frame above the
    acquire: the site is unknown, and the acquisition must still be recorded."""
    c = LockOrderChecker()
    lock = _Lock()
    _warm(c, lock)
    c.lock_acquired(lock, True, 10_000)  # deeper than the stack: sys._getframe fails
    assert [h.serial for h in c._local.held] != []
    c.lock_released(lock)
    assert c._local.held == []


def test_reentry_from_inside_a_held_stack_update_does_not_deadlock() -> None:
    """A signal handler may run inside the fast path's section and take a lock itself."""
    c = LockOrderChecker()
    outer, inner = _Lock(), _Lock()
    _warm(c, outer)
    _warm(c, inner)
    done = threading.Event()

    def body() -> None:
        with c._local.mutex:  # as if interrupted inside the section
            c.lock_acquired(inner, True, 1)
            c.lock_released(inner)
        done.set()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    assert done.wait(10), "re-entering the held-stack section deadlocked"
