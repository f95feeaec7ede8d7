"""``--racecheck-leaks``, pytest-xdist, and the ``--racecheck-report`` files."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from racecheck.pytest_plugin import LEAK_HEADLINE, RACE_HEADLINE
from racecheck.report.json import load_report

SARIF_SCHEMA = Path(__file__).parent.parent / "data" / "sarif-schema-2.1.0.json"

LEAKY_SUITE = """
import threading
import pytest
import racecheck

RELEASE = threading.Event()


def test_leaks_a_thread():
    threading.Thread(target=RELEASE.wait, args=(30,), name="leaker", daemon=True).start()


@pytest.fixture
def worker():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="fixture-worker")
    thread.start()
    yield thread
    stop.set()
    thread.join()


def test_fixture_stops_its_thread(worker):
    assert worker.is_alive()


@pytest.mark.racecheck(leaks=False)
def test_leak_allowed_by_marker():
    threading.Thread(target=RELEASE.wait, args=(30,), daemon=True).start()


@pytest.mark.racecheck(ignore=["ignored-*"])
def test_leak_ignored_by_name():
    threading.Thread(target=RELEASE.wait, args=(30,), name="ignored-1", daemon=True).start()


@pytest.mark.racecheck(ignore=racecheck.leaks.ignore_created_by("test_leak_ignored_by_option"))
def test_leak_ignored_by_option():
    threading.Thread(target=RELEASE.wait, args=(30,), daemon=True).start()


def test_last():
    RELEASE.set()
"""


@pytest.mark.parametrize("workers", [None, "2"], ids=["serial", "xdist"])
def test_leaking_test_errors_at_teardown_and_its_twin_passes(suite, run, workers):
    suite.makepyfile(test_leaks=LEAKY_SUITE)
    result = run("--racecheck-leaks", *(["-n", workers] if workers else []))
    assert result.verdicts() == {
        "test_leaks.py::test_leaks_a_thread": {"PASSED", "ERROR"},
        "test_leaks.py::test_fixture_stops_its_thread": {"PASSED"},
        "test_leaks.py::test_leak_allowed_by_marker": {"PASSED"},
        "test_leaks.py::test_leak_ignored_by_name": {"PASSED"},
        "test_leaks.py::test_leak_ignored_by_option": {"PASSED"},
        "test_leaks.py::test_last": {"PASSED"},
    }
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = result.section("ERROR at teardown of test_leaks_a_thread")
    assert LEAK_HEADLINE in report
    assert "WARNING: THREAD LEAK" in report
    assert '"leaker' in report
    assert "in test_leaks_a_thread\n    threading.Thread(" in report  # where it started
    summary = result.summary()
    assert "THREAD LEAK: 1 thread(s) (leaker)" in summary
    assert "in test_leaks.py::test_leaks_a_thread (teardown)" in summary
    # Leaks only: no race detection was switched on.
    assert "no data races" not in summary and RACE_HEADLINE not in result.out


def test_leak_checker_via_ini(suite, run):
    suite.makepyprojecttoml("[tool.pytest.ini_options]\nracecheck_leaks = true\n")
    suite.makepyfile(test_leaks=LEAKY_SUITE)
    result = run()
    assert result.verdict("::test_leaks_a_thread") == {"PASSED", "ERROR"}
    assert result.verdict("::test_fixture_stops_its_thread") == {"PASSED"}


def test_marker_rejects_unknown_arguments(suite, run):
    suite.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.racecheck(leak=False)
        def test_typo():
            pass
        """
    )
    result = run("--racecheck-leaks")
    assert "unknown @pytest.mark.racecheck argument(s): leak" in result.out + "\n".join(
        result.result.errlines
    )
    assert result.ret != pytest.ExitCode.OK


MIXED_SUITE_A = """
import app

def test_racy_a():
    app.racy()

def test_safe_a():
    assert app.synchronised() == 2

def test_racy_again_a():
    app.racy()
"""

MIXED_SUITE_B = """
import threading
import app

class Box:
    v = 0

def test_other_race_b():
    box = Box()
    worker = threading.Thread(target=lambda: setattr(box, "v", 1))
    worker.start()
    box.v = 2
    worker.join()

def test_safe_b():
    assert app.synchronised() == 2

def test_racy_b():
    app.racy()
"""


