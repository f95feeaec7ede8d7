"""Micro-benchmark of the per-access hook cost (not a test; run it directly).

CPU time (``time.thread_time``: steady on a shared machine) of 2M attribute accesses (1M reads + 1M writes of ``o.x`` in a loop) in a rewritten
function, against the same function compiled plainly; the sink is a no-op object, so
this measures the instrumentation itself, not the engine.

    /work/venv-3.11/bin/python tests/instrument/bench_hooks.py
"""

from __future__ import annotations

import sys
import time
import types

from racecheck.instrument import hooks
from racecheck.instrument.rewrite import compile_instrumented

SOURCE = """
class Obj:
    def __init__(self):
        self.x = 0

def attrs(o, n):
    for _ in range(n):
        o.x = o.x + 1

def squares(o, n):
    for _ in range(n):
        o.x * o.x

def items(d, n):
    for _ in range(n):
        d["k"] = d["k"] + 1

def calls(lst, n):
    for _ in range(n):
        lst.append(1)
        lst.pop()
"""


class NoopSink:
    def read_attr(self, obj, name, frame):
        pass

    def write_attr(self, obj, name, frame):
        pass

    def read_item(self, container, key, frame):
        pass

    def write_item(self, container, key, frame):
        pass

    def mutate(self, container, frame):
        pass

    def iterate(self, container, frame):
        pass


def _module(code) -> types.ModuleType:
    m = types.ModuleType("bench_target")
    sys.modules["bench_target"] = m
    exec(code, m.__dict__)
    return m


def _best(fn, *args, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.thread_time()
        fn(*args)
        best = min(best, time.thread_time() - t0)
    return best


def main() -> None:
    n = 1_000_000
    plain = _module(compile(SOURCE, "bench_target.py", "exec", dont_inherit=True))
    rewritten = _module(compile_instrumented(SOURCE, "bench_target.py"))
    rows = []
    for label, fn_name, arg in (
        ("attr read+write", "attrs", lambda m: m.Obj()),
        ("attr square o.x * o.x", "squares", lambda m: m.Obj()),
        ("dict item read+write", "items", lambda m: {"k": 0}),
        ("list append+pop", "calls", lambda m: []),
    ):
        base = _best(getattr(plain, fn_name), arg(plain), n)
        hooks.uninstall()
        off = _best(getattr(rewritten, fn_name), arg(rewritten), n)
        hooks.install(NoopSink())
        on = _best(getattr(rewritten, fn_name), arg(rewritten), n)
        hooks.uninstall()
        rows.append((label, base, off, on))
    print(f"Python {sys.version.split()[0]}, {2 * n:,} accesses per row")
    print(f"{'workload':24} {'plain':>8} {'no sink':>14} {'no-op sink':>14}")
    for label, base, off, on in rows:
        print(
            f"{label:24} {base:7.3f}s {off:7.3f}s {off / base:5.1f}x {on:7.3f}s {on / base:5.1f}x"
        )


if __name__ == "__main__":
    main()
