"""Run every labelled program in fixtures/ through ``racecheck run`` and check the verdict.

Each fixture starts with a header of comment lines (see fixtures/README.md):

    # expect: race | no race | clean | leak | deadlock | lock-order-inversion
    # race-lines: 12 20          (race only; ``other.py:7`` names a line in another file)
    # twin: ok_something.py     (the correctly synchronised twin, or the racy one)
    # racecheck-args: --leaks   (optional extra ``racecheck run`` options)
    # stderr-contains: text     (optional, repeatable: must appear in racecheck's stderr)

For a race the test checks more than "some race was found": every reported race must be
exactly the labelled pair of lines (the innermost frame of each access), so a detector
that reports the right race plus a false positive elsewhere fails too.

Every fixture is also run under plain ``python`` (it must exit 0 and print nothing): the
labels are only worth something if the programs themselves are correct and terminate.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

RACE_EXIT = 66
DEADLOCK_EXIT = 2
RACECHECK_TIMEOUT = 90.0
PLAIN_TIMEOUT = 20.0

KINDS = ("race", "no race", "clean", "leak", "deadlock", "lock-order-inversion")
LIVENESS_KINDS = ("leak", "deadlock", "lock-order-inversion")

# Deadlock fixtures bound themselves with a SIGALRM (see fixtures/README.md): half a
# second under plain python, generous under racecheck so the detector speaks first.
ALARM_ENV = "RACECHECK_FIXTURE_ALARM"

_ACCESS_HEADER = re.compile(r"^(?!Thread ).+ at .+ by thread .+:$")
_FRAME = re.compile(r'^\s+File "(?P<file>[^"]+)", line (?P<line>\d+)')
_MARKER = re.compile(r"#\s*RACE\b")

Site = tuple[str, int]
"""(file basename, line number)."""


@dataclass(frozen=True)
class Fixture:
    path: Path
    expect: str
    race_lines: tuple[Site, ...]
    twin: str | None
    args: tuple[str, ...]
    stderr_contains: tuple[str, ...]
    liveness: bool


def _parse(path: Path) -> Fixture | None:
    """The header is the run of ``# key: value`` lines at the top of the file."""
    fields: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.startswith("#"):
            break
        key, sep, value = raw[1:].partition(":")
        if sep:
            fields.setdefault(key.strip(), []).append(value.strip())
    if "expect" not in fields:
        return None  # a helper module (e.g. shared_mod.py), not a fixture
    expect = fields["expect"][0]
    race_lines: list[Site] = []
    for token in " ".join(fields.get("race-lines", [])).split():
        file, _, line = token.rpartition(":")
        race_lines.append((file or path.name, int(line)))
    twin = fields.get("twin", [None])[0]
    args = tuple(" ".join(fields.get("racecheck-args", [])).split())
    liveness = (
        expect in LIVENESS_KINDS
        or "--leaks" in args
        or path.name.startswith(
            ("leak_", "deadlock_", "inversion_", "ok_leak_", "ok_deadlock_", "ok_lock_order_")
        )
    )
    return Fixture(
        path=path,
        expect=expect,
        race_lines=tuple(race_lines),
        twin=twin,
        args=args,
        stderr_contains=tuple(fields.get("stderr-contains", [])),
        liveness=liveness,
    )


def _collect() -> list[Fixture]:
    found = (_parse(p) for p in sorted(FIXTURES.glob("*.py")))
    return [f for f in found if f is not None]


ALL = _collect()
BY_NAME = {f.path.name: f for f in ALL}


def _params() -> list[object]:
    return [
        pytest.param(f, id=f.path.stem, marks=[pytest.mark.liveness] if f.liveness else [])
        for f in ALL
    ]


def _racecheck_cmd() -> list[str]:
    """The console script installed next to this interpreter, else ``-m racecheck.cli``."""
    bindir = Path(sys.executable).parent
    for name in ("racecheck", "racecheck.exe"):
        script = bindir / name
        if script.exists():
            return [str(script)]
    return [sys.executable, "-m", "racecheck.cli"]


