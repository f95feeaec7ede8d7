"""Context: cancellation trees, values, deadlines, causes, lost cancels, the cancel ->
done() edge, and Semaphore.acquire with a context.  Interleavings are forced with events
and the blocked-thread registry; no sleep stands in for an ordering."""

from __future__ import annotations

import gc
import sys
import threading
import time
import weakref

import pytest
from sync_helpers import (  # noqa: F401
    WAIT,
    finish,
    installed,
    spawn,
    wait_blocked,
)

from racecheck.sync import events
from racecheck.sync.chan import select
from racecheck.sync.context import (
    Canceled,
    Context,
    DeadlineExceeded,
    background,
    cause,
    clear_lost_cancels,
    lost_cancels,
    todo,
    with_cancel,
    with_cancel_cause,
    with_deadline,
    with_timeout,
    with_value,
)
from racecheck.sync.waitgroup import Semaphore


def is_done(ctx):
    index, _ = select(ctx.done().recv, default=True)
    return index == 0


# ---- background, values -----------------------------------------------------------------


def test_background_and_todo_are_never_done():
    bg = background()
    assert isinstance(bg, Context)
    assert bg is background() and todo() is todo() and bg is not todo()
    assert not is_done(bg)
    assert bg.err() is None and bg.value("k") is None and bg.deadline() is None
    assert cause(bg) is None


def test_values_chain_and_shadow():
    root = with_value(background(), "user", "ann")
    child, cancel = with_cancel(with_value(root, "req", 7))
    shadow = with_value(child, "user", "bob")
    assert child.value("user") == "ann" and child.value("req") == 7
    assert shadow.value("user") == "bob" and shadow.value("req") == 7
    assert shadow.value("absent") is None
    cancel()
    assert is_done(shadow)  # a value context shares its parent's cancellation


# ---- cancellation -----------------------------------------------------------------------


def test_cancel_closes_done_and_sets_canceled():
    ctx, cancel = with_cancel(background())
    assert not is_done(ctx) and ctx.err() is None and cause(ctx) is None
    cancel()
    assert ctx.done().recv_ok() == (None, False)
    err = ctx.err()
    assert isinstance(err, Canceled) and str(err) == "context canceled"
    cancel()  # idempotent
    assert ctx.err() is err
    assert cause(ctx) is err


def test_parent_cancels_descendants_child_leaves_parent_alone():
    parent, cancel_parent = with_cancel(background())
    child, cancel_child = with_cancel(with_value(parent, "k", 1))
    grandchild, cancel_grandchild = with_cancel(child)
    sibling, cancel_sibling = with_cancel(parent)
    cancel_child()
    assert is_done(child) and is_done(grandchild)
    assert not is_done(parent) and not is_done(sibling)
    cancel_parent()
    assert is_done(sibling) and isinstance(sibling.err(), Canceled)
    born_late, cancel_late = with_cancel(parent)
    assert is_done(born_late)  # a child of a cancelled parent starts cancelled
    for c in (cancel_grandchild, cancel_sibling, cancel_late):
        c()


def test_blocked_receive_on_done_wakes_on_cancel():
    ctx, cancel = with_cancel(background())
    t = spawn(lambda: ctx.done().recv_ok())
    wait_blocked(t, "chan receive")
    cancel()
    assert finish(t).result == (None, False)


def test_cancel_cause():
    ctx, cancel = with_cancel_cause(background())
    child, cancel_child = with_cancel(ctx)
    why = ValueError("disk full")
    cancel(why)
    assert isinstance(ctx.err(), Canceled)
    assert cause(ctx) is why and cause(child) is why
    ctx2, cancel2 = with_cancel_cause(background())
    cancel2()
    assert isinstance(cause(ctx2), Canceled)
    cancel_child()


# ---- deadlines --------------------------------------------------------------------------


def test_past_deadline_is_exceeded_at_once():
    ctx, cancel = with_deadline(background(), time.monotonic() - 1)
    assert is_done(ctx)
    err = ctx.err()
    assert isinstance(err, DeadlineExceeded) and isinstance(err, TimeoutError)
    assert str(err) == "context deadline exceeded"
    assert isinstance(cause(ctx), DeadlineExceeded)
    cancel()
    assert isinstance(ctx.err(), DeadlineExceeded)  # the first cancellation wins


def test_timeout_fires_and_child_deadline_never_later_than_parent():
    start = time.monotonic()
    parent, cancel_parent = with_timeout(background(), 60)
    assert start + 60 <= parent.deadline() <= time.monotonic() + 60
    later, cancel_later = with_timeout(parent, 100)
    assert later.deadline() == parent.deadline()  # clamped to the parent's
    short, cancel_short = with_timeout(parent, 0.05)
    assert short.deadline() < parent.deadline()
    grandchild, cancel_grandchild = with_cancel(short)
    assert grandchild.deadline() == short.deadline()
    t = spawn(lambda: grandchild.done().recv_ok())
    assert finish(t).result == (None, False)
    assert time.monotonic() >= short.deadline()
    assert isinstance(short.err(), DeadlineExceeded)
    assert isinstance(grandchild.err(), DeadlineExceeded)
    assert parent.err() is None and later.err() is None  # a child never cancels its parent
    for c in (cancel_parent, cancel_later, cancel_short, cancel_grandchild):
        c()
    assert isinstance(later.err(), Canceled)


