"""Go's ``context`` package: cancellation, deadlines and request-scoped values.

``ctx.done()`` is a :class:`~racecheck.sync.chan.Chan` closed on cancellation, so it works
in ``select`` and its close gives the Go memory model's edge ``cancel()`` -> receive from
``ctx.done()``.  ``err()`` returning non-None is ordered after the cancellation too (Go's
``Err`` reads under the context's mutex).

Lost cancels (Go vet's ``lostcancel``, checked at run time): a context from
``with_cancel``/``with_timeout``/``with_deadline``/``with_cancel_cause`` whose cancel
function was never called and which got garbage-collected is recorded with its creation
site; the leak checker reads :func:`lost_cancels`.  Nothing here keeps a context alive for
that: a ``weakref.finalize`` does the recording and calling the cancel function detaches
it.  As in Go, a cancellable parent keeps its children alive until it is cancelled, so a
lost child is seen once its parent is done or gone.
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from racecheck._rawsync import allocate_lock
from racecheck.sync import events
from racecheck.sync.chan import Chan
from racecheck.sync.events import SiteFrame

__all__ = [
    "CancelCauseFunc",
    "CancelFunc",
    "Canceled",
    "Context",
    "DeadlineExceeded",
    "LostCancel",
    "background",
    "cause",
    "clear_lost_cancels",
    "lost_cancels",
    "todo",
    "with_cancel",
    "with_cancel_cause",
    "with_deadline",
    "with_timeout",
    "with_value",
]

CancelFunc = Callable[[], None]
CancelCauseFunc = Callable[..., None]  # cancel(cause: BaseException | None = None)


class Canceled(Exception):
    """The context was cancelled (Go's ``context.Canceled``)."""

    def __init__(self, message: str = "context canceled") -> None:
        super().__init__(message)


class DeadlineExceeded(TimeoutError):
    """The context's deadline passed (Go's ``context.DeadlineExceeded``)."""

    def __init__(self, message: str = "context deadline exceeded") -> None:
        super().__init__(message)


def _noop() -> None:
    pass


class Context:
    """The interface every context implements (Go's ``context.Context``).

    Build contexts with :func:`background` and the ``with_*`` functions; this class is
    public for type annotations and ``isinstance``.
    """

    __slots__ = ("__weakref__",)

    def done(self) -> Chan[None]:
        """A channel closed when the context is cancelled (never, for background)."""
        raise NotImplementedError

    def err(self) -> BaseException | None:
        """None until cancelled, then a ``Canceled`` or ``DeadlineExceeded`` instance."""
        raise NotImplementedError

    def value(self, key: object) -> Any:
        """The value bound to ``key`` by ``with_value`` here or in an ancestor, or None."""
        raise NotImplementedError

    def deadline(self) -> float | None:
        """The ``time.monotonic()`` instant the context expires, or None."""
        raise NotImplementedError

    # -- internals shared with the other primitives (Semaphore, ErrGroup) ----------------

    def _cancel_ctx(self) -> _CancelCtx | None:
        """The nearest cancellable context at or above this one."""
        raise NotImplementedError

    def _on_cancel(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn`` (from the cancelling thread, no lock held) once this context is
        cancelled, at once if it already is.  Returns a function that unregisters it."""
        cc = self._cancel_ctx()
        return _noop if cc is None else cc._register(fn)


class _EmptyCtx(Context):
    """``background()`` and ``todo()``: never cancelled, no values, no deadline."""

    __slots__ = ("_name", "_never")

    def __init__(self, name: str) -> None:
        self._name = name
        self._never: Chan[None] = Chan()

    def done(self) -> Chan[None]:
        return self._never

    def err(self) -> BaseException | None:
        return None

    def value(self, key: object) -> Any:
        return None

    def deadline(self) -> float | None:
        return None

    def _cancel_ctx(self) -> _CancelCtx | None:
        return None

    def __repr__(self) -> str:
        return self._name


class _CancelCtx(Context):
    """A context that can be cancelled: by its cancel function, its parent, a deadline."""

    __slots__ = (
        "_parent",
        "_mu",
        "_done",
        "_err",
        "_cause",
        "_token",
        "_children",
        "_callbacks",
        "_deadline",
        "_timer",
        "_kind",
    )

    def __init__(self, parent: Context, deadline: float | None, kind: str) -> None:
        self._parent = parent
        self._mu = allocate_lock()
        self._done: Chan[None] = Chan()
        self._err: BaseException | None = None
        self._cause: BaseException | None = None
        self._token: object | None = None
        self._children: set[_CancelCtx] = set()
        self._callbacks: list[Callable[[], None]] = []
        self._deadline = deadline
        self._timer: Any = None
        self._kind = kind

    def done(self) -> Chan[None]:
        return self._done

    def err(self) -> BaseException | None:
        with self._mu:
            if self._err is not None:
                events.consume(self._token)
            return self._err

    def value(self, key: object) -> Any:
        return self._parent.value(key)

    def deadline(self) -> float | None:
        return self._deadline

    def _cancel_ctx(self) -> _CancelCtx | None:
        return self

    def _register(self, fn: Callable[[], None]) -> Callable[[], None]:
        with self._mu:
            if self._err is None:
                self._callbacks.append(fn)
                registered = True
            else:
                registered = False
        if not registered:
            fn()
            return _noop

        def remove() -> None:
            with self._mu:
                try:
                    self._callbacks.remove(fn)
                except ValueError:
                    pass

        return remove

    def _cancel(
        self, remove_from_parent: bool, err: BaseException, cause: BaseException | None
    ) -> None:
        """Cancel this context and its descendants; the first cancellation wins."""
        with self._mu:
            if self._err is not None:
                return
            self._err = err
            self._cause = cause if cause is not None else err
            self._token = events.publish(None)
            self._done.close()  # under _mu: err() non-None implies done() closed
            children, self._children = self._children, set()
            callbacks, self._callbacks = self._callbacks, []
            timer, self._timer = self._timer, None
        for child in children:
            child._cancel(False, err, self._cause)
        if remove_from_parent:
            parent = self._parent._cancel_ctx()
            if parent is not None:
                with parent._mu:
                    parent._children.discard(self)
        if timer is not None:
            timer.stop()
        for fn in callbacks:
            fn()

    def __repr__(self) -> str:
        return f"{self._parent!r}.{self._kind}"


class _ValueCtx(Context):
    """``with_value``: one key/value pair on top of its parent."""

    __slots__ = ("_parent", "_key", "_val")

    def __init__(self, parent: Context, key: object, val: object) -> None:
        self._parent = parent
        self._key = key
        self._val = val

    def done(self) -> Chan[None]:
        return self._parent.done()

    def err(self) -> BaseException | None:
        return self._parent.err()

    def value(self, key: object) -> Any:
        if key is self._key or key == self._key:
            return self._val
        return self._parent.value(key)

    def deadline(self) -> float | None:
        return self._parent.deadline()

    def _cancel_ctx(self) -> _CancelCtx | None:
        return self._parent._cancel_ctx()

    def __repr__(self) -> str:
        return f"{self._parent!r}.WithValue({self._key!r})"


_singletons_lock = allocate_lock()
_singletons: dict[str, _EmptyCtx] = {}


def _empty(name: str) -> _EmptyCtx:
    with _singletons_lock:
        ctx = _singletons.get(name)
        if ctx is None:
            ctx = _singletons[name] = _EmptyCtx(name)
        return ctx


def background() -> Context:
    """The root context: never cancelled, no values, no deadline."""
    return _empty("context.Background")


def todo() -> Context:
    """Like background, for code not yet passed a context."""
    return _empty("context.TODO")


# -- lost cancels -------------------------------------------------------------------------


@dataclass(frozen=True)
class LostCancel:
    """A cancellable context collected without its cancel function ever being called."""

    kind: str  # "WithCancel", "WithDeadline", "WithCancelCause"
    created_at: tuple[SiteFrame, ...]


# Appended to from weakref finalizers, which the garbage collector may run in any thread
# at any allocation, even while that thread is inside one of the functions below: so no
# lock (a finalizer taking a lock its own thread holds would deadlock), only deque
# operations, which are atomic.
_lost: deque[LostCancel] = deque()


def _record_lost(kind: str, created_at: tuple[SiteFrame, ...]) -> None:
    _lost.append(LostCancel(kind, created_at))


def lost_cancels() -> list[LostCancel]:
    """Every lost cancel recorded so far (since the last :func:`clear_lost_cancels`)."""
    while True:
        try:
            return list(_lost)
        except RuntimeError:  # a finalizer appended while we copied: copy again
            continue


def clear_lost_cancels() -> None:
    _lost.clear()


def _cancellable(parent: Context, deadline: float | None, kind: str) -> tuple[_CancelCtx, Any]:
    """Make a cancellable child of ``parent``, wired for propagation and lost-cancel
    detection; returns it and its finalizer (which the cancel function detaches)."""
    if not isinstance(parent, Context):
        raise TypeError(f"parent must be a racecheck Context, not {type(parent).__name__}")
    ctx = _CancelCtx(parent, deadline, kind)
    finalizer = weakref.finalize(ctx, _record_lost, kind, events.creation_site(1))
    finalizer.atexit = False
    above = parent._cancel_ctx()
    if above is not None:
        with above._mu:
            inherited = above._err, above._cause
            if inherited[0] is None:
                above._children.add(ctx)
        if inherited[0] is not None:
            events.consume(above._token)
            ctx._cancel(False, inherited[0], inherited[1])
    return ctx, finalizer


def with_cancel(parent: Context) -> tuple[Context, CancelFunc]:
    """A child of ``parent`` and the function that cancels it (with ``Canceled``).

    Call the cancel function as soon as the work is done (Go: ``defer cancel()``): it
    releases the child from its parent; an uncalled one is recorded as a lost cancel.
    """
    ctx, finalizer = _cancellable(parent, parent.deadline(), "WithCancel")

    def cancel() -> None:
        finalizer.detach()
        ctx._cancel(True, Canceled(), None)

    return ctx, cancel


def with_cancel_cause(parent: Context) -> tuple[Context, CancelCauseFunc]:
    """Like :func:`with_cancel`, but ``cancel(cause)`` records why (see :func:`cause`)."""
    ctx, finalizer = _cancellable(parent, parent.deadline(), "WithCancelCause")

    def cancel(cause: BaseException | None = None) -> None:
        finalizer.detach()
        ctx._cancel(True, Canceled(), cause)

    return ctx, cancel


def with_deadline(parent: Context, monotonic_deadline: float) -> tuple[Context, CancelFunc]:
    """A child cancelled with ``DeadlineExceeded`` at ``monotonic_deadline`` (a
    ``time.monotonic()`` instant), never later than the parent's own deadline."""
    own = parent.deadline()
    if own is not None and own <= monotonic_deadline:
        return with_cancel(parent)  # the parent expires first anyway (Go does the same)
    ctx, finalizer = _cancellable(parent, monotonic_deadline, "WithDeadline")

    def cancel() -> None:
        finalizer.detach()
        ctx._cancel(True, Canceled(), None)

    remaining = monotonic_deadline - time.monotonic()
    if remaining <= 0:
        ctx._cancel(True, DeadlineExceeded(), None)
        return ctx, cancel
    from racecheck.sync.timers import after_func  # imported late: timers may use contexts

    ref = weakref.ref(ctx)  # the timer must not keep a forgotten context alive

    def expire() -> None:
        live = ref()
        if live is not None:
            live._cancel(True, DeadlineExceeded(), None)

    timer = after_func(remaining, expire)
    with ctx._mu:
        attached = ctx._err is None
        if attached:
            ctx._timer = timer
    if not attached:
        timer.stop()
    return ctx, cancel


def with_timeout(parent: Context, seconds: float) -> tuple[Context, CancelFunc]:
    """``with_deadline(parent, time.monotonic() + seconds)``."""
    return with_deadline(parent, time.monotonic() + seconds)


def with_value(parent: Context, key: object, value: object) -> Context:
    """A child of ``parent`` in which ``value(key)`` returns ``value``."""
    if not isinstance(parent, Context):
        raise TypeError(f"parent must be a racecheck Context, not {type(parent).__name__}")
    return _ValueCtx(parent, key, value)


def cause(ctx: Context) -> BaseException | None:
    """Why ``ctx`` was cancelled: the cause given to a ``with_cancel_cause`` cancel (here
    or in an ancestor), else its ``err()``; None while it is not cancelled."""
    cc = ctx._cancel_ctx()
    if cc is None:
        return None
    with cc._mu:
        if cc._err is not None:
            events.consume(cc._token)
        return cc._cause