def _findings(path: Path) -> list[tuple[str, str]]:
    return sorted((f.kind, f.fingerprint) for f in load_report(path))


@pytest.mark.parametrize("workers", [None, "2"], ids=["serial", "xdist"])
def test_reports_are_written_and_valid(suite, run, workers):
    suite.makepyfile(test_mixed_a=MIXED_SUITE_A, test_mixed_b=MIXED_SUITE_B)
    args = ["--racecheck", "--racecheck-report", "json:out/races.json"]
    args += ["--racecheck-report=sarif:out/races.sarif"]
    if workers:
        args += ["-n", workers]
    result = run(*args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    findings = load_report(suite.path / "out" / "races.json")
    assert [f.kind for f in findings] == ["race", "race"]  # two distinct races, once each
    locations = sorted(f.current.location for f in findings)  # type: ignore[union-attr]
    assert locations == ["Box.v", "Counter.value"]
    sarif = json.loads((suite.path / "out" / "races.sarif").read_text())
    schema = json.loads(SARIF_SCHEMA.read_text())
    jsonschema.validate(sarif, schema)
    assert len(sarif["runs"][0]["results"]) == 2
    assert "racecheck: wrote json report to out/races.json" in result.summary()


def test_xdist_gives_the_same_verdicts_and_summary_as_serial(suite, run):
    suite.makepyfile(test_mixed_a=MIXED_SUITE_A, test_mixed_b=MIXED_SUITE_B)
    serial = run("--racecheck", "--racecheck-report=json:serial.json")
    parallel = run(
        "--racecheck", "-n", "2", "--timeout=60", "--racecheck-report=json:parallel.json"
    )
    assert (
        serial.verdicts()
        == parallel.verdicts()
        == {
            "test_mixed_a.py::test_racy_a": {"FAILED"},
            "test_mixed_a.py::test_safe_a": {"PASSED"},
            "test_mixed_a.py::test_racy_again_a": {"FAILED"},
            "test_mixed_b.py::test_other_race_b": {"FAILED"},
            "test_mixed_b.py::test_safe_b": {"PASSED"},
            "test_mixed_b.py::test_racy_b": {"FAILED"},
        }
    )
    assert parallel.ret == serial.ret == pytest.ExitCode.TESTS_FAILED
    # Every failing test says why, whichever worker ran it.
    for name in ("test_racy_a", "test_racy_again_a", "test_other_race_b", "test_racy_b"):
        assert RACE_HEADLINE in parallel.section(name)
    # The controller's summary lists every race of every worker, in the serial order
    # (thread names aside, which differ per process).
    assert _strip_threads(parallel.summary()).replace("parallel.json", "X") == _strip_threads(
        serial.summary()
    ).replace("serial.json", "X")
    summary = parallel.summary()
    assert "racecheck: Found 2 data race(s) in 4 test(s)" in summary
    for name in ("test_racy_a", "test_racy_again_a", "test_other_race_b", "test_racy_b"):
        assert f"::{name} (call)" in summary
    assert _findings(suite.path / "serial.json") == _findings(suite.path / "parallel.json")


def _strip_threads(text: str) -> str:
    import re

    return re.sub(r"\(Thread-\d+[^)]*\)+", "(Thread)", text)


def test_background_race_after_the_last_test_fails_the_session(suite, run):
    suite.makepyfile(
        test_late="""
        import os
        import threading

        class Box:
            v = 0

        def test_starts():
            box = Box()
            read_end, write_end = os.pipe()

            def late_writer():
                os.read(read_end, 1)
                box.v = 1

            worker = threading.Thread(target=late_writer, daemon=True)
            worker.start()
            box.v = 2
            worker.release = write_end
        """,
        conftest="""
        import os
        import threading

        def pytest_runtest_logfinish(nodeid, location):
            # After the last test's teardown and report: no test is running any more.
            for thread in threading.enumerate():
                if hasattr(thread, "release"):
                    os.write(thread.release, b"x")
                    thread.join(10)
        """,
    )
    result = run("--racecheck")
    assert result.verdicts() == {"test_late.py::test_starts": {"PASSED"}}
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.out
    summary = result.summary()
    assert "DATA RACE on Box.v" in summary
    assert "in (no test running) (after the last test)" in summary
