"""Go's ``time`` package timers: ``after``, ``tick``, ``Timer``, ``Ticker``, ``after_func``.

All timers share ONE racecheck-internal scheduler thread, started lazily with
``_thread.start_new_thread`` so it never appears in ``threading.enumerate()`` (and so in
no leak report): it sleeps on a raw condition until the earliest deadline of a heap.  It
never runs user code and never calls the race detector: ``after_func``'s function runs
on a fresh ``threading.Thread`` created when the timer fires, and a timer's send on its
channel carries the happens-before token published by the thread that created or reset
the timer (Go: creating or resetting a timer orders before its send on ``.c``).

Channels have capacity 1 and a tick finding the buffer full is dropped, as in Go, so a
slow receiver of a Ticker misses ticks instead of queueing them.  ``stop`` and ``reset``
also discard a value already sent but not yet received (Go 1.23's guarantee: no stale
value is received after they return).  The value sent is ``time.monotonic()`` at firing.

A pending timer's heap record holds only a weak reference to its channel, so a timer or
ticker nobody can receive from any more is dropped (Go 1.23 collects them as well);
``after_func`` holds its function until it fires or is stopped.

Lock order: the scheduler lock, then a channel's lock; never the reverse.
"""

from __future__ import annotations

import _thread
import heapq
import itertools
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from racecheck._rawsync import RawCondition, allocate_lock
from racecheck.sync import events
from racecheck.sync.chan import Chan

__all__ = [
    "Ticker",
    "Timer",
    "TimerRecord",
    "after",
    "after_func",
    "live_timers",
    "pending_timers",
    "tick",
]


class TimerRecord:
    """A live timer as the leak checker sees it: plain data, no reference to the timer or
    its channel.  One record per scheduled timer, the same object on every call of
    :func:`live_timers` (so a snapshot can remember it by identity); a ticker's
    ``deadline`` moves on with each tick."""

    __slots__ = ("kind", "created_at", "deadline")

    def __init__(
        self, kind: str, created_at: tuple[events.SiteFrame, ...], deadline: float
    ) -> None:
        self.kind = kind  # "Timer" or "Ticker"
        self.created_at = created_at
        self.deadline = deadline  # time.monotonic() of the next firing

    def __repr__(self) -> str:
        site = self.created_at
        where = f" created at {site[0][0]}:{site[0][1]}" if site else ""
        return f"<TimerRecord {self.kind}{where} deadline={self.deadline:.3f}>"


class _Entry:
    """One scheduled firing.  Fields are guarded by the scheduler lock.

    ``chan`` is a weak reference (None for after_func), ``fn`` the after_func function;
    both are dropped when the entry is cancelled, so a stopped timer keeps nothing alive
    while its record waits in the heap for its deadline.
    """

    __slots__ = ("deadline", "period", "chan", "fn", "token", "state", "record")

    def __init__(
        self,
        kind: str,
        deadline: float,
        period: float,
        chan: weakref.ref[Chan[float]] | None,
        fn: Callable[[], object] | None,
        token: object | None,
        created_at: tuple[events.SiteFrame, ...],
    ) -> None:
        self.deadline = deadline
        self.period = period  # > 0 for tickers
        self.chan = chan
        self.fn = fn
        self.token = token
        self.state = _PENDING
        self.record = TimerRecord(kind, created_at, deadline)

    def alive(self) -> bool:
        if self.state != _PENDING:
            return False
        return self.fn is not None or (self.chan is not None and self.chan() is not None)

    def cancel(self) -> None:
        global _cancelled
        if self.state == _PENDING:
            _cancelled += 1
        self.state = _CANCELLED
        self.chan = None
        self.fn = None
        self.token = None


_PENDING, _FIRED, _CANCELLED = 0, 1, 2

# -- the scheduler (module state guarded by _lock) --------------------------------------

_lock = allocate_lock()
_cond = RawCondition(_lock)
_heap: list[tuple[float, int, _Entry]] = []
_seq = itertools.count()
_cancelled = 0  # cancelled records still in the heap, for compaction
_started = False
_scheduler_ident: int | None = None  # for tests: the scheduler thread's ident


