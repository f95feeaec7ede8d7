"""Benchmark racecheck's detector on realistic threaded workloads.

    python bench/run.py [--runs 5] [--only NAME ...] [--core python|native] [--no-peers]

Each workload in bench/workloads/ runs in a fresh subprocess, plainly (``python w.py``), under
racecheck (``python -m racecheck.cli run w.py``) and under every peer race detector importable
from *this* interpreter (``threadcheck run w.py``; ``pyvft`` needs Python >= 3.14), one after
the other inside each round, ``--runs`` rounds: interleaving spreads the noise of a shared
machine over every tool alike instead of penalising whichever ran during a busy minute.

Prints a markdown table (paste it into bench/README.md as is): the plain run's median wall time
and peak RSS, then per tool the median time and peak-RSS ratios against plain, and a summary of
the median and worst ratio over the workloads.  Peak RSS comes from ``os.wait4`` on the child,
so each number is that one process's own.  The machine, date and load average (before and
after) head the table, because a shared machine's numbers mean little without them.

Nothing here is asserted: machines are shared and noisy; read the table.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = HERE / "workloads"

# Extra racecheck options per workload (site-packages is never instrumented unless asked).
EXTRA = {"library_sqlparse": ["--include", "sqlparse*"]}
NEEDS = {"library_sqlparse": "sqlparse"}


@dataclass
class Tool:
    """How to run one tool over a script, and which exit statuses mean "ran to the end"."""

    name: str
    prefix: list[str]
    ok_status: tuple[int, ...] = (0,)
    # Status meaning "ran fine and reported races" (None: the tool has no such status).
    race_status: int | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Sample:
    seconds: float
    rss_kib: int
    status: int


def measure(cmd: list[str], env: dict[str, str]) -> tuple[Sample, str]:
    """Run ``cmd``; return its wall time, peak RSS and exit status, and its stderr's tail.

    Output goes to temporary files, not pipes: a pipe that nobody drains while we wait
    would block a chatty child (a race report can be long) and hang the benchmark."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **env}
        )
        _, wait_status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
        err.seek(0)
        tail = err.read()[-2000:].decode(errors="replace")
    return Sample(elapsed, usage.ru_maxrss, proc.returncode), tail


def racecheck_tool(core: str | None) -> Tool:
    env = {"RACECHECK_CORE": core} if core else {}
    return Tool(
        "racecheck",
        [sys.executable, "-m", "racecheck.cli", "run"],
        ok_status=(0, 66),
        race_status=66,
        env=env,
    )


def active_core(core: str | None) -> str:
    """What ``racecheck --version`` says about the engine core under this RACECHECK_CORE."""
    env = {**os.environ, **({"RACECHECK_CORE": core} if core else {})}
    out = subprocess.run(
        [sys.executable, "-m", "racecheck.cli", "--version"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    ).stdout.strip()
    return out.split("core:")[-1].rstrip(")").strip() if "core:" in out else f"unknown ({out!r})"


def peers() -> list[Tool]:
    """Peer detectors importable from this interpreter (each needs its own Python range)."""
    found: list[Tool] = []
    if importlib.util.find_spec("threadcheck") is not None:
        # threadcheck 0.0.1.x: `threadcheck run SCRIPT`; report on stdout; exit 1 on races.
        found.append(Tool("threadcheck", [sys.executable, "-m", "threadcheck", "run"], (0, 1), 1))
    if importlib.util.find_spec("pyvft") is not None:
        found.append(Tool("pyvft", [sys.executable, "-m", "pyvft"]))
    return found


def machine_line() -> str:
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.node() or 'host'}: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.system()} {platform.release()}; load average (1/5/15 min) {load}"
    )


def ratio_cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "n/a"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="rounds; medians are over these")
    ap.add_argument("--only", nargs="*", help="workload names (file stems)")
    ap.add_argument(
        "--core",
        choices=("python", "native"),
        help="set RACECHECK_CORE for the racecheck runs (default: racecheck's own choice)",
    )
    ap.add_argument("--no-peers", action="store_true", help="skip peer detectors")
    args = ap.parse_args()

    core_note = active_core(args.core)
    if args.core and core_note != args.core:
        print(
            f"note: RACECHECK_CORE={args.core} requested but racecheck reports core "
            f"{core_note!r} (the {args.core} core is not available here)",
            file=sys.stderr,
        )
    tools = [Tool("plain", [sys.executable]), racecheck_tool(args.core)]
    if not args.no_peers:
        tools += peers()
    started = datetime.datetime.now().astimezone()
    load_before = machine_line()

    # workload -> tool -> samples
    results: dict[str, dict[str, list[Sample]]] = {}
    flagged: dict[str, dict[str, bool]] = {}
    for path in sorted(WORKLOADS.glob("*.py")):
        name = path.stem
        if args.only and name not in args.only:
            continue
        if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
            print(f"skip {name}: pip install {NEEDS[name]}", file=sys.stderr)
            continue
        samples: dict[str, list[Sample]] = {t.name: [] for t in tools}
        flagged[name] = {}
        for _ in range(args.runs):
            for tool in tools:
                extra = EXTRA.get(name, []) if tool.name == "racecheck" else []
                sample, tail = measure([*tool.prefix, *extra, str(path)], tool.env)
                if sample.status not in tool.ok_status:
                    print(f"[{tool.name} {name}] exited {sample.status}\n{tail}", file=sys.stderr)
                    continue
                flagged[name][tool.name] = sample.status == tool.race_status
                samples[tool.name].append(sample)
        results[name] = samples
        print(f"done {name}", file=sys.stderr)

    others = [t.name for t in tools if t.name != "plain"]
    py = f"{platform.python_implementation()} {platform.python_version()}"
    print(
        f"**{py}**, racecheck core `{core_note}`"
        f"{f' (RACECHECK_CORE={args.core})' if args.core else ''}, median of {args.runs} "
        f"interleaved runs, {started:%Y-%m-%d %H:%M %Z}  "
    )
    print(f"before: {load_before}  ")
    print(f"after: {machine_line()}")
    print()
    head = "| workload | plain s | plain MB |"
    rule = "| --- | ---: | ---: |"
    for t in others:
        head += f" {t} time x | {t} mem x |"
        rule += " ---: | ---: |"
    print(head)
    print(rule)
    time_ratios: dict[str, list[float]] = {t: [] for t in others}
    mem_ratios: dict[str, list[float]] = {t: [] for t in others}
    for name, samples in results.items():
        plain = samples["plain"]
        if not plain:
            continue
        ps = statistics.median(s.seconds for s in plain)
        pr = statistics.median(s.rss_kib for s in plain)
        line = f"| {name} | {ps:.3f} | {pr / 1024:.1f} |"
        for t in others:
            got = samples[t]
            if not got:
                line += " failed | failed |"
                continue
            ts = statistics.median(s.seconds for s in got) / ps
            tr = statistics.median(s.rss_kib for s in got) / pr
            time_ratios[t].append(ts)
            mem_ratios[t].append(tr)
            mark = " (races reported)" if flagged[name].get(t) else ""
            line += f" {ts:.2f}{mark} | {tr:.2f} |"
        print(line)
    print()
    for t in others:
        if time_ratios[t]:
            print(
                f"- **{t}**: time ratio median {ratio_cell(time_ratios[t])}x, worst "
                f"{max(time_ratios[t]):.2f}x; peak-RSS ratio median "
                f"{ratio_cell(mem_ratios[t])}x, worst {max(mem_ratios[t]):.2f}x "
                f"({len(time_ratios[t])} workloads)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
