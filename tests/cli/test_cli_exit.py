"""What `racecheck run` does when the program ends: summary, reports, exit status,
the --leaks check; and `racecheck report`.

A fake ``racecheck.runtime`` (installed by a small driver in the subprocess) stands in
for the detector, so these tests check the CLI's own contract with the runtime:
``enable(options)``, ``findings()``, ``disable()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DRIVER = textwrap.dedent(
    """\
    import sys, types
    sys.path.insert(0, {samples_dir!r})
    import report_samples
    fake = types.ModuleType("racecheck.runtime")
    state = {{}}
    def enable(options, **kwargs):
        state["options"] = options
    def disable():
        state["disabled"] = True
    def findings():
        import builtins
        return [report_samples.race()] if getattr(builtins, "RACY", False) else []
    def core_name():
        return "fake-core"
    fake.enable, fake.disable, fake.findings, fake.core_name = enable, disable, findings, core_name
    sys.modules["racecheck.runtime"] = fake
    import racecheck
    racecheck.runtime = fake
    from racecheck.cli import main
    main(sys.argv[1:])
    """
)

RACY = "import builtins\nbuiltins.RACY = True\nprint('program output')\n"


def _run(tmp_path: Path, args: list[str], env: dict[str, str] | None = None):
    driver = tmp_path / "driver.py"
    samples = str(Path(__file__).resolve().parents[1] / "report")
    driver.write_text(DRIVER.format(samples_dir=samples))
    environ = {k: v for k, v in os.environ.items() if k != "RACECHECK_OPTIONS"}
    environ["RACECHECK_OPTIONS"] = "detect=0"
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, str(driver), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )


def test_findings_give_exitcode_summary_and_reports(tmp_path: Path) -> None:
    (tmp_path / "racy.py").write_text(RACY)
    got = _run(
        tmp_path,
        ["run", "--report", "json:out/r.json", "--report", "sarif:out/r.sarif", "racy.py"],
    )
    assert got.returncode == 66
    assert got.stdout == "program output\n"  # reports never go to stdout
    assert got.stderr.endswith("racecheck: Found 1 data race(s)\n")
    doc = json.loads((tmp_path / "out/r.json").read_text())
    assert [f["kind"] for f in doc["findings"]] == ["race"]
    sarif = json.loads((tmp_path / "out/r.sarif").read_text())
    assert sarif["runs"][0]["results"][0]["ruleId"] == "race"


def test_custom_exitcode_from_flag_and_env(tmp_path: Path) -> None:
    (tmp_path / "racy.py").write_text(RACY)
    assert _run(tmp_path, ["run", "--exitcode", "9", "racy.py"]).returncode == 9
    env = {"RACECHECK_OPTIONS": "detect=0 exitcode=7"}
    assert _run(tmp_path, ["run", "racy.py"], env=env).returncode == 7


def test_program_failure_status_wins_over_exitcode(tmp_path: Path) -> None:
    (tmp_path / "racy_fail.py").write_text(RACY + "import sys\nsys.exit(4)\n")
    got = _run(tmp_path, ["run", "racy_fail.py"])
    assert got.returncode == 4
    assert "racecheck: Found 1 data race(s)" in got.stderr


def test_clean_program_keeps_its_status_and_prints_no_summary(tmp_path: Path) -> None:
    (tmp_path / "clean.py").write_text("print('hi')\n")
    got = _run(tmp_path, ["run", "--report", "json:r.json", "clean.py"])
    assert (got.returncode, got.stdout, got.stderr) == (0, "hi\n", "")
    assert json.loads((tmp_path / "r.json").read_text())["findings"] == []


def test_log_path_instead_of_stderr(tmp_path: Path) -> None:
    (tmp_path / "racy.py").write_text(RACY)
    got = _run(tmp_path, ["run", "--log-path", "race.log", "racy.py"])
    assert got.returncode == 66 and got.stderr == ""
    assert (tmp_path / "race.log").read_text() == "racecheck: Found 1 data race(s)\n"


def test_atexit_handlers_and_non_daemon_threads_finish_before_the_summary(tmp_path) -> None:
    (tmp_path / "late.py").write_text(
        textwrap.dedent(
            """\
            import atexit, builtins, sys, threading
            go = threading.Event()
            def late():
                go.wait(10)
                builtins.RACY = True  # found after main returned
            threading.Thread(target=late).start()
            atexit.register(lambda: print("atexit ran", file=sys.stderr, flush=True))
            go.set()
            """
        )
    )
    got = _run(tmp_path, ["run", "late.py"])
    assert got.returncode == 66
    assert got.stderr == "atexit ran\nracecheck: Found 1 data race(s)\n"


def test_version_uses_runtime_core_name(tmp_path: Path) -> None:
    got = _run(tmp_path, ["--version"])
    assert "(engine core: fake-core)" in got.stdout


LEAKY = textwrap.dedent(
    """\
    import threading
    stop = threading.Event()
    def stuck():
        stop.wait()
    threading.Thread(target=stuck, name="stuck-worker", daemon={daemon}).start()
    print("main done", flush=True)
    """
)


@pytest.mark.parametrize("daemon", [False, True], ids=["non-daemon", "daemon"])
def test_leaks_reports_threads_still_running_and_exits(tmp_path: Path, daemon: bool) -> None:
    (tmp_path / "leaky.py").write_text(LEAKY.format(daemon=daemon))
    got = _run(tmp_path, ["run", "--leaks", "--max-wait", "0.2", "leaky.py"])
    assert got.returncode == 66, got.stderr
    assert got.stdout == "main done\n"
    assert "WARNING: THREAD LEAK" in got.stderr
    assert '"stuck-worker (stuck)"' in got.stderr
    assert "leaky.py" in got.stderr
    assert got.stderr.endswith("racecheck: Found 1 thread leak report(s)\n")


def test_leaks_clean_program(tmp_path: Path) -> None:
    (tmp_path / "joined.py").write_text(
        "import threading\nt = threading.Thread(target=print, args=('x',))\nt.start()\n"
    )
    got = _run(tmp_path, ["run", "--leaks", "joined.py"])
    assert (got.returncode, got.stdout, got.stderr) == (0, "x\n", "")


def test_without_leaks_flag_a_daemon_thread_is_not_reported(tmp_path: Path) -> None:
    (tmp_path / "leaky.py").write_text(LEAKY.format(daemon=True))
    got = _run(tmp_path, ["run", "leaky.py"])
    assert (got.returncode, got.stderr) == (0, "")


def test_report_command_renders_and_writes_html(tmp_path: Path) -> None:
    (tmp_path / "racy.py").write_text(RACY)
    _run(tmp_path, ["run", "--report", "json:r.json", "racy.py"])
    got = _run(tmp_path, ["report", "r.json", "--color", "no", "--strip-path-prefix", "/src/"])
    assert got.returncode == 0
    assert got.stdout.startswith("==================\nWARNING: DATA RACE\n")
    assert 'File "proj/app.py", line 12, in bump' in got.stdout
    assert got.stdout.endswith("racecheck: Found 1 data race(s)\n")
    got = _run(tmp_path, ["report", "r.json", "--html", "html"])
    assert got.returncode == 0
    assert (tmp_path / "html" / "finding-001-race.html").is_file()
    assert (tmp_path / "html" / "index.html").is_file()


def test_report_command_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{}")
    got = _run(tmp_path, ["report", "bad.json"])
    assert got.returncode == 1
    assert "not a racecheck JSON report" in got.stderr
    got = _run(tmp_path, ["report", "missing.json"])
    assert got.returncode != 0 and "missing.json" in got.stderr
