"""Benchmark racecheck's detector on realistic threaded workloads.

    python bench/run.py [--runs 5] [--only NAME ...]

Each workload in bench/workloads/ runs in a fresh subprocess, plainly (``python w.py``) and
under racecheck (``python -m racecheck.cli run w.py``) — and under the peer race detectors
that install on this Python — alternating, ``--runs`` times each; the table shows the
median wall time and peak RSS of each, and the ratios against the plain run.  Peak RSS
comes from ``os.wait4`` on the child, so each number is that one process's own.

Nothing here is asserted: machines are shared and noisy; read the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = HERE / "workloads"

# Extra racecheck options per workload (site-packages is never instrumented unless asked).
EXTRA = {"library_sqlparse": ["--include", "sqlparse*"]}
NEEDS = {"library_sqlparse": "sqlparse"}


def measure(cmd: list[str]) -> tuple[float, int, int]:
    """Run ``cmd``; return (seconds, peak RSS in KiB, exit status)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode not in (0, 66):
        sys.stderr.write(f"[{' '.join(cmd)}] exited {proc.returncode}\n{err[-2000:]}\n")
    return elapsed, usage.ru_maxrss, proc.returncode


def peers() -> dict[str, list[str]]:
    """Peer detectors that can run here, as command prefixes."""
    found: dict[str, list[str]] = {}
    if importlib.util.find_spec("threadcheck") is not None:
        found["threadcheck"] = [sys.executable, "-m", "threadcheck"]
    if importlib.util.find_spec("pyvft") is not None:
        found["pyvft"] = [sys.executable, "-m", "pyvft"]
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    env_core = os.environ.get("RACECHECK_CORE", "")
    tools = {"plain": [sys.executable], "racecheck": [sys.executable, "-m", "racecheck.cli", "run"]}
    tools.update(peers())
    rows = []
    for path in sorted(WORKLOADS.glob("*.py")):
        name = path.stem
        if args.only and name not in args.only:
            continue
        if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
            print(f"skip {name}: pip install {NEEDS[name]}", file=sys.stderr)
            continue
        samples: dict[str, list[tuple[float, int]]] = {t: [] for t in tools}
        for _ in range(args.runs):
            for tool, prefix in tools.items():
                extra = EXTRA.get(name, []) if tool == "racecheck" else []
                secs, rss, _ = measure([*prefix, *extra, str(path)])
                samples[tool].append((secs, rss))
        med = {t: (statistics.median(s for s, _ in v), statistics.median(r for _, r in v))
               for t, v in samples.items()}
        rows.append((name, med))
    tool_names = [t for t in tools if t != "plain"]
    head = f"{'workload':<20}{'plain s':>9}{'plain MB':>9}"
    for t in tool_names:
        head += f"{t + ' x':>16}{t + ' mem x':>16}"
    print(f"Python {sys.version.split()[0]}, racecheck core {env_core or 'default'}, "
          f"median of {args.runs} runs")
    print(head)
    ratios: dict[str, list[float]] = {t: [] for t in tool_names}
    mem: dict[str, list[float]] = {t: [] for t in tool_names}
    for name, med in rows:
        ps, pr = med["plain"]
        line = f"{name:<20}{ps:>9.3f}{pr / 1024:>9.1f}"
        for t in tool_names:
            ts, tr = med[t]
            ratios[t].append(ts / ps)
            mem[t].append(tr / pr)
            line += f"{ts / ps:>16.2f}{tr / pr:>16.2f}"
        print(line)
    for t in tool_names:
        if ratios[t]:
            print(f"{t}: median time ratio {statistics.median(ratios[t]):.2f}x, worst "
                  f"{max(ratios[t]):.2f}x; median memory ratio {statistics.median(mem[t]):.2f}x, "
                  f"worst {max(mem[t]):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
