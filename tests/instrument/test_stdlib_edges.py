"""Every stdlib edge both ways: with the synchronisation the two marks are ordered, in
the racy twin (no synchronisation, schedule forced with a Signal racecheck cannot see)
they are concurrent."""

from __future__ import annotations

import _thread
import queue
import threading
from typing import Any

import pytest
from test_stdlib_vc import Signal, VCEngine, start_raw

from racecheck.instrument import stdlib
from racecheck.instrument.stdlib_sync import LOCK_TOKENS
from racecheck.sync import events

T = 5.0  # bound on every blocking wait


@pytest.fixture
def eng() -> Any:
    engine = VCEngine()
    events.set_happens_before(engine)
    stdlib.install(engine)
    yield engine
    stdlib.uninstall()
    events.set_happens_before(None)


# --- threads ---------------------------------------------------------------------------


def test_start_orders_parent_before_child(eng: VCEngine) -> None:
    eng.mark("parent")
    t = threading.Thread(target=eng.mark, args=("child",))
    t.start()
    t.join(T)
    assert eng.hb("parent", "child")


def test_parent_after_start_is_concurrent_with_child(eng: VCEngine) -> None:
    go = Signal()

    def child() -> None:
        go.wait()
        eng.mark("child")

    t = threading.Thread(target=child)
    t.start()
    eng.mark("parent-after-start")
    go.set()
    t.join(T)
    assert eng.concurrent("parent-after-start", "child")


def test_join_orders_child_before_joiner(eng: VCEngine) -> None:
    t = threading.Thread(target=eng.mark, args=("child",))
    t.start()
    t.join(T)
    eng.mark("after-join")
    assert eng.hb("child", "after-join")
    assert ("joined", t.name) in eng.calls


def test_finished_thread_without_join_is_unordered(eng: VCEngine) -> None:
    done = Signal()

    def child() -> None:
        eng.mark("child")
        done.set()

    t = threading.Thread(target=child)
    t.start()
    done.wait()
    eng.mark("main")
    assert eng.concurrent("child", "main")
    t.join(T)


def test_timed_out_join_adds_no_edge(eng: VCEngine) -> None:
    release = Signal()

    def child() -> None:
        eng.mark("child")
        release.wait()

    t = threading.Thread(target=child)
    t.start()
    t.join(0.01)
    assert t.is_alive()
    eng.mark("main")
    release.set()
    t.join(T)
    assert eng.concurrent("child", "main")


def test_is_alive_false_orders_child_before_caller(eng: VCEngine) -> None:
    t = threading.Thread(target=eng.mark, args=("child",))
    t.start()
    _orig_join(t)
    assert not t.is_alive()
    eng.mark("after")
    assert eng.hb("child", "after")


def _orig_join(t: threading.Thread) -> None:
    """Wait for t without the join edge (spin on the unpatched is_alive)."""
    from racecheck.instrument.stdlib_threads import _orig_is_alive

    lock = _thread.allocate_lock()
    lock.acquire()
    for _ in range(5000):
        if not _orig_is_alive(t):
            return
        lock.acquire(True, 0.001)
    raise AssertionError("thread did not finish")


def test_subclass_overriding_run_gets_both_edges(eng: VCEngine) -> None:
    class Worker(threading.Thread):
        def run(self) -> None:
            eng.mark("run")

    eng.mark("before")
    w = Worker()
    w.start()
    w.join(T)
    eng.mark("after")
    assert eng.hb("before", "run") and eng.hb("run", "after")


def test_timer_start_orders_before_function(eng: VCEngine) -> None:
    eng.mark("before")
    timer = threading.Timer(0.0, eng.mark, args=("fn",))
    timer.start()
    timer.join(T)
    assert eng.hb("before", "fn")


