"""Go's ``sync.Mutex``, ``sync.RWMutex`` and ``sync.Cond`` for Python threads.

Design notes (shared by every primitive in ``racecheck.sync``):

* Each primitive guards its whole state with one raw ``_thread`` lock (``_mu``) and
  sleeps on a :class:`~racecheck._rawsync.RawCondition` over it, never on ``threading``
  objects: the detector patches those, and racecheck's own locking must not look like
  user synchronisation.  Nothing relies on the GIL or on bytecode atomicity.
* Happens-before is reported with ``events.publish``/``events.consume`` while ``_mu`` is
  held, together with the state change, so the edge matches the state exactly.
* Sleeping threads loop on a predicate, so a spurious wake-up is harmless.  That is what
  makes asynchronous exceptions (``KeyboardInterrupt`` raised into a blocked thread)
  safe: a sleeper interrupted after it was woken may have swallowed a wake-up meant for
  someone else, so its exception path wakes everybody (``notify_all``) and undoes any
  state it had taken, and the waiters re-check their predicates.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from racecheck._rawsync import RawCondition, RawLock, allocate_lock
from racecheck.errors import UnlockError
from racecheck.sync import events

__all__ = ["Cond", "Locker", "Mutex", "RWMutex"]


class Locker(Protocol):
    """Anything with Go's ``sync.Locker`` shape (a Mutex, ``rw.rlocker()``)."""

    def lock(self) -> None: ...

    def unlock(self) -> None: ...


class Mutex:
    """A mutual-exclusion lock with Go's semantics.

    Not reentrant, and not owned: like Go (and ``threading.Lock``) another thread may
    unlock it.  Unlocking an unlocked Mutex raises :class:`~racecheck.errors.UnlockError`.
    Each ``unlock`` happens before the next ``lock`` returns.
    """

    __slots__ = ("_mu", "_cond", "_locked", "_sleepers", "_token", "_created_at", "__weakref__")

    def __init__(self) -> None:
        self._mu = allocate_lock()
        self._cond = RawCondition(self._mu)
        self._locked = False
        self._sleepers = 0
        self._token: object | None = None
        self._created_at = events.creation_site()

    def lock(self) -> None:
        """Block until the mutex is free, then take it."""
        self._lock(depth=2)

    def _lock(self, depth: int) -> None:
        with self._mu:
            if not self._locked:
                self._locked = True
                events.consume(self._token)
            else:
                self._sleep_until_free()
        events.lock_acquired(self, True, depth)

    def _sleep_until_free(self) -> None:
        """Slow path, ``_mu`` held: sleep until the mutex is free, then take it."""
        self._sleepers += 1
        try:
            with events.blocking(self, "Mutex.lock", created_at=self._created_at):
                while self._locked:
                    self._cond.wait()
        except BaseException:
            # Woken and interrupted before taking the lock: pass the wake-up on.
            self._sleepers -= 1
            if not self._locked and self._sleepers:
                self._cond.notify()
            raise
        self._sleepers -= 1
        self._locked = True
        events.consume(self._token)

    def try_lock(self) -> bool:
        """Take the mutex if it is free; never blocks."""
        with self._mu:
            if self._locked:
                return False
            self._locked = True
            events.consume(self._token)
        events.lock_acquired(self, False, 1)
        return True

    def unlock(self) -> None:
        """Release the mutex (any thread may); wakes one sleeper."""
        with self._mu:
            if not self._locked:
                raise UnlockError("sync: unlock of unlocked mutex")
            self._token = events.publish(self._token)
            self._locked = False
            if self._sleepers:
                self._cond.notify()
        events.lock_released(self)

    def locked(self) -> bool:
        """Whether the mutex is held right now (a snapshot, for diagnostics)."""
        with self._mu:
            return self._locked

    def __enter__(self) -> Mutex:
        self._lock(depth=2)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unlock()

    def __repr__(self) -> str:
        return f"<racecheck.Mutex {'locked' if self.locked() else 'unlocked'}>"


