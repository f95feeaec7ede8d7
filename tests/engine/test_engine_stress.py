"""Thread-safety smoke: many threads hammer distinct and shared locations under proper
synchronisation (reported to the engine) -> no false positive, consistent state; and the
same hammering without the synchronisation is still caught."""

from __future__ import annotations

import threading

from engine_helpers import WAIT, EngineThread, F, Obj

from racecheck.engine.detector import Detector

THREADS = 8
ROUNDS = 300


class ModelLock:
    """A lock as the stdlib patches report it: consume on acquire, publish on release."""

    def __init__(self, d: Detector) -> None:
        self.d = d
        self.lock = threading.Lock()
        self.token: object = None

    def __enter__(self) -> None:
        assert self.lock.acquire(timeout=WAIT)
        self.d.consume(self.token)

    def __exit__(self, *exc: object) -> None:
        self.token = self.d.publish(self.token)
        self.lock.release()


def hammer(d: Detector, synchronised: bool) -> None:
    shared = Obj()
    shared.n = 0
    table: dict[int, int] = {}
    items: list[int] = []
    bag: list[int] = []
    guard = ModelLock(d)
    start = threading.Barrier(THREADS, timeout=WAIT)

    def worker(i: int) -> None:
        mine = Obj()
        start.wait()
        for r in range(ROUNDS):
            d.write_attr(mine, "x", F())  # distinct location: never a race
            d.read_attr(mine, "x", F())
            d.mutate(bag, F())  # concurrent mutations commute
            d.write_item(table, i, F())  # distinct keys
            if synchronised:
                with guard:
                    d.read_attr(shared, "n", F())
                    d.write_attr(shared, "n", F())
                    d.iterate(items, F())
                    d.mutate(items, F())
                    d.publish(None)  # more releases, more slow paths
            elif r == ROUNDS - 1:
                d.write_attr(shared, "n", F())

    threads = [EngineThread(d, lambda i=i: worker(i)).start() for i in range(THREADS)]
    for t in threads:
        t.join()


def test_hammering_under_sync_reports_nothing():
    d = Detector()
    hammer(d, synchronised=True)
    assert d.races() == []
    assert d.stats()["live_threads"] == 1


def test_hammering_without_sync_is_caught():
    d = Detector()
    hammer(d, synchronised=False)
    assert any(r.current.location == "Obj.n" for r in d.races())


def test_many_threads_sharing_fresh_objects_never_corrupt_the_shadow():
    d = Detector()
    objs = [Obj() for _ in range(64)]
    guard = ModelLock(d)
    start = threading.Barrier(THREADS, timeout=WAIT)

    def worker() -> None:
        start.wait()
        for _ in range(20):
            for o in objs:
                with guard:
                    d.write_attr(o, "v", F())

    threads = [EngineThread(d, worker).start() for _ in range(THREADS)]
    for t in threads:
        t.join()
    assert d.races() == []
    assert d.stats()["shadow_objects"] == 64
