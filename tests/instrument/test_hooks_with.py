"""``with`` items go through ``stdlib.wrap_with`` (identity when it is unavailable)."""

from __future__ import annotations

import sys
import threading

import pytest

from racecheck.instrument import hooks

SOURCE = """
import threading

def locked(lock, box):
    with lock as held:
        box.append(held)
    return box[-1] is not True

async def alocked(cm):
    async with cm as v:
        return v
"""


@pytest.fixture
def restore_wrap_with():
    saved = hooks._wrap_with
    yield
    hooks._wrap_with = saved


def test_with_items_are_passed_to_wrap_with(load, restore_wrap_with):
    m = load(SOURCE)
    seen = []

    def spy(obj):
        seen.append(obj)
        return obj

    hooks._wrap_with = spy
    lock = threading.Lock()
    box: list = []
    assert m.locked(lock, box) is False
    assert seen == [lock] and box == [True]
    assert not lock.locked()


def test_missing_stdlib_falls_back_to_identity(load, restore_wrap_with, monkeypatch):
    monkeypatch.setitem(sys.modules, "racecheck.instrument.stdlib", None)  # import fails
    hooks._wrap_with = None
    m = load(SOURCE)
    lock = threading.Lock()
    assert m.locked(lock, []) is False
    assert hooks._wrap_with is hooks._identity


def test_real_wrap_with_keeps_lock_semantics(load, restore_wrap_with):
    hooks._wrap_with = None  # resolve the real one
    m = load(SOURCE)
    for lock in (threading.Lock(), threading.RLock()):
        box: list = []
        m.locked(lock, box)
        assert box == [True]
        assert lock.acquire(blocking=False)  # released by the with block
        lock.release()


def test_async_with_is_not_wrapped(load, restore_wrap_with):
    import asyncio
    import contextlib

    hooks._wrap_with = lambda obj: pytest.fail("async with must not be wrapped")
    m = load(SOURCE)

    @contextlib.asynccontextmanager
    async def cm():
        yield 5

    assert asyncio.run(m.alocked(cm())) == 5
