"""Differential test: both cores fed the same random event traces give the same verdicts.

A trace is a list of steps, each run by one of a few simulated threads: an access (any
of the six AccessSink kinds, or an audit) to one of a few objects, a publish into or a
consume from one of a few "channels" (token slots), or a thread restart (end, join with
or without the join edge, fork a fresh thread: exercises slot reuse).  Each simulated
thread is a real thread that runs exactly the step it is handed, one at a time, so the
interleaving is the trace's.  Every step runs from its own source line, so report
deduplication (by pair of lines) never hides a difference.  The verdict is the ordered
list of findings as (location, ops, lines, thread names).
"""

from __future__ import annotations

import queue
import random
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from engine_helpers import WAIT, Obj

from racecheck.engine.core import native_class
from racecheck.engine.detector import Detector
from racecheck.report.findings import Frame

NativeDetector = native_class()
pytestmark = pytest.mark.skipif(NativeDetector is None, reason="native core not built")

KINDS = ("read_attr", "write_attr", "read_item", "write_item", "mutate", "iterate", "audit")
KEYS: tuple[object, ...] = ("x", "y", 0, 1, (1, "k"))


def make_trace(seed: int, steps: int, nthreads: int = 3) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    trace: list[tuple[Any, ...]] = []
    for _ in range(steps):
        t = rng.randrange(nthreads + 1)  # thread 0 is the main thread
        roll = rng.random()
        if roll < 0.62:
            trace.append(("access", t, rng.choice(KINDS), rng.randrange(3), rng.choice(KEYS)))
        elif roll < 0.78:
            trace.append(("publish", t, rng.randrange(2), rng.random() < 0.5))
        elif roll < 0.94:
            trace.append(("consume", t, rng.randrange(2)))
        elif t:
            trace.append(("restart", t, rng.random() < 0.6))
    return trace


class Worker:
    """A real thread reported to the detector, running the steps it is handed."""

    def __init__(self, d: Detector, name: str) -> None:
        self.d = d
        self.inbox: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.done: queue.Queue[BaseException | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=name)
        self.token = d.fork(self.thread, (Frame("spawner.py", 1, "main"),))
        self.thread.start()

    def _run(self) -> None:
        self.d.begin(self.thread, self.token)
        try:
            while (step := self.inbox.get(timeout=WAIT)) is not None:
                try:
                    step()
                except BaseException as e:  # handed back to the driver
                    self.done.put(e)
                else:
                    self.done.put(None)
        finally:
            self.d.end(self.thread)

    def run(self, step: Callable[[], None]) -> None:
        self.inbox.put(step)
        error = self.done.get(timeout=WAIT)
        if error is not None:
            raise error

    def stop(self, join_edge: bool) -> None:
        self.inbox.put(None)
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        if join_edge:
            self.d.joined(self.thread)


def run_trace(cls: type[Detector], trace: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    d = cls()
    objs: list[Any] = [Obj(), Obj(), {}]
    chans: list[object | None] = [None, None]
    workers: dict[int, Worker] = {}
    generation = {t: 0 for t in range(1, 4)}

    def worker(t: int) -> Worker:
        if t not in workers:
            workers[t] = Worker(d, f"W{t}.{generation[t]}")
        return workers[t]

    for line, step in enumerate(trace, start=1):
        kind, t = step[0], step[1]
        if kind == "restart":
            if t in workers:
                workers.pop(t).stop(join_edge=step[2])
                generation[t] += 1
            continue
        if kind == "access":
            _, _, what, oi, key = step
            fn = compile("\n" * (line - 1) + "step()", "trace.py", "exec")
            step_fn = _access(d, what, objs[oi], key)
            body: Callable[[], None] = lambda fn=fn, s=step_fn: exec(fn, {"step": s})  # noqa: E731
        elif kind == "publish":
            _, _, c, joined = step

            def body(c: int = c, joined: bool = joined) -> None:
                chans[c] = d.publish(chans[c] if joined else None)
        else:
            c = step[2]

            def body(c: int = c) -> None:
                if chans[c] is not None:
                    d.consume(chans[c])

        if t == 0:
            body()
        else:
            worker(t).run(body)
    for w in workers.values():
        w.stop(join_edge=False)
    return [
        (
            r.current.location,
            r.current.op,
            r.current.stack[0].lineno,
            r.current.thread.name,
            r.previous.op,
            r.previous.stack[0].lineno,
            r.previous.thread.name,
        )
        for r in d.races()
    ]


def _access(d: Detector, what: str, obj: Any, key: object) -> Callable[[], None]:
    def step() -> None:
        frame = sys._getframe(1)
        if what in ("read_attr", "write_attr"):
            getattr(d, what)(obj, str(key), frame)
        elif what in ("read_item", "write_item"):
            getattr(d, what)(obj, key, frame)
        elif what == "audit":
            d.audit(obj, ("read", "write", "mutate", "iterate")[KEYS.index(key) % 4], "op", 1)
        else:
            getattr(d, what)(obj, frame)

    return step


@pytest.mark.parametrize("seed", range(12))
def test_both_cores_give_identical_verdicts_on_random_traces(seed: int) -> None:
    assert NativeDetector is not None
    trace = make_trace(seed, 160)
    expected = run_trace(Detector, trace)
    assert run_trace(NativeDetector, trace) == expected
    assert len(expected) > 0  # the traces are racy enough to compare something


def test_native_core_really_uses_the_c_types() -> None:
    assert NativeDetector is not None
    d = NativeDetector()
    o = Obj()
    d.write_attr(o, "x", sys._getframe())
    cell = d._objs[id(o)].attrs["x"]
    assert type(cell).__module__ == "racecheck.engine._native"
    assert type(d._current()).__name__ == "TState"