class RWMutex:
    """A reader/writer mutual-exclusion lock with Go's semantics.

    Any number of readers or one writer.  Writer preference: once a writer waits, new
    readers wait too, so writers cannot starve; when a writer unlocks, every reader that
    was waiting is admitted before the next writer, so readers cannot starve either.

    Happens-before (Go memory model): ``unlock`` -> next ``lock`` and every ``rlock``
    after it; each ``runlock`` -> the next ``lock``.
    """

    __slots__ = (
        "_mu",
        "_cond",
        "_writer",
        "_readers",
        "_writers_waiting",
        "_readers_waiting",
        "_admissions",
        "_w_token",
        "_r_token",
        "_created_at",
        "__weakref__",
    )

    def __init__(self) -> None:
        self._mu = allocate_lock()
        self._cond = RawCondition(self._mu)
        self._writer = False  # a writer holds the lock
        self._readers = 0  # readers holding the lock (including admitted sleepers)
        self._writers_waiting = 0
        self._readers_waiting = 0  # readers asleep that no writer unlock admitted yet
        self._admissions = 0  # bumped each time sleeping readers are admitted
        self._w_token: object | None = None  # released by unlock
        self._r_token: object | None = None  # released by every runlock
        self._created_at = events.creation_site()

    # -- writers -----------------------------------------------------------------------

    def lock(self) -> None:
        """Take the write lock: wait for the writer and every reader to leave."""
        self._lock(depth=2)

    def _lock(self, depth: int) -> None:
        with self._mu:
            if not self._writer and self._readers == 0:
                self._writer = True
            else:
                self._writers_waiting += 1
                try:
                    with events.blocking(self, "RWMutex.lock", created_at=self._created_at):
                        while self._writer or self._readers:
                            self._cond.wait()
                except BaseException:
                    self._writers_waiting -= 1
                    if not self._writers_waiting and not self._writer:
                        self._admit_readers()
                    self._cond.notify_all()
                    raise
                self._writers_waiting -= 1
                self._writer = True
            events.consume(self._w_token)
            events.consume(self._r_token)
        events.lock_acquired(self, True, depth)

    def try_lock(self) -> bool:
        """Take the write lock if nobody holds or awaits it; never blocks."""
        with self._mu:
            if self._writer or self._readers or self._writers_waiting:
                return False
            self._writer = True
            events.consume(self._w_token)
            events.consume(self._r_token)
        events.lock_acquired(self, False, 1)
        return True

    def unlock(self) -> None:
        """Release the write lock and admit every reader that was waiting."""
        with self._mu:
            if not self._writer:
                raise UnlockError("sync: Unlock of unlocked RWMutex")
            self._w_token = events.publish(self._w_token)
            self._writer = False
            self._admit_readers()
            self._cond.notify_all()
        events.lock_released(self)

    def _admit_readers(self) -> None:
        """``_mu`` held: hand the read lock to every sleeping reader at once."""
        if self._readers_waiting:
            self._readers += self._readers_waiting
            self._readers_waiting = 0
            self._admissions += 1

    # -- readers -----------------------------------------------------------------------

    def rlock(self) -> None:
        """Take a read lock; waits while a writer holds or awaits the lock."""
        self._rlock(depth=2)

    def _rlock(self, depth: int) -> None:
        with self._mu:
            if not self._writer and not self._writers_waiting:
                self._readers += 1
            else:
                ticket = self._admissions
                self._readers_waiting += 1
                try:
                    with events.blocking(self, "RWMutex.rlock", created_at=self._created_at):
                        while self._admissions == ticket:
                            self._cond.wait()
                except BaseException:
                    if self._admissions == ticket:
                        self._readers_waiting -= 1
                    else:  # admitted, then interrupted: give the read lock back
                        self._release_reader()
                    self._cond.notify_all()
                    raise
            events.consume(self._w_token)
        events.lock_acquired(self, True, depth)

    def try_rlock(self) -> bool:
        """Take a read lock if no writer holds or awaits the lock; never blocks."""
        with self._mu:
            if self._writer or self._writers_waiting:
                return False
            self._readers += 1
            events.consume(self._w_token)
        events.lock_acquired(self, False, 1)
        return True

    def runlock(self) -> None:
        """Release one read lock."""
        with self._mu:
            if self._readers == 0:
                raise UnlockError("sync: RUnlock of unlocked RWMutex")
            self._r_token = events.publish(self._r_token)
            self._release_reader()
        events.lock_released(self)

    def _release_reader(self) -> None:
        self._readers -= 1
        if self._readers == 0 and self._writers_waiting:
            self._cond.notify_all()

    def rlocker(self) -> _ReadLocker:
        """A Locker (and context manager) whose lock/unlock are rlock/runlock."""
        return _ReadLocker(self)

    def __enter__(self) -> RWMutex:
        self._lock(depth=2)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unlock()

    def __repr__(self) -> str:
        with self._mu:
            writer, readers, waiting = self._writer, self._readers, self._writers_waiting
        return f"<racecheck.RWMutex writer={writer} readers={readers} writers_waiting={waiting}>"


class _ReadLocker:
    """The read side of an RWMutex as a Locker: Go's ``rw.RLocker()``."""

    __slots__ = ("_rw",)

    def __init__(self, rw: RWMutex) -> None:
        self._rw = rw

    def lock(self) -> None:
        self._rw._rlock(depth=2)

    def unlock(self) -> None:
        self._rw.runlock()

    def __enter__(self) -> _ReadLocker:
        self._rw._rlock(depth=2)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._rw.runlock()


class Cond:
    """Go's ``sync.Cond``: a rendezvous point for threads waiting for an event.

    ``wait`` unlocks ``locker``, sleeps until a ``signal``/``broadcast`` that comes after
    it started waiting, and locks ``locker`` again before returning (also when an
    asynchronous exception interrupts it).  ``signal`` wakes the longest waiter.  The Cond
    adds no happens-before edge of its own: the locker's unlock/lock give it, as in Go.
    """

    __slots__ = ("L", "_mu", "_waiters", "_created_at", "__weakref__")

    def __init__(self, locker: Locker) -> None:
        self.L = locker
        self._mu = allocate_lock()
        self._waiters: list[RawLock] = []  # one raw lock per sleeper, oldest first
        self._created_at = events.creation_site()

    def wait(self) -> None:
        """Atomically unlock ``L`` and sleep; relock ``L`` before returning."""
        parked = allocate_lock()
        parked.acquire()
        with self._mu:
            self._waiters.append(parked)  # before unlocking: a signal after it is ours
        try:
            self.L.unlock()
        except BaseException:  # e.g. L was not locked: leave no stale ticket behind
            with self._mu:
                self._waiters.remove(parked)
            raise
        try:
            with events.blocking(self, "Cond.wait", created_at=self._created_at):
                parked.acquire()
        except BaseException:
            with self._mu:
                try:
                    self._waiters.remove(parked)
                except ValueError:  # we were signalled: pass the signal on
                    if self._waiters:
                        self._waiters.pop(0).release()
            raise
        finally:
            self.L.lock()

    def signal(self) -> None:
        """Wake the longest-waiting thread, if any."""
        with self._mu:
            if self._waiters:
                self._waiters.pop(0).release()

    def broadcast(self) -> None:
        """Wake every waiting thread."""
        with self._mu:
            waiters, self._waiters = self._waiters, []
            for parked in waiters:
                parked.release()