def test_interpreter_exit_orders_non_daemon_threads_before_atexit(tmp_path: Any) -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "exit_edge.py"
    script.write_text(
        "import atexit, sys, threading\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_stdlib_vc import VCEngine, Signal\n"
        "from racecheck.sync import events\n"
        "from racecheck.instrument import stdlib\n"
        "eng = VCEngine(); events.set_happens_before(eng); stdlib.install(eng)\n"
        "go = Signal()\n"
        "def work():\n"
        "    go.wait(); eng.mark('worker')\n"
        "def at_exit():\n"
        "    eng.mark('atexit')\n"
        "    print('ordered' if eng.hb('worker', 'atexit') else 'unordered', flush=True)\n"
        "atexit.register(at_exit)\n"
        "threading.Thread(target=work).start()\n"
        "go.set()\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ordered", out.stderr


# --- raw locks via wrap_with -------------------------------------------------------------


@pytest.mark.parametrize("make", [threading.Lock, threading.RLock], ids=["Lock", "RLock"])
def test_with_raw_lock_orders_critical_sections(eng: VCEngine, make: Any) -> None:
    lock = make()
    wrapped = stdlib.wrap_with(lock)
    assert wrapped is not lock

    def first() -> None:
        with stdlib.wrap_with(lock):
            eng.mark("first")

    start_raw(first).wait()
    with stdlib.wrap_with(lock):
        eng.mark("second")
    assert eng.hb("first", "second")
    assert not lock.locked() if make is threading.Lock else True


def test_without_the_lock_critical_sections_are_concurrent(eng: VCEngine) -> None:
    lock, other = threading.Lock(), threading.Lock()
    start_raw(lambda: (stdlib.wrap_with(lock).__enter__(), eng.mark("first"))).wait()
    with stdlib.wrap_with(other):
        eng.mark("second")
    assert eng.concurrent("first", "second")


def test_wrap_with_passes_other_objects_through() -> None:
    cond, sem, event = threading.Condition(), threading.Semaphore(), threading.Event()
    for obj in (cond, sem, event, open(__file__)):
        assert stdlib.wrap_with(obj) is obj
        if hasattr(obj, "close"):
            obj.close()


def test_wrap_with_keeps_exceptions_and_enter_value() -> None:
    lock = threading.RLock()
    with pytest.raises(KeyError):
        with stdlib.wrap_with(lock) as value:
            assert value is True
            raise KeyError("boom")
    assert lock.acquire(False)  # released despite the exception
    lock.release()


# --- Condition, Event, Semaphore, Barrier ----------------------------------------------------


def test_condition_orders_notifier_before_woken_waiter(eng: VCEngine) -> None:
    cond = threading.Condition()
    state = {"ready": False}

    def producer() -> None:
        with cond:
            eng.mark("produced")
            state["ready"] = True
            cond.notify_all()

    with cond:
        t = threading.Thread(target=producer)
        t.start()
        assert cond.wait_for(lambda: state["ready"], T)
        eng.mark("consumed")
    t.join(T)
    assert eng.hb("produced", "consumed")


def test_condition_acquire_method_and_plain_wait(eng: VCEngine) -> None:
    cond = threading.Condition(threading.Lock())
    woke = Signal()

    def producer() -> None:
        woke.wait()
        with cond:
            eng.mark("produced")
            cond.notify()

    cond.acquire()
    start_raw(producer)
    woke.set()
    assert cond.wait(T)
    eng.mark("consumed")
    cond.release()
    assert eng.hb("produced", "consumed")


def test_event_set_orders_before_wait_and_is_set(eng: VCEngine) -> None:
    ev = threading.Event()

    def setter() -> None:
        eng.mark("set")
        ev.set()

    start_raw(setter).wait()
    assert ev.is_set()
    eng.mark("is_set")
    assert eng.hb("set", "is_set")
    done = Signal()

    def waiter() -> None:
        assert ev.wait(T)
        eng.mark("waited")
        done.set()

    start_raw(waiter)
    done.wait()
    assert eng.hb("set", "waited")


def test_event_not_set_gives_no_edge(eng: VCEngine) -> None:
    ev = threading.Event()
    start_raw(eng.mark, "other").wait()
    assert not ev.is_set() and not ev.wait(0)
    eng.mark("main")
    assert eng.concurrent("other", "main")


@pytest.mark.parametrize("cls", [threading.Semaphore, threading.BoundedSemaphore])
def test_semaphore_release_orders_before_acquire(eng: VCEngine, cls: Any) -> None:
    sem = cls(1)
    sem.acquire()

    def releaser() -> None:
        eng.mark("released")
        sem.release()

    start_raw(releaser).wait()
    with sem:
        eng.mark("acquired")
    assert eng.hb("released", "acquired")
    # the with-statement's release is an edge as well
    done = Signal()

    def acquirer() -> None:
        assert sem.acquire(timeout=T)
        eng.mark("acquired-again")
        done.set()

    start_raw(acquirer)
    done.wait()
    assert eng.hb("acquired", "acquired-again")


def test_failed_semaphore_acquire_gives_no_edge(eng: VCEngine) -> None:
    sem = threading.Semaphore(0)
    start_raw(eng.mark, "other").wait()
    assert not sem.acquire(blocking=False)
    eng.mark("main")
    assert eng.concurrent("other", "main")


def test_bounded_semaphore_still_checks_its_bound(eng: VCEngine) -> None:
    sem = threading.BoundedSemaphore(1)
    with pytest.raises(ValueError):
        sem.release()
    with sem:
        pass
    with pytest.raises(ValueError):
        with sem:
            sem.release()


def test_barrier_orders_every_arrival_before_every_departure(eng: VCEngine) -> None:
    n = 3
    barrier = threading.Barrier(n, action=lambda: eng.mark("action"))

    def party(i: int) -> None:
        eng.mark(f"arrive{i}")
        barrier.wait(T)
        eng.mark(f"depart{i}")

    threads = [threading.Thread(target=party, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        _orig_join(t)
    for i in range(n):
        assert eng.hb(f"arrive{i}", "action")
        assert eng.hb("action", f"depart{i}")
        for j in range(n):
            assert eng.hb(f"arrive{i}", f"depart{j}")
    assert eng.concurrent("depart0", "depart1")


def test_barrier_generations_do_not_mix(eng: VCEngine) -> None:
    """A fast thread's arrival at the next generation is not ordered before a slow
    thread's departure from the previous one, even when it happened first."""
    from racecheck.instrument import stdlib_sync

    barrier = threading.Barrier(2)
    orig = stdlib_sync._orig_bar_wait
    slow_ident: list[int] = []
    gate_used: list[bool] = []

    def gated(self: Any, timeout: float | None = None) -> int:
        index: int = orig(self, timeout)
        if _thread.get_ident() in slow_ident and not gate_used:
            gate_used.append(True)
            # Between the barrier's return and racecheck's consume, let the fast thread
            # arrive (and publish) at the next generation first.
            spin = _thread.allocate_lock()
            spin.acquire()
            for _ in range(5000):
                if barrier.n_waiting == 1:
                    break
                spin.acquire(True, 0.001)
            else:
                raise AssertionError("fast thread never re-arrived")
        return index

    def fast() -> None:
        barrier.wait(T)
        eng.mark("fast-before-second-arrival")
        barrier.wait(T)

    def slow() -> None:
        slow_ident.append(_thread.get_ident())
        barrier.wait(T)
        eng.mark("slow-departure")
        barrier.wait(T)

    stdlib_sync._orig_bar_wait = gated
    try:
        ts, tf = threading.Thread(target=slow), threading.Thread(target=fast)
        ts.start()
        tf.start()
        _orig_join(ts)
        _orig_join(tf)
    finally:
        stdlib_sync._orig_bar_wait = orig
    assert gate_used
    assert eng.concurrent("fast-before-second-arrival", "slow-departure")


# --- queue -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue"])
def test_put_orders_before_the_get_of_that_item(eng: VCEngine, kind: str) -> None:
    q = getattr(queue, kind)()  # looked up now: SimpleQueue is replaced while installed

    def producer() -> None:
        eng.mark("put")
        q.put((1, "item"))

    start_raw(producer).wait()
    assert q.get(timeout=T) == (1, "item")
    eng.mark("got")
    assert eng.hb("put", "got")


def test_mutation_after_put_races_with_consumer_even_if_next_put_locked_first(
    eng: VCEngine,
) -> None:
    """The queue's lock must not order the producer's later write before the read."""
    q: queue.Queue[list[int]] = queue.Queue()
    item1, item2 = [1], [2]

    def producer() -> None:
        q.put(item1)
        eng.mark("mutate-after-put")  # item1[0] = 99
        q.put(item2)  # takes q.mutex before the consumer's get on this schedule

    start_raw(producer).wait()
    assert q.get(timeout=T) is item1
    eng.mark("consumer-read1")
    assert eng.concurrent("mutate-after-put", "consumer-read1")
    assert q.get(timeout=T) is item2
    eng.mark("consumer-read2")
    assert eng.hb("mutate-after-put", "consumer-read2")
    assert not any(id(lock) in LOCK_TOKENS._entries for lock in (q.mutex,)), (
        "the queue's internal lock carried an edge"
    )


def test_priority_queue_order_and_contents_are_untouched(eng: VCEngine) -> None:
    q: queue.PriorityQueue[tuple[int, str]] = queue.PriorityQueue()
    for item in [(3, "c"), (1, "a"), (2, "b")]:
        q.put(item)
    assert sorted(q.queue) == [(1, "a"), (2, "b"), (3, "c")]
    assert all(isinstance(x, tuple) for x in q.queue)
    assert [q.get_nowait() for _ in range(3)] == [(1, "a"), (2, "b"), (3, "c")]
    lifo: queue.LifoQueue[int] = queue.LifoQueue()
    lifo.put_nowait(1)
    lifo.put_nowait(2)
    assert [lifo.get(), lifo.get()] == [2, 1]


def test_same_object_put_twice_is_ordered_after_both_puts(eng: VCEngine) -> None:
    q: queue.Queue[object] = queue.Queue()
    item = object()
    start_raw(lambda: (eng.mark("put1"), q.put(item))).wait()
    start_raw(lambda: (eng.mark("put2"), q.put(item))).wait()
    assert q.get() is item
    eng.mark("got1")
    assert eng.hb("put1", "got1") and eng.hb("put2", "got1")
    assert q.get() is item and q.empty()


def test_failed_put_leaves_no_token(eng: VCEngine) -> None:
    q: queue.Queue[object] = queue.Queue(maxsize=1)
    q.put("x")
    with pytest.raises(queue.Full):
        q.put("y", block=False)
    from racecheck.instrument.stdlib_queue import _pending

    assert list(_pending[q]) == [id("x")]


def test_task_done_orders_before_join(eng: VCEngine) -> None:
    q: queue.Queue[int] = queue.Queue()
    q.put(1)

    def worker() -> None:
        q.get()
        eng.mark("work")
        q.task_done()

    start_raw(worker)
    q.join()
    eng.mark("joined")
    assert eng.hb("work", "joined")


def test_simplequeue_patch_is_a_simplequeue(eng: VCEngine) -> None:
    q = queue.SimpleQueue()
    assert isinstance(q, queue.SimpleQueue) and type(q).__name__ == "SimpleQueue"
    q.put_nowait(1)
    assert q.qsize() == 1 and q.get_nowait() == 1
    with pytest.raises(queue.Empty):
        q.get_nowait()


# --- install / uninstall ----------------------------------------------------------------


def _snapshot() -> dict[str, dict[str, object]]:
    import asyncio.base_events
    import concurrent.futures
    import concurrent.futures._base
    import multiprocessing.pool

    owners: dict[str, Any] = {
        "Thread": threading.Thread,
        "Condition": threading.Condition,
        "Event": threading.Event,
        "Semaphore": threading.Semaphore,
        "BoundedSemaphore": threading.BoundedSemaphore,
        "Barrier": threading.Barrier,
        "Queue": queue.Queue,
        "Future": concurrent.futures.Future,
        "TPE": concurrent.futures.ThreadPoolExecutor,
        "Loop": asyncio.base_events.BaseEventLoop,
        "ApplyResult": multiprocessing.pool.ApplyResult,
        "MapResult": multiprocessing.pool.MapResult,
        "IMapIterator": multiprocessing.pool.IMapIterator,
    }
    snap = {k: dict(vars(v)) for k, v in owners.items()}
    for module in (threading, queue, concurrent.futures, concurrent.futures._base):
        snap[module.__name__] = {k: v for k, v in vars(module).items() if not k.startswith("__")}
    return snap


def test_uninstall_restores_every_attribute_exactly_and_is_idempotent() -> None:
    before = _snapshot()
    engine = VCEngine()
    stdlib.install(engine)
    stdlib.install(engine)
    assert stdlib.installed()
    assert threading.Event.set is not before["Event"]["set"]
    assert queue.SimpleQueue is not before["queue"]["SimpleQueue"]
    stdlib.uninstall()
    stdlib.uninstall()
    assert not stdlib.installed()
    after = _snapshot()
    for key in before:
        assert before[key].keys() == after[key].keys(), key
        for name, value in before[key].items():
            assert after[key][name] is value, (key, name)


def test_without_a_listener_patched_primitives_still_work() -> None:
    stdlib.install(VCEngine())
    try:
        ev = threading.Event()
        ev.set()
        assert ev.wait(0)
        q: queue.Queue[int] = queue.Queue()
        q.put(1)
        assert q.get() == 1
        with stdlib.wrap_with(threading.Lock()):
            pass
    finally:
        stdlib.uninstall()


PRE_EXISTING_EVENT = threading.Event()  # made at import time, before any install
PRE_EXISTING_LOCK = threading.Lock()


def test_primitives_created_before_install_still_give_edges(eng: VCEngine) -> None:
    def setter() -> None:
        eng.mark("set")
        PRE_EXISTING_EVENT.set()
        with stdlib.wrap_with(PRE_EXISTING_LOCK):
            eng.mark("locked")

    try:
        start_raw(setter).wait()
        assert PRE_EXISTING_EVENT.wait(T)
        eng.mark("waited")
        with stdlib.wrap_with(PRE_EXISTING_LOCK):
            eng.mark("locked-after")
    finally:
        PRE_EXISTING_EVENT.clear()
    assert eng.hb("set", "waited") and eng.hb("locked", "locked-after")


def test_odd_subclasses_keep_working_without_edges(eng: VCEngine) -> None:
    class UnhashableQueue(queue.Queue):  # type: ignore[type-arg]
        __hash__ = None  # type: ignore[assignment]

    q = UnhashableQueue()
    q.put(1)
    assert q.get() == 1

    class UnhashableEvent(threading.Event):
        __hash__ = None  # type: ignore[assignment]

    ev = UnhashableEvent()
    ev.set()
    assert ev.wait(0) and ev.is_set()


def test_condition_over_a_python_lock_is_not_kept_alive(eng: VCEngine) -> None:
    import gc
    import weakref

    class PyLock:
        def __init__(self) -> None:
            self._lock = threading.Lock()

        def acquire(self, *args: Any) -> bool:
            return self._lock.acquire(*args)

        def release(self) -> None:
            self._lock.release()

        def __enter__(self) -> bool:
            return self.acquire()

        def __exit__(self, *exc: Any) -> None:
            self.release()

    lock = PyLock()
    cond = threading.Condition(lock)  # type: ignore[arg-type]

    def first(c: threading.Condition) -> None:
        with c:
            eng.mark("first")

    start_raw(first, cond).wait()
    with cond:
        eng.mark("second")
    assert eng.hb("first", "second")
    ref = weakref.ref(lock)
    del cond, lock
    gc.collect()
    assert ref() is None
