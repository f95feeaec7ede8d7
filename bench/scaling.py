"""How racecheck's cost grows with threads and with distinct shared locations.

    python bench/scaling.py [--runs 3] [--max-locations 1000000] [--core python|native]

Three tables (markdown), each from fresh subprocesses, plain and under ``racecheck run``
alternating, medians of ``--runs``:

1. **threads** 1 -> 2 -> 4 -> 8: the same total work (attribute reads/writes on objects each
   thread owns, plus a lock-protected shared counter every 64 steps, so clocks really join)
   split over more threads.  With a constant total, a growing ratio is the per-thread cost of
   the detector (vector clocks grow with the number of threads).
2. **locations** 1e3 -> 1e6: that many distinct objects, each field written by the main thread
   and then read and written by a worker (happens-before through start/join, so no race), two
   passes.  Time and peak RSS against plain, and racecheck's extra bytes per location added
   since the previous row (its fixed start-up footprint cancels out): shadow memory must stay
   O(live locations), i.e. that number must stay roughly constant.
3. **release**: inside one run (plain and racecheck), RSS after the objects of table 2 are
   touched, then after they are dropped and ``gc.collect()`` runs, then after a second
   identical round; once with a plain list of ``__slots__`` objects (racecheck cannot
   weak-reference them, so its shadow holds them strongly until a sweep) and once with
   everything weak-referenceable.  Shadow state must die with the objects: the second round must not grow
   the peak (memory reused), and the drop should show in RSS as far as the allocator gives
   pages back.

Nothing is asserted; the machine is shared: the load average heads each table.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

THIS = Path(__file__).resolve()
TOTAL_STEPS = 240_000  # table 1: total steps over all threads


# ---------------------------------------------------------------- child side (measured code)


def rss_kib() -> int:
    """Current resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


class Cell:
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = 0


def thread_steps(cells: list[Cell], steps: int, shared: Counter) -> None:
    n = len(cells)
    for i in range(steps):
        c = cells[i % n]
        c.value = c.value + i
        if i % 64 == 0:
            with shared.lock:
                shared.total += 1


