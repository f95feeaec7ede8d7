"""Micro-benchmark of the engine's per-access paths (not collected by pytest).

    python tests/engine/bench_engine.py [N]          (RACECHECK_CORE=python|native)

Prints ns per call, the best of 7 runs, for: an empty Python call with the same
signature (the floor any Python hook pays), the same-epoch fast paths (write, read,
read-shared, mutate), the slow path (a new epoch every access: write after a publish,
minus the publish), publish and consume.  Accesses are made from a frame 10 calls deep
so the slow path's stack capture is realistic.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from racecheck.engine.core import core_name, make_detector


class Obj:
    pass


def best(fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(7))


def deep(n: int, fn: Callable[[], float]) -> float:
    return deep(n - 1, fn) if n else fn()


def main(n: int) -> None:
    d = make_detector()
    o = Obj()
    items: list[int] = []

    def per_call(call: Callable[..., None], *args: object) -> Callable[[], float]:
        def run() -> float:
            f = sys._getframe()
            t = time.perf_counter()
            for _ in range(n):
                call(*args, f)
            return (time.perf_counter() - t) / n * 1e9

        return run

    def empty(a: object, b: object, c: object) -> None:
        pass

    def slow_write() -> float:
        f = sys._getframe()
        w, pub, m = d.write_attr, d.publish, n // 10
        t = time.perf_counter()
        for _ in range(m):
            w(o, "x", f)
            pub(None)
        return (time.perf_counter() - t) / m * 1e9

    def publish() -> float:
        pub, m = d.publish, n // 10
        t = time.perf_counter()
        for _ in range(m):
            pub(None)
        return (time.perf_counter() - t) / m * 1e9

    def consume() -> float:
        tok, con, m = d.publish(None), d.consume, n // 10
        t = time.perf_counter()
        for _ in range(m):
            con(tok)
        return (time.perf_counter() - t) / m * 1e9

    f0 = sys._getframe()
    d.write_attr(o, "x", f0)
    d.read_attr(o, "x", f0)
    d.mutate(items, f0)
    shared = Obj()
    gate = threading.Barrier(2, timeout=5)

    def other() -> None:  # makes `shared.y` read-shared
        d.read_attr(shared, "y", sys._getframe())
        gate.wait()

    t = threading.Thread(target=other)
    t.start()
    d.read_attr(shared, "y", f0)
    gate.wait()
    t.join()

    rows = [
        ("empty Python call", best(lambda: deep(10, per_call(empty, o, "x")))),
        ("write_attr, same epoch", best(lambda: deep(10, per_call(d.write_attr, o, "x")))),
        ("read_attr, same epoch", best(lambda: deep(10, per_call(d.read_attr, o, "x")))),
        ("read_attr, read-shared", best(lambda: deep(10, per_call(d.read_attr, shared, "y")))),
        ("mutate, same epoch", best(lambda: deep(10, per_call(d.mutate, items)))),
    ]
    pub = best(publish)
    rows.append(("write_attr, slow path", best(lambda: deep(10, slow_write)) - pub))
    rows.append(("publish", pub))
    rows.append(("consume", best(consume)))
    print(f"Python {sys.version.split()[0]}, {core_name()} core, {n} calls per run")
    for name, ns in rows:
        print(f"  {name:<26} {ns:8.0f} ns")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300_000)
