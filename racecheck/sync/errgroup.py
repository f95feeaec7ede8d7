"""Go's ``golang.org/x/sync/errgroup``: run functions in threads, wait, get the first error.

``ErrGroup.with_context(parent)`` also returns a context that is cancelled (with the
error as its cause) as soon as one function raises, and when ``wait`` returns.

Happens-before: ``go`` -> the function's start (besides the thread start edge, so it holds
even without the detector's ``threading`` patches); each function's return -> ``wait``
returning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from racecheck._rawsync import RawCondition, allocate_lock
from racecheck.errors import MisuseError
from racecheck.sync import events
from racecheck.sync.goroutine import go as _go

if TYPE_CHECKING:
    from racecheck.sync.context import CancelCauseFunc, Context

__all__ = ["ErrGroup"]


class ErrGroup:
    """A group of threads working on subtasks of one task (Go's ``errgroup.Group``).

    A zero group (``ErrGroup()``) has no limit and no context.  ``wait`` blocks until every
    function started with ``go``/``try_go`` has finished, then re-raises the first
    exception any of them raised (the others are dropped, as in Go).
    """

    __slots__ = (
        "_mu",
        "_cond",
        "_active",
        "_limit",
        "_error",
        "_cancel",
        "_token",
        "_created_at",
        "__weakref__",
    )

    def __init__(self) -> None:
        self._mu = allocate_lock()
        self._cond = RawCondition(self._mu)
        self._active = 0  # functions started and not yet returned
        self._limit = -1  # negative: no limit
        self._error: BaseException | None = None
        self._cancel: CancelCauseFunc | None = None
        self._token: object | None = None  # every function's return joined in
        self._created_at = events.creation_site()

    @classmethod
    def with_context(cls, parent: Context) -> tuple[ErrGroup, Context]:
        """A group and a child context of ``parent`` it cancels on the first error and
        when ``wait`` returns."""
        from racecheck.sync.context import with_cancel_cause

        group = cls()
        ctx, cancel = with_cancel_cause(parent)
        group._cancel = cancel
        return group, ctx

    def set_limit(self, n: int) -> None:
        """At most ``n`` functions active at once (negative: no limit).  Changing it while
        functions are active is an error, as in Go."""
        with self._mu:
            if self._active:
                raise MisuseError(
                    f"errgroup: modify limit while {self._active} goroutines in the group "
                    "are still active"
                )
            self._limit = n

    def go(self, fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> None:
        """Run ``fn(*args, **kwargs)`` in a new thread; blocks while the limit is reached."""
        with self._mu:
            if 0 <= self._limit <= self._active:
                with events.blocking(self, "ErrGroup.go", created_at=self._created_at):
                    while 0 <= self._limit <= self._active:
                        self._cond.wait()
            self._active += 1
        self._start(fn, args, kwargs)

    def try_go(self, fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> bool:
        """Like ``go`` if the limit allows a new function now; else False, never blocks."""
        with self._mu:
            if 0 <= self._limit <= self._active:
                return False
            self._active += 1
        self._start(fn, args, kwargs)
        return True

    def _start(self, fn: Callable[..., object], args: Any, kwargs: Any) -> None:
        token = events.publish(None)
        try:
            _go(self._run, token, fn, args, kwargs)
        except BaseException:
            self._finished()
            raise

    def _run(self, token: object | None, fn: Callable[..., object], args: Any, kwargs: Any) -> None:
        events.consume(token)
        try:
            fn(*args, **kwargs)
        except BaseException as exc:  # delivered to wait(), never lost
            with self._mu:
                first = self._error is None
                if first:
                    self._error = exc
                cancel = self._cancel
            if first and cancel is not None:
                cancel(exc)
        finally:
            self._finished()

    def _finished(self) -> None:
        with self._mu:
            self._token = events.publish(self._token)
            self._active -= 1
            self._cond.notify_all()

    def wait(self) -> None:
        """Block until every function returned; cancel the context; re-raise the first
        exception, if any."""
        with self._mu:
            if self._active:
                with events.blocking(self, "ErrGroup.wait", created_at=self._created_at):
                    while self._active:
                        self._cond.wait()
            events.consume(self._token)
            error, cancel = self._error, self._cancel
        if cancel is not None:
            cancel(error)
        if error is not None:
            raise error
