"""Detection on the labelled fixtures: racecheck and every peer detector, side by side.

    python bench/fixtures_peers.py [--jobs 2] [--timeout 60] [--detail] [--only GLOB ...]

Runs each fixture labelled ``# expect: race`` or ``# expect: no race`` (fixtures/README.md)
under racecheck and under every peer race detector importable from *this* interpreter
(``threadcheck`` needs Python >= 3.12; ``pyvft`` >= 3.14), with the fixture's folder as the
working directory, and prints a markdown table per tool: true positives (racy fixture
reported), false negatives, false positives (race-free fixture reported), true negatives, and
runs that crashed or timed out.  A verdict is read from what the tool prints, not from its exit
status alone: threadcheck exits 1 both for "races found" and for a crash of the program.

Only the race verdict is compared, not the reported lines: the peers report a variable name
and a line, racecheck reports both stacks; the fixture test suite checks racecheck's lines.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import platform
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
LABELS = ("race", "no race")


@dataclass(frozen=True)
class Fixture:
    path: Path
    racy: bool
    racecheck_args: tuple[str, ...]


@dataclass(frozen=True)
class Detector:
    """One tool: its command prefix and how to read "reported a race" from its output."""

    name: str
    prefix: tuple[str, ...]
    reported: Callable[[int, str, str], bool]
    # Exit statuses that mean the tool ran the program to its end.
    ok_status: tuple[int, ...]


def header(path: Path) -> dict[str, str]:
    """The leading ``# key: value`` comments of a fixture (last value wins)."""
    fields: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def fixtures(only: list[str] | None) -> list[Fixture]:
    found = []
    for path in sorted(FIXTURES.glob("*.py")):
        if only and not any(fnmatch.fnmatch(path.name, pat) for pat in only):
            continue
        fields = header(path)
        label = fields.get("expect")
        if label not in LABELS:
            continue
        args = tuple(fields.get("racecheck-args", "").split())
        found.append(Fixture(path, label == "race", args))
    return found


def detectors() -> list[Detector]:
    py = sys.executable
    tools = [
        Detector(
            "racecheck",
            (py, "-m", "racecheck.cli", "run"),
            lambda status, out, err: "WARNING: DATA RACE" in err,
            (0, 66),
        )
    ]
    if importlib.util.find_spec("threadcheck") is not None:
        tools.append(
            Detector(
                "threadcheck",
                (py, "-m", "threadcheck", "run"),
                lambda status, out, err: "Data races detected" in out,
                (0, 1),
            )
        )
    if importlib.util.find_spec("pyvft") is not None:
        # Never run here (pyvft requires Python >= 3.14); verdict rule is a guess: any
        # non-zero exit or a "race" in its output.
        tools.append(
            Detector(
                "pyvft",
                (py, "-m", "pyvft"),
                lambda status, out, err: status != 0 or "race" in (out + err).lower(),
                (0, 1),
            )
        )
    return tools


def run_one(tool: Detector, fx: Fixture, timeout: float) -> str:
    """``"race"``, ``"no race"``, or ``"error: ..."`` for one tool on one fixture."""
    extra = fx.racecheck_args if tool.name == "racecheck" else ()
    cmd = [*tool.prefix, *extra, fx.path.name]
    try:
        proc = subprocess.run(
            cmd,
            cwd=FIXTURES,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "error: timeout"
    if tool.reported(proc.returncode, proc.stdout, proc.stderr):
        return "race"
    if proc.returncode not in tool.ok_status:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1][:80]
        return f"error: exit {proc.returncode}: {last}"
    return "no race"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="fixtures run at once")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per run")
    ap.add_argument("--detail", action="store_true", help="also print every verdict")
    ap.add_argument("--only", nargs="*", help="fixture file name globs")
    args = ap.parse_args()

    fxs = fixtures(args.only)
    tools = detectors()
    jobs = [(t, fx) for fx in fxs for t in tools]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        verdicts = list(pool.map(lambda job: run_one(job[0], job[1], args.timeout), jobs))
    table = {(t.name, fx.path.name): v for (t, fx), v in zip(jobs, verdicts, strict=True)}

    n_racy = sum(fx.racy for fx in fxs)
    print(
        f"**{platform.python_implementation()} {platform.python_version()}**: "
        f"{len(fxs)} fixtures ({n_racy} `race`, {len(fxs) - n_racy} `no race`)"
    )
    print()
    print("| tool | true positives | false negatives | false positives | true negatives | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for t in tools:
        tp = fn = fp = tn = err = 0
        for fx in fxs:
            v = table[(t.name, fx.path.name)]
            if v.startswith("error"):
                err += 1
            elif fx.racy:
                tp, fn = (tp + 1, fn) if v == "race" else (tp, fn + 1)
            else:
                fp, tn = (fp + 1, tn) if v == "race" else (fp, tn + 1)
        print(f"| {t.name} | {tp}/{n_racy} | {fn} | {fp} | {tn}/{len(fxs) - n_racy} | {err} |")
    if args.detail:
        print()
        print("| fixture | expect | " + " | ".join(t.name for t in tools) + " |")
        print("| --- | --- |" + " --- |" * len(tools))
        for fx in fxs:
            cells = []
            for t in tools:
                v = table[(t.name, fx.path.name)]
                right = v == ("race" if fx.racy else "no race")
                cells.append(v if right else f"**{v}**")
            label = "race" if fx.racy else "no race"
            print(f"| {fx.path.name} | {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
