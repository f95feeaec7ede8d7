"""The hooks' caches under concurrency, and their memory: dead types are forgotten."""

from __future__ import annotations

import gc
import threading

from racecheck.instrument import hooks

SOURCE = """
def make(i):
    class Dyn:
        pass
    class WithProp:
        @property
        def x(self):
            return i
    return Dyn, WithProp

def read(o):
    return o.x

def write(o, v):
    o.x = v

def retarget(cls):
    cls.x = property(lambda self: -1)
"""


def test_concurrent_decisions_stay_correct(sink, load):
    m = load(SOURCE)
    errors: list[BaseException] = []
    n_threads, rounds = 6, 150
    barrier = threading.Barrier(n_threads)
    mine: list[list[object]] = [[] for _ in range(n_threads)]

    def worker(k: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(rounds):
                dyn, with_prop = m.make(i)
                plain, prop = dyn(), with_prop()
                m.write(plain, i)
                assert m.read(plain) == i
                assert m.read(prop) == i
                mine[k].append(plain)
                if i % 10 == 0:  # class attribute writes invalidate caches concurrently
                    m.retarget(dyn)
                    assert m.read(dyn()) == -1
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert errors == []
    calls = sink.take()
    plain_ids = {id(o) for objs in mine for o in objs}
    on_plain = [(op, key) for op, obj, key, _ in calls if id(obj) in plain_ids]
    # Every plain object: one write and one read of x, never more, never fewer.
    assert len(on_plain) == 2 * n_threads * rounds
    # Property objects never show up as accessed through ``x``.
    assert not [c for c in calls if c[2] == "x" and type(c[1]).__name__ == "WithProp"]


def test_dead_types_are_forgotten(sink, load):
    m = load(SOURCE)
    gc.collect()
    baseline = len(hooks._refs)
    for i in range(200):
        dyn, _ = m.make(i)
        m.write(dyn(), 1)
    assert len(sink.take()) == 200  # recorded, then dropped: the sink held the objects
    del dyn
    gc.collect()
    assert len(hooks._refs) <= baseline + 2
    live_ids = {id(t) for t in gc.get_objects() if isinstance(t, type)}
    for per_type in hooks._writes.values():
        assert set(per_type) <= live_ids
