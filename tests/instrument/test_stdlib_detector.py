"""The stdlib edges against the REAL engine (racecheck.engine.detector.Detector): the
synchronised version reports nothing, the racy twin reports the race."""

from __future__ import annotations

import _thread
import queue
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from test_stdlib_vc import start_raw

from racecheck.instrument import stdlib
from racecheck.sync import events

detector_mod = pytest.importorskip("racecheck.engine.detector")


class Box:
    value = 0


@pytest.fixture
def det() -> Iterator[Any]:
    d = detector_mod.Detector()
    events.set_happens_before(d)
    stdlib.install(d)
    yield d
    stdlib.uninstall()
    events.set_happens_before(None)


def write(d: Any, box: Box) -> None:
    d.write_attr(box, "value", sys._getframe(1))
    box.value += 1


def read(d: Any, box: Box) -> int:
    d.read_attr(box, "value", sys._getframe(1))
    return box.value


def test_start_and_join_order_the_child(det: Any) -> None:
    box = Box()
    write(det, box)
    t = threading.Thread(target=lambda: write(det, box))
    t.start()
    t.join(5)
    read(det, box)
    assert det.races() == []


def test_unjoined_child_races_with_parent(det: Any) -> None:
    box = Box()
    t = threading.Thread(target=lambda: write(det, box))
    t.start()
    from test_stdlib_edges import _orig_join

    _orig_join(t)  # waits without the join edge
    read(det, box)
    assert len(det.races()) == 1


def test_queue_item_mutated_after_put_is_a_race_on_every_schedule(det: Any) -> None:
    q: queue.Queue[Box] = queue.Queue()
    first, second = Box(), Box()

    def producer() -> None:
        write(det, first)
        q.put(first)
        write(det, first)  # mutation after handing it over
        write(det, second)
        q.put(second)

    start_raw(producer).wait()
    assert q.get(timeout=5) is first
    read(det, first)
    assert q.get(timeout=5) is second
    read(det, second)
    (race,) = det.races()
    assert race.current.op == "read" and race.previous.op == "write"


def test_lock_with_statement_orders_and_missing_lock_races(det: Any) -> None:
    lock = threading.Lock()
    box = Box()

    def locked() -> None:
        with stdlib.wrap_with(lock):
            write(det, box)

    start_raw(locked).wait()
    with stdlib.wrap_with(lock):
        read(det, box)
    assert det.races() == []
    start_raw(unlocked_write, det, box).wait()  # no lock this time
    read(det, box)
    races = det.races()
    assert races and all(
        "unlocked_write" in {r.current.stack[0].function, r.previous.stack[0].function}
        for r in races
    )


def unlocked_write(d: Any, box: Box) -> None:
    write(d, box)


def test_event_and_executor(det: Any) -> None:
    box, other = Box(), Box()
    ev = threading.Event()

    def setter() -> None:
        write(det, box)
        ev.set()

    start_raw(setter)
    assert ev.wait(5)
    read(det, box)
    with ThreadPoolExecutor(1) as ex:
        ex.submit(write, det, other).result(5)
        read(det, other)
    assert det.races() == []


@pytest.mark.parametrize("with_backend", [True, False])
def test_backend_sees_a_library_lock(det: Any, with_backend: bool) -> None:
    from racecheck.instrument.backends import base

    backend = base.choose_backend()
    if with_backend:
        backend.start()
    try:
        lock = _thread.allocate_lock()  # raw, like a lock made before install
        box = Box()

        def locked() -> None:
            lock.acquire()
            try:
                write(det, box)
            finally:
                lock.release()

        # A threading.Thread: on 3.11 setprofile only reaches threads started that way.
        t = threading.Thread(target=locked)
        t.start()
        from test_stdlib_edges import _orig_join

        _orig_join(t)  # no join edge: only the lock can order the two accesses
        lock.acquire()
        read(det, box)
        lock.release()
    finally:
        backend.stop()
    assert len(det.races()) == (0 if with_backend else 1)
