"""The building blocks racecheck's own code synchronises with.

racecheck patches the Python-level ``threading`` classes to observe the user's
synchronisation.  Its own primitives must not be seen as user synchronisation (an edge
from a Chan's internal lock would hide races the Go memory model says exist), so they are
built only from the raw ``_thread`` lock, which is never patched, and the small condition
variable below.
"""

from __future__ import annotations

import _thread
import time
from collections import deque
from typing import Any

allocate_lock = _thread.allocate_lock
RawLock = _thread.LockType
get_ident = _thread.get_ident


class RawCondition:
    """A condition variable over a raw lock, with ``threading.Condition``'s waiter-lock
    design: each waiter blocks on a private lock that a notifier releases.  Unlike
    ``threading.Condition`` it is never patched, so waiting on it is invisible to the
    detector."""

    __slots__ = ("lock", "_waiters")

    def __init__(self, lock: Any | None = None) -> None:
        self.lock = lock if lock is not None else _thread.allocate_lock()
        self._waiters: deque[Any] = deque()

    def __enter__(self) -> bool:
        return bool(self.lock.acquire())

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, block until notified (or ``timeout``), re-acquire.

        Must be called with the lock held.  Returns False on timeout.  The lock is
        re-acquired even when an asynchronous exception interrupts the wait, so callers'
        invariants hold on every exit path.
        """
        waiter = _thread.allocate_lock()
        waiter.acquire()
        self._waiters.append(waiter)
        self.lock.release()
        got = False
        try:
            if timeout is None:
                got = waiter.acquire()
            elif timeout > 0:
                got = waiter.acquire(True, timeout)
            else:
                got = waiter.acquire(False)
            return got
        finally:
            self.lock.acquire()
            if not got:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass

    def wait_for(self, predicate: Any, timeout: float | None = None) -> bool:
        """Wait until ``predicate()`` is true; False if ``timeout`` passed first."""
        end = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            if end is None:
                self.wait()
            else:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.wait(left)
            result = predicate()
        return bool(result)

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters.  Must be called with the lock held."""
        waiters = self._waiters
        while waiters and n > 0:
            waiters.popleft().release()
            n -= 1

    def notify_all(self) -> None:
        self.notify(len(self._waiters))
