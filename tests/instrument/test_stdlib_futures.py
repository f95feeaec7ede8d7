"""concurrent.futures, multiprocessing.pool.ThreadPool and asyncio-across-threads edges,
both ways, plus the leak checker's thread/executor bookkeeping."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import gc
import threading
from multiprocessing.pool import ThreadPool
from typing import Any

import pytest
from test_stdlib_vc import Signal, VCEngine, start_raw

from racecheck.instrument import stdlib
from racecheck.instrument.stdlib_common import RawLockTokens
from racecheck.sync import events

T = 5.0


@pytest.fixture
def eng() -> Any:
    engine = VCEngine()
    events.set_happens_before(engine)
    stdlib.install(engine)
    yield engine
    stdlib.uninstall()
    events.set_happens_before(None)


def _task(eng: VCEngine, name: str, value: Any = None) -> Any:
    eng.mark(name)
    return value


def test_submit_orders_before_task_and_result_after_it(eng: VCEngine) -> None:
    with cf.ThreadPoolExecutor(2) as ex:
        eng.mark("submit")
        fut = ex.submit(_task, eng, "task", 42)
        assert fut.result(T) == 42
        eng.mark("result")
    assert eng.hb("submit", "task") and eng.hb("task", "result")


def test_task_is_concurrent_with_a_main_that_did_not_wait(eng: VCEngine) -> None:
    with cf.ThreadPoolExecutor(1) as ex:
        started = Signal()
        release = Signal()

        def task() -> None:
            eng.mark("task")
            started.set()
            release.wait()

        # warm the worker up first so thread start adds no edge from later marks
        ex.submit(lambda: None).result(T)
        fut = ex.submit(task)
        started.wait()
        eng.mark("main")
        release.set()
        fut.result(T)
    assert eng.concurrent("task", "main")


@pytest.mark.parametrize("how", ["done", "exception", "wait", "as_completed", "callback"])
def test_each_way_of_observing_completion_orders_the_task(eng: VCEngine, how: str) -> None:
    ex = cf.ThreadPoolExecutor(1)
    try:
        finished = Signal()

        def task() -> None:
            eng.mark("task")

        fut = ex.submit(task)
        fut.add_done_callback(lambda f: finished.set())
        finished.wait()  # invisible: completion happened, nothing observed yet
        seen: list[str] = []
        if how == "done":
            assert fut.done()
        elif how == "exception":
            assert fut.exception(T) is None
        elif how == "wait":
            assert fut in cf.wait([fut], T).done
        elif how == "as_completed":
            assert list(cf.as_completed([fut], T)) == [fut]
        else:
            fut.add_done_callback(lambda f: seen.append("cb") or eng.mark("cb"))
            assert seen == ["cb"]
        if how != "callback":
            eng.mark("cb")
        assert eng.hb("task", "cb")
    finally:
        ex.shutdown()


def test_exception_raised_by_result_orders_the_task(eng: VCEngine) -> None:
    def boom() -> None:
        eng.mark("task")
        raise ValueError("boom")

    with cf.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(boom)
        with pytest.raises(ValueError):
            fut.result(T)
        eng.mark("after")
    assert eng.hb("task", "after")


def test_map_results_and_shutdown_wait(eng: VCEngine) -> None:
    ex = cf.ThreadPoolExecutor(2)
    assert list(ex.map(lambda i: _task(eng, f"m{i}", i * 2), range(3))) == [0, 2, 4]
    eng.mark("mapped")
    for i in range(3):
        assert eng.hb(f"m{i}", "mapped")
    ex.submit(_task, eng, "late")
    ex.shutdown(wait=True)
    eng.mark("shut")
    assert eng.hb("late", "shut")


def test_callback_wrapper_still_passes_the_future(eng: VCEngine) -> None:
    fut: cf.Future[int] = cf.Future()
    got: list[Any] = []
    fut.add_done_callback(got.append)
    fut.set_result(1)
    assert got == [fut]


def test_thread_pool_apply_async_and_map(eng: VCEngine) -> None:
    with ThreadPool(2) as pool:
        eng.mark("submit")
        res = pool.apply_async(_task, (eng, "task", 7))
        assert res.get(T) == 7
        eng.mark("got")
        assert pool.map(lambda i: _task(eng, f"p{i}", i), range(3)) == [0, 1, 2]
        eng.mark("mapped")
        assert list(pool.imap(lambda i: _task(eng, "imap", i), [5])) == [5]
        eng.mark("imapped")
    assert eng.hb("submit", "task") and eng.hb("task", "got")
    assert all(eng.hb(f"p{i}", "mapped") for i in range(3))
    assert eng.hb("imap", "imapped")


# --- asyncio across threads -----------------------------------------------------------------


def test_run_coroutine_threadsafe_both_ways(eng: VCEngine) -> None:
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever)
    t.start()
    try:

        async def coro() -> int:
            eng.mark("coro")
            return 3

        eng.mark("before")
        fut = asyncio.run_coroutine_threadsafe(coro(), loop)
        assert fut.result(T) == 3
        eng.mark("after")
        assert eng.hb("before", "coro") and eng.hb("coro", "after")

        ran = Signal()
        loop.call_soon_threadsafe(lambda: (eng.mark("cb"), ran.set()))
        ran.wait()
        eng.mark("unsynced")
        assert eng.hb("after", "cb")
        assert eng.concurrent("cb", "unsynced")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(T)
        loop.close()


def test_to_thread_and_run_in_executor(eng: VCEngine) -> None:
    async def main() -> None:
        eng.mark("loop-before")
        assert await asyncio.to_thread(_task, eng, "to-thread", 1) == 1
        eng.mark("loop-after")
        assert (
            await asyncio.get_running_loop().run_in_executor(None, _task, eng, "executor", 2) == 2
        )
        eng.mark("loop-end")

    asyncio.run(main())
    assert eng.hb("loop-before", "to-thread") and eng.hb("to-thread", "loop-after")
    assert eng.hb("loop-after", "executor") and eng.hb("executor", "loop-end")


# --- thread/executor bookkeeping for the leak checker -----------------------------------------


def test_track_threads_records_creation_stack_and_target() -> None:
    stdlib.track_threads()
    try:
        release = Signal()
        t = threading.Thread(target=release.wait, name="tracked")
        t.start()  # the line below is what created_at must point at
        line = test_track_threads_records_creation_stack_and_target.__code__.co_firstlineno + 5
        stack = stdlib.thread_created_at(t)
        assert stack[0].filename == __file__ and stack[0].lineno == line
        assert stack[0].function == "test_track_threads_records_creation_stack_and_target"
        assert stdlib.thread_target(t) == f"{Signal.__module__}.Signal.wait"
        release.set()
        t.join(T)
        assert stdlib.thread_target(t) == f"{Signal.__module__}.Signal.wait"  # after run
    finally:
        stdlib.untrack_threads()
    assert _patched() is False


def _patched() -> bool:
    """Whether ``Thread.start`` is racecheck's stand-in (which keeps the original's name,
    so only its code's file tells)."""
    return threading.Thread.start.__code__.co_filename != threading.__file__