def _schedule(entry: _Entry) -> None:
    """Queue ``entry`` and wake the scheduler if it is the new earliest.  Lock held."""
    global _started
    heapq.heappush(_heap, (entry.deadline, next(_seq), entry))
    if _cancelled > 64 and _cancelled * 2 > len(_heap):
        _compact()
    if not _started:
        _thread.start_new_thread(_loop, ())
        _started = True
    elif _heap[0][2] is entry:
        _cond.notify()


def _compact() -> None:
    """Drop cancelled records (stop/reset in a loop must not grow the heap).  Lock held."""
    global _cancelled
    _heap[:] = [item for item in _heap if item[2].state == _PENDING]
    heapq.heapify(_heap)
    _cancelled = 0


def _loop() -> None:
    """The scheduler thread: fire due entries, sleep until the next deadline."""
    global _scheduler_ident
    _scheduler_ident = _thread.get_ident()
    with _cond:
        while True:
            try:
                if not _heap:
                    _cond.wait()
                    continue
                deadline = _heap[0][0]
                now = time.monotonic()
                if deadline > now:
                    _cond.wait(deadline - now)
                    continue
                _fire(heapq.heappop(_heap)[2], now)
            except Exception as exc:  # a bug in racecheck: say so, keep timers running
                print(f"racecheck: internal error in the timer thread: {exc!r}", file=sys.stderr)