def _env(alarm: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RACECHECK_")}
    env["PYTHONUNBUFFERED"] = "1"
    if alarm is not None:
        env[ALARM_ENV] = alarm
    return env


def _run(cmd: list[str], timeout: float, alarm: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        cwd=FIXTURES,
        env=_env(alarm),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def race_reports(stderr: str) -> list[tuple[Site, ...]]:
    """For each ``WARNING: DATA RACE`` block, the innermost frame of each access."""
    reports: list[list[Site]] = []
    want_frame = False
    for line in stderr.splitlines():
        if line.strip() == "WARNING: DATA RACE":
            reports.append([])
            want_frame = False
        elif reports and _ACCESS_HEADER.match(line):
            want_frame = True
        elif want_frame and (m := _FRAME.match(line)):
            reports[-1].append((Path(m["file"]).name, int(m["line"])))
            want_frame = False
    return [tuple(r) for r in reports]


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"


# --------------------------------------------------------------------------- the corpus


def test_corpus_size_and_labels() -> None:
    assert len(ALL) >= 70, f"only {len(ALL)} fixtures"
    for fx in ALL:
        assert fx.expect in KINDS, f"{fx.path.name}: unknown label {fx.expect!r}"
    racy = [f for f in ALL if f.expect == "race"]
    assert racy and all(f.path.name.startswith("race_") for f in racy)


@pytest.mark.parametrize("fx", [f for f in ALL if f.expect == "race"], ids=lambda f: f.path.stem)
def test_race_lines_match_markers(fx: Fixture) -> None:
    """The header's lines are exactly the lines marked ``# RACE`` (so an edit that moves
    code cannot leave a stale label behind)."""
    marked: list[Site] = []
    for path in [fx.path, *(FIXTURES / f for f, _ in fx.race_lines if f != fx.path.name)]:
        for no, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _MARKER.search(text) and (path == fx.path or fx.path.name in text):
                marked.append((path.name, no))
    assert len(fx.race_lines) == 2
    assert sorted(set(fx.race_lines)) == sorted(set(marked))


@pytest.mark.parametrize("fx", ALL, ids=lambda f: f.path.stem)
def test_twin_exists_with_opposite_verdict(fx: Fixture) -> None:
    if fx.expect in ("race", *LIVENESS_KINDS):
        assert fx.twin, f"{fx.path.name} has no twin"
    if fx.twin is None:
        return
    twin = BY_NAME.get(fx.twin)
    assert twin is not None, f"{fx.path.name}: twin {fx.twin} is not a fixture"
    finding = {"race", *LIVENESS_KINDS}
    assert (fx.expect in finding) != (twin.expect in finding)


@pytest.mark.parametrize("ops", [("write", "read"), ("mutate", "iterate"), ("send", "close")])
def test_race_report_parser_reads_the_text_renderer(ops: tuple[str, str]) -> None:
    """The parser this suite relies on finds the innermost frame of each access in the
    Go-layout report, and nothing from the thread-creation stacks."""
    from racecheck.report.findings import Access, Frame, RaceFinding, ThreadInfo
    from racecheck.report.text import format_race

    creator = (Frame("/src/app.py", 30, "main", "t.start()"),)
    worker = ThreadInfo(name="Thread-2 (worker)", tid=2, target="worker", created_at=creator)
    main = ThreadInfo(name="MainThread", tid=1)
    current = Access(
        ops[0],
        "Counter.value",
        "app.Counter object at 0x1",
        worker,
        (Frame("/src/app.py", 12, "bump", "x"), Frame("/src/app.py", 20, "worker", "bump()")),
    )
    previous = Access(
        ops[1], "Counter.value", "app.Counter object at 0x1", main, (Frame("/src/lib.py", 7, "f"),)
    )
    text = format_race(RaceFinding(current, previous))
    assert race_reports("noise\n" + text + "\n" + text) == [
        (("app.py", 12), ("lib.py", 7)),
        (("app.py", 12), ("lib.py", 7)),
    ]


# --------------------------------------------------------------------------- plain python


@pytest.mark.parametrize("fx", _params())
def test_fixture_runs_cleanly_under_plain_python(fx: Fixture) -> None:
    proc = _run([sys.executable, str(fx.path)], PLAIN_TIMEOUT, alarm=None)
    assert proc.returncode == 0, _describe(proc)
    assert proc.stdout == "" and proc.stderr == "", _describe(proc)


# --------------------------------------------------------------------------- racecheck run


@pytest.mark.parametrize("fx", _params())
def test_racecheck_verdict(fx: Fixture) -> None:
    alarm = "60" if fx.expect == "deadlock" else None
    cmd = [*_racecheck_cmd(), "run", *fx.args, str(fx.path)]
    proc = _run(cmd, RACECHECK_TIMEOUT, alarm=alarm)
    err = proc.stderr
    for text in fx.stderr_contains:
        assert text in err, f"missing {text!r}\n" + _describe(proc)

    if fx.expect == "race":
        assert proc.returncode == RACE_EXIT, _describe(proc)
        assert "WARNING: DATA RACE" in err, _describe(proc)
        expected = sorted(fx.race_lines)
        reports = race_reports(err)
        assert reports, "no race report could be parsed\n" + _describe(proc)
        for sites in reports:
            assert sorted(sites) == expected, (
                f"reported race at {sorted(sites)}, expected exactly {expected}\n" + _describe(proc)
            )
    elif fx.expect in ("no race", "clean"):
        assert proc.returncode == 0, _describe(proc)
        assert "WARNING" not in err, _describe(proc)
        assert "deadlock" not in err.lower(), _describe(proc)
    elif fx.expect == "leak":
        assert proc.returncode == RACE_EXIT, _describe(proc)
        assert "WARNING: THREAD LEAK" in err, _describe(proc)
        assert "DATA RACE" not in err, _describe(proc)
    elif fx.expect == "deadlock":
        assert proc.returncode == DEADLOCK_EXIT, _describe(proc)
        assert "all goroutines are asleep - deadlock!" in err, _describe(proc)
    elif fx.expect == "lock-order-inversion":
        assert proc.returncode == RACE_EXIT, _describe(proc)
        assert "WARNING: POTENTIAL DEADLOCK" in err, _describe(proc)
        assert "DATA RACE" not in err, _describe(proc)
    else:  # pragma: no cover - test_corpus_size_and_labels rejects unknown labels
        pytest.fail(f"unknown label {fx.expect!r}")