def test_tracking_is_refcounted_and_independent_of_detection() -> None:
    stdlib.track_threads()
    stdlib.track_threads()
    stdlib.untrack_threads()
    assert _patched()
    stdlib.install(VCEngine())
    stdlib.uninstall()
    assert _patched()  # still tracking
    stdlib.untrack_threads()
    assert not _patched()
    stdlib.untrack_threads()  # extra untrack is harmless


def test_executor_records_and_worker_threads_without_keeping_them_alive() -> None:
    stdlib.track_threads()
    try:
        ex = cf.ThreadPoolExecutor(1)
        ex.submit(lambda: None).result(T)
        (record,) = [r for r in stdlib.live_executors() if r.ref() is ex]
        assert record.created_at[0].filename == __file__ and not record.shutdown
        (worker,) = record.threads
        assert stdlib.executor_of(worker) is record
        assert stdlib.executor_of(threading.current_thread()) is None
        ex.shutdown(wait=True)
        assert record.shutdown
        del ex, worker
        gc.collect()
        assert record.ref() is None
        assert record not in stdlib.live_executors()
    finally:
        stdlib.untrack_threads()


def test_thread_started_without_tracking_has_no_stack() -> None:
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join(T)
    assert stdlib.thread_created_at(t) == ()


# --- the raw lock token table --------------------------------------------------------


def test_raw_lock_tokens_prune_only_dead_locks(fake_engine: VCEngine) -> None:
    table = RawLockTokens(prune_at=1 << 20)
    kept = threading.Lock()
    table.release(kept)
    table.release(threading.Lock())  # dies at once, except for the table's reference
    assert len(table) == 2
    table.prune()
    assert len(table) == 1
    start_raw(lambda: (fake_engine.mark("released"), table.release(kept))).wait()
    table.acquire(kept)
    fake_engine.mark("acquired")
    assert fake_engine.hb("released", "acquired")


def test_raw_lock_tokens_prune_automatically() -> None:
    engine = VCEngine()
    events.set_happens_before(engine)
    try:
        table = RawLockTokens(prune_at=8)
        live = [threading.Lock() for _ in range(4)]
        for lock in live:
            table.release(lock)
        for _ in range(100):
            table.release(threading.Lock())
        assert len(table) < 16
        assert all(id(lock) in table._entries for lock in live)
    finally:
        events.set_happens_before(None)


@pytest.fixture
def fake_engine() -> Any:
    engine = VCEngine()
    events.set_happens_before(engine)
    yield engine
    events.set_happens_before(None)