def _fire(entry: _Entry, now: float) -> None:
    """Fire a due entry.  Lock held (released around starting an after_func thread)."""
    global _cancelled
    if entry.state != _PENDING:
        _cancelled -= 1
        return
    fn = entry.fn
    if fn is not None:
        entry.state = _FIRED
        token = entry.token
        entry.fn = entry.token = None
        thread = threading.Thread(
            target=_run_after_func, args=(fn, token), name="racecheck.after_func", daemon=True
        )
        _lock.release()
        try:
            thread.start()
        finally:
            _lock.acquire()
        return
    ch = entry.chan() if entry.chan is not None else None
    if ch is None:  # nobody can receive from it any more
        entry.state = _FIRED
        return
    ch._try_deliver(now, entry.token)  # dropped when full, as Go does
    if entry.period > 0:
        period = entry.period
        late = now - entry.deadline
        entry.deadline += period * (1 + int(late // period)) if late >= period else period
        entry.record.deadline = entry.deadline
        heapq.heappush(_heap, (entry.deadline, next(_seq), entry))
    else:
        entry.state = _FIRED
        entry.chan = None
        entry.token = None


def _run_after_func(fn: Callable[[], object], token: object | None) -> None:
    events.consume(token)  # the creation/reset of the timer orders before fn
    fn()


def _after_fork_in_child() -> None:
    """The scheduler thread does not survive fork: fresh lock, restart on demand."""
    global _lock, _cond, _started
    _lock = allocate_lock()
    _cond = RawCondition(_lock)
    _started = False
    if _heap:
        with _lock:
            _started = True
            _thread.start_new_thread(_loop, ())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- public API ---------------------------------------------------------------------------


class Timer:
    """Go's ``time.Timer``: sends ``time.monotonic()`` once on ``.c`` after ``seconds``.

    Made by :func:`after_func` instead it has no channel (``c`` is None) and runs the
    function on a new daemon thread when it fires.
    """

    __slots__ = ("c", "_entry", "_fn", "_created_at", "__weakref__")

    c: Chan[float] | None

    def __init__(self, seconds: float, *, _fn: Callable[[], object] | None = None) -> None:
        self._created_at = events.creation_site(1 if _fn is None else 2)
        self._fn = _fn
        self.c = Chan(1) if _fn is None else None
        token = events.publish()
        with _lock:
            self._entry = self._new_entry(seconds, token)
            _schedule(self._entry)

    def _new_entry(self, seconds: float, token: object | None) -> _Entry:
        chan = weakref.ref(self.c) if self.c is not None else None
        deadline = time.monotonic() + seconds
        return _Entry("Timer", deadline, 0.0, chan, self._fn, token, self._created_at)

    def _halt(self) -> bool:
        """Cancel the pending firing and discard an unreceived value.  Lock held.
        True if the timer was active (its value not yet received / fn not started)."""
        active = self._entry.state == _PENDING
        self._entry.cancel()
        if self.c is not None and self.c._drain():
            active = True
        return active

    def stop(self) -> bool:
        """Stop the timer.  True if this call stopped it, False if it had already expired
        (value received, or function started) or been stopped."""
        with _lock:
            return self._halt()

    def reset(self, seconds: float) -> bool:
        """Re-arm the timer to fire ``seconds`` from now.  Returns whether it had been
        active, as Go's ``Reset`` does."""
        token = events.publish()
        with _lock:
            active = self._halt()
            self._entry = self._new_entry(seconds, token)
            _schedule(self._entry)
        return active

    def __repr__(self) -> str:
        site = self._created_at
        where = f" created at {site[0][0]}:{site[0][1]}" if site else ""
        kind = "after_func " if self._fn is not None else ""
        return f"<{kind}Timer{where}>"


class Ticker:
    """Go's ``time.Ticker``: sends ``time.monotonic()`` on ``.c`` every ``seconds``,
    dropping ticks a slow receiver has not taken (the channel holds one)."""

    __slots__ = ("c", "_entry", "_created_at", "__weakref__")

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("non-positive interval for NewTicker")
        self._created_at = events.creation_site(1)
        self.c: Chan[float] = Chan(1)
        token = events.publish()
        with _lock:
            self._entry = self._new_entry(seconds, token)
            _schedule(self._entry)

    def _new_entry(self, seconds: float, token: object | None) -> _Entry:
        deadline = time.monotonic() + seconds
        chan = weakref.ref(self.c)
        return _Entry("Ticker", deadline, seconds, chan, None, token, self._created_at)

    def stop(self) -> None:
        """Stop ticking (and discard a tick not yet received)."""
        with _lock:
            self._entry.cancel()
            self.c._drain()

    def reset(self, seconds: float) -> None:
        """Tick every ``seconds`` from now on (also restarts a stopped ticker)."""
        if seconds <= 0:
            raise ValueError("non-positive interval for Ticker.Reset")
        token = events.publish()
        with _lock:
            self._entry.cancel()
            self.c._drain()
            self._entry = self._new_entry(seconds, token)
            _schedule(self._entry)

    def __repr__(self) -> str:
        site = self._created_at
        where = f" created at {site[0][0]}:{site[0][1]}" if site else ""
        return f"<Ticker every {self._entry.period}s{where}>"


def after(seconds: float) -> Chan[float]:
    """A channel that receives ``time.monotonic()`` once, ``seconds`` from now."""
    timer = Timer(seconds)
    assert timer.c is not None
    return timer.c


def tick(seconds: float) -> Chan[float]:
    """A channel that receives every ``seconds`` (Go's ``time.Tick``)."""
    return Ticker(seconds).c


def after_func(seconds: float, fn: Callable[[], object]) -> Timer:
    """Run ``fn()`` on a new daemon thread ``seconds`` from now; ``stop()`` cancels it."""
    return Timer(seconds, _fn=fn)


def live_timers() -> list[TimerRecord]:
    """Records of every pending timer and running ticker (whose channel someone can still
    receive from), earliest first.  Stopped and fired timers are not listed."""
    with _lock:
        entries = [item[2] for item in _heap if item[2].alive()]
    entries.sort(key=lambda e: e.deadline)
    return [e.record for e in entries]


def pending_timers() -> int:
    """How many timers can still fire (see :func:`live_timers`): the deadlock checker
    counts them as able to wake a blocked thread."""
    return len(live_timers())


def _debug_state() -> dict[str, Any]:  # for tests
    with _lock:
        return {
            "heap": len(_heap),
            "cancelled": _cancelled,
            "started": _started,
            "ident": _scheduler_ident,
        }