def child_threads(n_threads: int) -> dict[str, float]:
    shared = Counter()
    per = TOTAL_STEPS // n_threads
    owned = [[Cell(k) for k in range(256)] for _ in range(n_threads)]
    threads = [
        threading.Thread(target=thread_steps, args=(owned[k], per, shared))
        for k in range(n_threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"total": shared.total}


def touch(cells: list[Cell]) -> None:
    for c in cells:
        c.value = c.value + 1


class WeakCell:
    __slots__ = ("value", "__weakref__")

    def __init__(self, value: int) -> None:
        self.value = value


class Bag(list):  # type: ignore[type-arg]
    """A list that accepts weak references (a plain list does not)."""


def one_round(n: int, weak: bool = False) -> list[Any]:
    cells: list[Any] = Bag(WeakCell(k) for k in range(n)) if weak else [Cell(k) for k in range(n)]
    for _ in range(2):
        t = threading.Thread(target=touch, args=(cells,))
        t.start()
        t.join()
        touch(cells)
    return cells


def child_locations(n: int) -> dict[str, float]:
    one_round(n)
    return {}


class Marker:
    """A weakref-able sentinel kept in the list: dead after ``del`` + gc iff the list died."""


def child_release(n: int, weak: bool = False) -> dict[str, float]:
    base = rss_kib()
    cells: list[Any] = one_round(n, weak)
    marker = Marker()
    cells.append(marker)
    alive = weakref.ref(marker)
    del marker
    touched = rss_kib()
    del cells
    gc.collect()
    dropped = rss_kib()
    freed = alive() is None
    cells = one_round(n, weak)
    again = rss_kib()
    del cells
    gc.collect()
    return {
        "base": base,
        "touched": touched,
        "dropped": dropped,
        "again": again,
        "freed": float(freed),
    }


def child_release_weak(n: int) -> dict[str, float]:
    return child_release(n, weak=True)


CHILDREN = {
    "threads": child_threads,
    "locations": child_locations,
    "release": child_release,
    "release_weak": child_release_weak,
}


# ---------------------------------------------------------------- driver side


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, dict[str, float]]:
    """(seconds, peak RSS KiB, the child's JSON result) of one subprocess."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **env})
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        if code != 0:
            tail = err.read()[-1500:].decode(errors="replace")
            raise SystemExit(f"{' '.join(cmd)} exited {code}:\n{tail}")
    last = text.strip().splitlines()[-1] if text.strip() else "{}"
    return elapsed, usage.ru_maxrss, json.loads(last)


def compare(
    kind: str, arg: int, runs: int, env: dict[str, str]
) -> tuple[float, float, float, float, list[dict[str, float]]]:
    """Median (plain s, plain KiB, racecheck s, racecheck KiB) and racecheck's child results."""
    child = [str(THIS), "--child", kind, str(arg)]
    plain_cmd = [sys.executable, *child]
    rc_cmd = [sys.executable, "-m", "racecheck.cli", "run", *child]
    p_s, p_m, r_s, r_m = [], [], [], []
    results: list[dict[str, float]] = []
    for _ in range(runs):
        s, m, _res = run(plain_cmd, {})
        p_s.append(s)
        p_m.append(m)
        s, m, res = run(rc_cmd, env)
        r_s.append(s)
        r_m.append(m)
        results.append(res)
    med = statistics.median
    return med(p_s), med(p_m), med(r_s), med(r_m), results


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def release_table(n: int, env: dict[str, str]) -> None:
    rows = []
    for kind, what in (
        ("release", "list of `__slots__` objects (neither weak-referenceable)"),
        ("release_weak", "list subclass of objects with `__weakref__` (all weak-referenceable)"),
    ):
        child = [str(THIS), "--child", kind, str(n)]
        rows.append((f"plain, {what}", run([sys.executable, *child], {})[2]))
        rc_cmd = [sys.executable, "-m", "racecheck.cli", "run", *child]
        rows.append((f"racecheck, {what}", run(rc_cmd, env)[2]))
    print(f"### Release after objects die ({n:.0e} locations, one run each, load {load()})")
    print()
    print(
        "| run | RSS at start MB | after touching MB | after del + gc MB | after round 2 MB "
        "| objects freed by del + gc |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, r in rows:
        cells = " | ".join(f"{r[k] / 1024:.1f}" for k in ("base", "touched", "dropped", "again"))
        print(f"| {name} | {cells} | {'yes' if r['freed'] else 'no'} |")
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-locations", type=int, default=1_000_000)
    ap.add_argument("--core", choices=("python", "native"))
    ap.add_argument("--skip", nargs="*", default=[], choices=("threads", "locations", "release"))
    ap.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, n = args.child
        print(json.dumps(CHILDREN[kind](int(n))))
        return 0

    env = {"RACECHECK_CORE": args.core} if args.core else {}
    print(
        f"**CPython {platform.python_version()}**, RACECHECK_CORE={args.core or '(default)'}, "
        f"{os.cpu_count()} CPUs, median of {args.runs} interleaved runs, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
    print()
    if "threads" not in args.skip:
        print(f"### Threads (total {TOTAL_STEPS} steps split over the threads, load {load()})")
        print()
        print("| threads | plain s | racecheck s | time x | mem x |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for n in (1, 2, 4, 8):
            ps, pm, rs, rm, _ = compare("threads", n, args.runs, env)
            print(f"| {n} | {ps:.3f} | {rs:.3f} | {rs / ps:.2f} | {rm / pm:.2f} |")
        print()
    sizes = [n for n in (1_000, 10_000, 100_000, 1_000_000) if n <= args.max_locations]
    if "locations" not in args.skip:
        print(f"### Distinct locations (load {load()})")
        print()
        print(
            "| locations | plain s | racecheck s | time x | plain MB | racecheck MB | mem x "
            "| extra bytes / added location |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        prev: tuple[int, float, float] | None = None
        for n in sizes:
            ps, pm, rs, rm, _ = compare("locations", n, args.runs, env)
            # Marginal: racecheck's own start-up footprint cancels out between two sizes.
            extra = (
                ""
                if prev is None
                else f"{((rm - prev[2]) - (pm - prev[1])) * 1024 / (n - prev[0]):.0f}"
            )
            prev = (n, pm, rm)
            print(
                f"| {n:.0e} | {ps:.3f} | {rs:.3f} | {rs / ps:.2f} | {pm / 1024:.1f} "
                f"| {rm / 1024:.1f} | {rm / pm:.2f} | {extra} |"
            )
        print()
    if "release" not in args.skip and sizes:
        release_table(sizes[-1], env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