def test_cancel_before_deadline_wins():
    ctx, cancel = with_timeout(background(), 60)
    cancel()
    assert isinstance(ctx.err(), Canceled)


# ---- lost cancels -----------------------------------------------------------------------


def _forget_cancel():
    ctx, _cancel = with_cancel(background())
    return weakref.ref(ctx), sys._getframe().f_lineno - 1


def test_lost_cancel_is_recorded_without_keeping_the_context_alive():
    gc.collect()  # earlier tests' garbage must not count here
    clear_lost_cancels()
    ref, line = _forget_cancel()
    gc.collect()
    assert ref() is None
    lost = lost_cancels()
    assert len(lost) == 1
    assert lost[0].kind == "WithCancel"
    assert lost[0].created_at[0] == (__file__, line, "_forget_cancel")
    clear_lost_cancels()
    assert lost_cancels() == []


def test_called_cancel_is_not_lost_and_child_is_lost_once_parent_is_done():
    gc.collect()
    clear_lost_cancels()
    ctx, cancel = with_timeout(background(), 60)
    ref = weakref.ref(ctx)
    cancel()
    del ctx, cancel
    gc.collect()
    assert ref() is None and lost_cancels() == []

    parent, cancel_parent = with_cancel(background())
    child_ref = weakref.ref(with_cancel(parent)[0])
    gc.collect()
    assert child_ref() is not None  # a live cancellable parent keeps its child (as Go)
    cancel_parent()
    gc.collect()
    assert child_ref() is None
    assert [lc.kind for lc in lost_cancels()] == ["WithCancel"]
    clear_lost_cancels()


# ---- happens-before ---------------------------------------------------------------------


def test_cancel_happens_before_receive_from_done_and_err():
    with installed() as fake:
        ctx, cancel = with_cancel(background())
        marks = []

        def canceller():
            marks.append(fake.mark())
            cancel()

        finish(spawn(canceller))
        assert finish(spawn(lambda: fake.ordered_after(marks[0]))).result is False
        assert finish(spawn(lambda: (ctx.done().recv(), fake.ordered_after(marks[0])))).result[1]
        assert finish(spawn(lambda: (ctx.err(), fake.ordered_after(marks[0])))).result[1]


# ---- Semaphore with a context -------------------------------------------------------------


def test_semaphore_acquire_raises_the_context_error_and_leaves_the_queue():
    s = Semaphore(2)
    s.acquire(2)
    ctx, cancel = with_cancel(background())
    head = spawn(s.acquire, 2, ctx)
    wait_blocked(head, "Semaphore.acquire", s)
    nxt = spawn(s.acquire, 1)
    wait_blocked(nxt, "Semaphore.acquire")
    s.release(1)  # one free, but head (2) is first in line
    assert nxt.ident in events.blocked_threads()
    cancel()
    assert isinstance(finish(head).error, Canceled)
    assert finish(nxt).error is None  # head left the queue: the free 1 goes to nxt
    s.release(2)
    assert s.try_acquire(2)


def test_semaphore_acquire_with_done_context_fails_even_if_free():
    s = Semaphore(1)
    ctx, cancel = with_cancel(background())
    cancel()
    with pytest.raises(Canceled):
        s.acquire(1, ctx)
    assert s.try_acquire(1)


def test_semaphore_acquire_more_than_size_waits_for_the_context():
    s = Semaphore(1)
    ctx, cancel = with_timeout(background(), 60)
    t = spawn(s.acquire, 5, ctx)
    wait_blocked(t, "Semaphore.acquire", s)
    assert s.try_acquire(1)  # a doomed acquire does not block the others
    s.release(1)
    cancel()
    assert isinstance(finish(t).error, Canceled)
    deadline_ctx, cancel2 = with_deadline(background(), time.monotonic() - 1)
    with pytest.raises(DeadlineExceeded):
        s.acquire(5, deadline_ctx)
    cancel2()


# ---- stress -----------------------------------------------------------------------------


def test_stress_concurrent_children_and_cancellation():
    for _ in range(10):
        parent, cancel_parent = with_cancel(background())
        start = threading.Barrier(9, timeout=WAIT)
        made = []

        def maker(parent=parent, start=start, made=made):
            start.wait()
            for i in range(50):
                child, cancel = with_cancel(parent)
                made.append(child)
                if i % 2:
                    cancel()

        ts = [spawn(maker) for _ in range(8)]
        start.wait()
        cancel_parent()
        for t in ts:
            assert finish(t).error is None
        assert len(made) == 400
        assert all(is_done(c) for c in made)
        assert parent._children == set()
    clear_lost_cancels()
