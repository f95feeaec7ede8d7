"""Go's ``sync.WaitGroup``, ``sync.Once`` and ``x/sync/semaphore.Weighted``.

Same design as :mod:`racecheck.sync.locks`: one raw lock per primitive guarding all its
state, sleepers loop on predicates over a RawCondition, happens-before tokens published
and consumed under that lock, and exception paths that undo what the thread took and
wake everybody so an asynchronous exception never loses a wake-up.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from racecheck._rawsync import RawCondition, allocate_lock
from racecheck.errors import SemaphoreMisuse, WaitGroupMisuse
from racecheck.sync import events
from racecheck.sync.goroutine import go as _go

if TYPE_CHECKING:
    import threading

    from racecheck.sync.context import Context

__all__ = ["Once", "Semaphore", "WaitGroup"]


class WaitGroup:
    """Wait for a collection of threads to finish (Go's ``sync.WaitGroup``).

    Every ``done`` happens before the ``wait`` it releases returns.  Misuse raises
    :class:`~racecheck.errors.WaitGroupMisuse` with Go's words.  For the detector, an
    ``add`` that raises the counter from zero is a ``mutate`` of the group and every
    ``wait`` an ``iterate``, so the classic bug (``add`` inside the spawned thread) is
    reported on every schedule, not only on the unlucky one.
    """

    __slots__ = (
        "_mu",
        "_cond",
        "_count",
        "_waiters",
        "_releasing",
        "_generation",
        "_token",
        "_created_at",
        "__weakref__",
    )

    def __init__(self) -> None:
        self._mu = allocate_lock()
        self._cond = RawCondition(self._mu)
        self._count = 0
        self._waiters = 0  # threads asleep in wait() for the current generation
        self._releasing = 0  # woken waiters of earlier generations that have not returned
        self._generation = 0  # bumped each time the counter reaches zero with waiters
        self._token: object | None = None  # every done() joined in
        self._created_at = events.creation_site()

    def add(self, delta: int = 1) -> None:
        """Add ``delta`` (may be negative) to the counter; at zero, release the waiters."""
        self._add(delta, depth=2)

    def _add(self, delta: int, depth: int) -> None:
        with self._mu:
            old = self._count
            new = old + delta
            if new < 0:
                raise WaitGroupMisuse("sync: negative WaitGroup counter")
            if old == 0 and delta > 0 and self._releasing:
                raise WaitGroupMisuse("sync: WaitGroup is reused before previous Wait has returned")
            if delta < 0:
                self._token = events.publish(self._token)
            self._count = new
            if new == 0 and self._waiters:
                self._generation += 1
                self._releasing += self._waiters
                self._waiters = 0
                self._cond.notify_all()
        if old == 0 and delta > 0:
            events.audit(self, "mutate", "add", depth)

    def done(self) -> None:
        """Decrement the counter by one."""
        self._add(-1, depth=2)

    def wait(self) -> None:
        """Block until the counter is zero."""
        events.audit(self, "iterate", "wait", 1)
        with self._mu:
            if self._count == 0:
                events.consume(self._token)
                return
            generation = self._generation
            self._waiters += 1
        # Leave the blocked registry (whose listener may run arbitrary code) without the
        # lock held, and only then count ourselves out of the released generation: until
        # then an add() from zero is Go's "reused before previous Wait has returned".
        try:
            with events.blocking(self, "WaitGroup.wait", created_at=self._created_at):
                with self._mu:
                    while self._generation == generation:
                        self._cond.wait()
        finally:
            with self._mu:
                if self._generation == generation:  # interrupted before the release
                    self._waiters -= 1
                else:
                    self._releasing -= 1
                    events.consume(self._token)

    def go(self, fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> threading.Thread:
        """Go 1.25's ``wg.Go``: ``add(1)``, run ``fn`` in a new thread, ``done`` after it."""
        self._add(1, depth=2)

        def run() -> None:
            try:
                fn(*args, **kwargs)
            finally:
                self.done()

        try:
            return _go(run)
        except BaseException:
            self.done()
            raise

    def __repr__(self) -> str:
        with self._mu:
            return f"<racecheck.WaitGroup count={self._count}>"


class Once:
    """Run a function exactly once (Go's ``sync.Once``).

    Concurrent callers of ``do`` wait until the first call's function returns; its return
    happens before every ``do`` returns.  If the function raises, the Once is still done
    and the exception reaches the first caller only.
    """

    __slots__ = ("_mu", "_cond", "_done", "_running", "_token", "_created_at", "__weakref__")

    def __init__(self) -> None:
        self._mu = allocate_lock()
        self._cond = RawCondition(self._mu)
        self._done = False
        self._running = False
        self._token: object | None = None
        self._created_at = events.creation_site()

    def do(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` if and only if no call of ``do`` on this Once called it before."""
        with self._mu:
            if self._done:
                events.consume(self._token)
                return
            if self._running:
                with events.blocking(self, "Once.do", created_at=self._created_at):
                    while not self._done:
                        self._cond.wait()
                events.consume(self._token)
                return
            self._running = True
        try:
            fn()
        finally:
            with self._mu:
                self._done = True
                self._token = events.publish(self._token)
                self._cond.notify_all()

    def done(self) -> bool:
        """Whether a ``do`` call has finished running its function (a snapshot)."""
        with self._mu:
            return self._done


class _Acquirer:
    """One thread asleep in :meth:`Semaphore.acquire`."""

    __slots__ = ("weight", "granted", "cancelled", "token")

    def __init__(self, weight: int) -> None:
        self.weight = weight
        self.granted = False
        self.cancelled = False
        self.token: object | None = None


class Semaphore:
    """A weighted semaphore (Go's ``x/sync/semaphore.Weighted``), FIFO like Go's.

    A waiter at the head of the queue is served before any later acquire, even a smaller
    one that would fit, so a large acquire cannot starve.  ``release`` happens before the
    ``acquire`` it lets through returns.
    """

    __slots__ = ("_mu", "_cond", "_size", "_cur", "_queue", "_token", "_created_at", "__weakref__")

    def __init__(self, n: int) -> None:
        if n < 0:
            raise ValueError("semaphore size must be >= 0")
        self._mu = allocate_lock()
        self._cond = RawCondition(self._mu)
        self._size = n
        self._cur = 0
        self._queue: deque[_Acquirer] = deque()
        self._token: object | None = None
        self._created_at = events.creation_site()

    def acquire(self, weight: int = 1, ctx: Context | None = None) -> None:
        """Acquire ``weight``, blocking until it is available or ``ctx`` is done.

        Raises the context's error (a fresh ``Canceled``/``DeadlineExceeded``) if ``ctx``
        is done first; then nothing is acquired.  Acquiring more than the size waits for
        ``ctx`` (forever without one), as in Go.
        """
        if ctx is not None:
            err = ctx.err()
            if err is not None:
                raise type(err)()
        with self._mu:
            if self._size - self._cur >= weight and not self._queue:
                self._cur += weight
                events.consume(self._token)
                return
            me = _Acquirer(weight)
            if weight <= self._size:  # a doomed acquire must not block the others
                self._queue.append(me)
        remove_callback = None if ctx is None else ctx._on_cancel(lambda: self._cancel(me))
        try:
            with events.blocking(self, "Semaphore.acquire", created_at=self._created_at):
                with self._mu:
                    try:
                        while not me.granted and not me.cancelled:
                            self._cond.wait()
                    except BaseException:
                        self._withdraw(me)
                        raise
                    if me.granted:
                        events.consume(me.token)
                        return
                    self._withdraw(me)
        finally:
            if remove_callback is not None:
                remove_callback()
        assert ctx is not None
        err = ctx.err()
        raise type(err)() if err is not None else RuntimeError("context not done")

    def _cancel(self, me: _Acquirer) -> None:
        with self._mu:
            me.cancelled = True
            self._cond.notify_all()

    def _withdraw(self, me: _Acquirer) -> None:
        """``_mu`` held: undo a waiting acquire, whether or not it was granted."""
        if me.granted:
            self._cur -= me.weight
            self._grant()
        else:
            at_front = bool(self._queue) and self._queue[0] is me
            try:
                self._queue.remove(me)
            except ValueError:
                pass
            if at_front:
                self._grant()
        self._cond.notify_all()

    def try_acquire(self, weight: int = 1) -> bool:
        """Acquire ``weight`` if it is available now and nobody waits; never blocks."""
        with self._mu:
            if self._size - self._cur >= weight and not self._queue:
                self._cur += weight
                events.consume(self._token)
                return True
            return False

    def release(self, weight: int = 1) -> None:
        """Give back ``weight``; hands it to waiters in FIFO order."""
        with self._mu:
            if self._cur - weight < 0:
                raise SemaphoreMisuse("semaphore: released more than held")
            self._token = events.publish(self._token)
            self._cur -= weight
            self._grant()

    def _grant(self) -> None:
        """``_mu`` held: hand the free weight to queued acquirers, oldest first."""
        woke = False
        while self._queue:
            head = self._queue[0]
            if self._size - self._cur < head.weight:
                break
            self._cur += head.weight
            head.granted = True
            head.token = self._token
            self._queue.popleft()
            woke = True
        if woke:
            self._cond.notify_all()
