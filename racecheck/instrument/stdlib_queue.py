"""``queue`` edges by contract: a ``put`` -> the ``get`` that returns that item;
``task_done()`` -> the ``join()`` it releases.

The queue's own mutex orders every ``put`` with every ``get``, which would hide the
classic race of a producer mutating an item after handing it over; its Conditions are
invisible to racecheck (internal callers), and the edge goes instead through a token
per *item*: ``put`` publishes into the token of ``id(item)`` before the item becomes
visible, the ``get`` returning that object consumes it.  The queue holds the item while
it is pending, so its id cannot be reused meanwhile.  The same object pending several
times shares one joined token (a ``get`` cannot tell which put it got; over-ordering it
can only hide a race, never invent one).  Nothing about the queue itself changes:
``q.queue``, ordering and priorities are untouched.

``PriorityQueue`` is the one queue that runs user code inside: its heap compares items
(``__lt__``) under the queue's mutex, in ``put`` and in ``get``, on items other threads
put.  Those comparisons are ordered by that mutex in every schedule, so they get an edge
of their own: the heap's internal ``_put``/``_get`` first acquire the join of every
earlier ``put`` into that queue.  This over-orders what the comparison code sees (never
what the caller sees after ``get`` returns, which still only gets its item's token).

``queue.SimpleQueue`` is a C type, so ``queue.SimpleQueue`` is replaced while installed
by a subclass doing the same; queues made before that are not seen.
"""

from __future__ import annotations

import _thread
import queue
from typing import Any
from weakref import WeakKeyDictionary

from racecheck.instrument.stdlib_common import ObjectTokens, Patcher
from racecheck.sync import events

_lock = _thread.RLock()
"""Re-entrant: a collection inside a section (an allocation) can run a finaliser that
puts into a queue, which takes it again."""
_pending: WeakKeyDictionary[Any, dict[int, Any]] = WeakKeyDictionary()
"""queue -> id(item) -> its put's token, or [token, count] when the same object is
pending more than once"""
_join_tokens = ObjectTokens()
_patcher = Patcher()


def _table(q: Any, create: bool) -> dict[int, Any] | None:
    """The pending table of ``q`` (no lock needed: one ``get``/``setdefault`` each); None
    for a queue subclass that cannot be a weak key (unhashable): it then gets no edges,
    but keeps working."""
    try:
        table = _pending.get(q)
        if table is None and create:
            table = _pending.setdefault(q, {})
    except TypeError:
        return None
    return table


_heap_tokens = ObjectTokens()
"""PriorityQueue -> the join of every put's token (see the module docstring)."""


# ``_lock`` guards the entries of the pending tables.  Its sections are a few dict and
# list operations written without calls (``in``, subscripts): a call is where CPython
# may hand the GIL to another thread, and doing so while holding a lock others want
# turns every put/get into a lock handoff between threads (a convoy).


def _before_put(q: Any, item: object) -> None:
    if isinstance(q, queue.PriorityQueue):
        _heap_tokens.publish(q)
    table = _table(q, True)
    if table is None:
        return
    token = events.publish(None)
    key = id(item)
    with _lock:
        if key not in table:
            table[key] = token  # the common case: one pending put, its token alone
        else:  # the same object pending twice (rare): its token joins both puts'
            entry = table[key]
            if type(entry) is not list:
                entry = table[key] = [entry, 1]
            entry[0] = events.publish(entry[0])
            entry[1] += 1


def _put_failed(q: Any, item: object) -> None:
    table = _table(q, False)
    if table is None:
        return
    key = id(item)
    with _lock:
        if key in table:
            entry = table[key]
            if type(entry) is list and entry[1] > 1:
                entry[1] -= 1
            else:
                del table[key]


def _after_get(q: Any, item: object) -> None:
    table = _table(q, False)
    if table is None:
        return
    key = id(item)
    with _lock:
        if key not in table:
            return  # put before racecheck started, or behind its back
        entry = table[key]
        if type(entry) is list:  # [token, pending puts of this object]
            token = entry[0]
            entry[1] -= 1
            if entry[1] <= 0:
                del table[key]
        else:
            token = entry
            del table[key]
    events.consume(token)


_Q = queue.Queue
_orig_put = _Q.put
_orig_get = _Q.get
_orig_task_done = _Q.task_done
_orig_join = _Q.join


def _put(self: Any, item: Any, block: bool = True, timeout: float | None = None) -> None:
    _before_put(self, item)
    try:
        _orig_put(self, item, block, timeout)
    except BaseException:
        _put_failed(self, item)
        raise


def _get(self: Any, block: bool = True, timeout: float | None = None) -> Any:
    item = _orig_get(self, block, timeout)
    _after_get(self, item)
    return item


def _task_done(self: Any) -> None:
    _join_tokens.publish(self)
    _orig_task_done(self)


def _join(self: Any) -> None:
    _orig_join(self)
    _join_tokens.consume(self)


_PQ = queue.PriorityQueue
_orig_heap_put = _PQ._put
_orig_heap_get = _PQ._get


def _heap_put(self: Any, item: Any) -> None:
    _heap_tokens.consume(self)
    _orig_heap_put(self, item)


def _heap_get(self: Any) -> Any:
    _heap_tokens.consume(self)
    return _orig_heap_get(self)


_OrigSimpleQueue = queue.SimpleQueue


class _SimpleQueue(_OrigSimpleQueue):  # type: ignore[type-arg]
    """``queue.SimpleQueue`` with the put -> get edge (installed as ``queue.SimpleQueue``)."""

    __slots__ = ()

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        _before_put(self, item)
        try:
            super().put(item, block, timeout)
        except BaseException:
            _put_failed(self, item)
            raise

    def put_nowait(self, item: Any) -> None:
        self.put(item, False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        item = super().get(block, timeout)
        _after_get(self, item)
        return item

    def get_nowait(self) -> Any:
        return self.get(False)


_SimpleQueue.__name__ = _SimpleQueue.__qualname__ = "SimpleQueue"
_SimpleQueue.__module__ = "queue"


def install_queue() -> None:
    if _patcher:
        return
    _patcher.patch(_Q, "put", _put)
    _patcher.patch(_Q, "get", _get)
    _patcher.patch(_Q, "task_done", _task_done)
    _patcher.patch(_Q, "join", _join)
    _patcher.patch(_PQ, "_put", _heap_put)
    _patcher.patch(_PQ, "_get", _heap_get)
    _patcher.patch(queue, "SimpleQueue", _SimpleQueue)


def uninstall_queue() -> None:
    _patcher.restore()
    with _lock:
        _pending.clear()
    _join_tokens.clear()
