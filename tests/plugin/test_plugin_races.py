"""``pytest --racecheck``: which tests fail for races, and what they print."""

from __future__ import annotations

import textwrap

import pytest

from racecheck.pytest_plugin import RACE_HEADLINE


def test_racy_test_fails_with_the_report_and_its_synchronised_twin_passes(suite, run):
    suite.makepyfile(
        test_counter="""
        import app

        def test_racy():
            assert app.racy() == 2

        def test_synchronised():
            assert app.synchronised() == 2
        """
    )
    result = run("--racecheck")
    assert result.verdict("::test_racy") == {"FAILED"}
    assert result.verdict("::test_synchronised") == {"PASSED"}
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = result.section("test_racy")
    assert RACE_HEADLINE in report
    assert "WARNING: DATA RACE" in report
    assert "Counter.value" in report
    # Both accesses, with the test's own frame, and no pytest/pluggy frames.
    assert 'app.py", line 17, in racy' in report
    assert 'app.py", line 10, in bump' in report
    assert 'test_counter.py", line 4, in test_racy' in report
    assert "pluggy" not in report and "_pytest" not in report
    summary = result.summary()
    assert "DATA RACE on Counter.value" in summary
    assert "in test_counter.py::test_racy (call)" in summary
    assert "racecheck: Found 1 data race(s) in 1 test(s)" in summary


def test_without_the_flag_the_plugin_is_inactive(suite, run):
    suite.makepyfile(
        test_inactive="""
        import sys
        import app

        def test_racy_passes():
            assert app.racy() == 2

        def test_nothing_installed(request):
            assert request.config.pluginmanager.get_plugin("racecheck-session") is None
            assert not any("racecheck" in type(f).__module__ for f in sys.meta_path)
            for name in ("racecheck.runtime", "racecheck.instrument.importhook",
                         "racecheck.engine.detector", "racecheck.instrument.stdlib"):
                assert name not in sys.modules, name
            assert "__rc__" not in vars(app)
        """
    )
    result = run()
    assert result.verdicts() == {
        "test_inactive.py::test_racy_passes": {"PASSED"},
        "test_inactive.py::test_nothing_installed": {"PASSED"},
    }
    assert "racecheck" not in result.out.replace("racecheck-0", "")  # no summary section


def test_ini_option_enables_detection(suite, run):
    suite.makepyprojecttoml("[tool.pytest.ini_options]\nracecheck = true\n")
    suite.makepyfile(
        test_ini="""
        import app

        def test_racy():
            assert app.racy() == 2
        """
    )
    result = run()
    assert result.verdict("::test_racy") == {"FAILED"}
    assert RACE_HEADLINE in result.section("test_racy")


def test_a_recurring_race_fails_every_test_and_is_printed_once(suite, run):
    suite.makepyfile(
        test_twice="""
        import app

        def test_first():
            app.racy()

        def test_second():
            app.racy()

        def test_third():
            app.racy()
        """
    )
    result = run("--racecheck")
    assert result.verdicts() == {
        "test_twice.py::test_first": {"FAILED"},
        "test_twice.py::test_second": {"FAILED"},
        "test_twice.py::test_third": {"FAILED"},
    }
    assert "WARNING: DATA RACE" in result.section("test_first")
    for later in ("test_second", "test_third"):
        text = result.section(later)
        assert RACE_HEADLINE in text
        assert "same race as first reported in test_twice.py::test_first" in text
        assert "WARNING: DATA RACE" not in text
    summary = result.summary()
    assert summary.count("DATA RACE on Counter.value") == 1
    assert "racecheck: Found 1 data race(s) in 3 test(s)" in summary


def test_race_in_a_conftest_fixture_fails_the_test_using_it(suite, run):
    suite.makeconftest(
        """
        import threading
        import pytest

        class Box:
            def __init__(self):
                self.v = 0

        @pytest.fixture
        def racy_box():
            box = Box()
            def write():
                box.v = 1
            worker = threading.Thread(target=write)
            worker.start()
            box.v = 2
            worker.join()
            yield box

        @pytest.fixture
        def safe_box():
            box = Box()
            def write():
                box.v = 1
            worker = threading.Thread(target=write)
            worker.start()
            worker.join()
            box.v = 2
            yield box
        """
    )
    suite.makepyfile(
        test_fixtures="""
        def test_uses_racy(racy_box):
            pass

        def test_uses_safe(safe_box):
            pass
        """
    )
    result = run("--racecheck")
    assert result.verdict("::test_uses_racy") == {"FAILED"}  # a failure, not a setup error
    assert result.verdict("::test_uses_safe") == {"PASSED"}
    report = result.section("test_uses_racy")
    assert "Box.v" in report and "in racy_box\n    box.v = 2" in report
    assert "in test_fixtures.py::test_uses_racy (call)" in result.summary()


def test_race_in_fixture_teardown_fails_the_test_at_teardown(suite, run):
    suite.makepyfile(
        test_teardown="""
        import threading
        import pytest

        class Box:
            v = 0

        @pytest.fixture
        def box():
            box = Box()
            yield box
            worker = threading.Thread(target=lambda: setattr(box, "v", 1))
            worker.start()
            box.v = 2
            worker.join()

        def test_with_box(box):
            pass
        """
    )
    result = run("--racecheck")
    assert result.verdict("::test_with_box") == {"PASSED", "ERROR"}
    assert RACE_HEADLINE in result.section("test_with_box")
    assert "(teardown)" in result.summary()


def test_race_detected_in_a_background_thread_after_its_test_fails_the_running_test(suite, run):
    # The worker's racing write waits on a pipe: invisible to the detector, so nothing
    # orders it after the main thread's write.  test_starts returns first; the write
    # (and so the detection) happens while test_detects runs, which waits for it.
    suite.makepyfile(
        test_background="""
        import os
        import threading

        class Box:
            v = 0

        STATE = {}

        def test_starts():
            box = Box()
            read_end, write_end = os.pipe()

            def late_writer():
                os.read(read_end, 1)
                box.v = 1

            worker = threading.Thread(target=late_writer, daemon=True)
            worker.start()
            box.v = 2
            STATE.update(worker=worker, write_end=write_end)

        def test_detects():
            os.write(STATE["write_end"], b"x")
            STATE["worker"].join(10)
            assert not STATE["worker"].is_alive()

        def test_after():
            pass
        """
    )
    result = run("--racecheck")
    assert result.verdicts() == {
        "test_background.py::test_starts": {"PASSED"},
        "test_background.py::test_detects": {"FAILED"},
        "test_background.py::test_after": {"PASSED"},
    }
    report = result.section("test_detects")
    assert "by thread Thread-1 (late_writer)" in report
    assert "in test_background.py::test_detects (call)" in result.summary()


def test_assertion_rewriting_and_instrumentation_both_apply_to_test_modules(
    suite, run, monkeypatch
):
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)  # exercise the cache
    suite.makepyfile(
        test_both="""
        import threading

        class Box:
            v = 0

        def test_instrumented():
            assert "__rc__" in globals()  # racecheck's rewrite ran on this module

        def test_race_in_the_test_module_itself():
            box = Box()
            worker = threading.Thread(target=lambda: setattr(box, "v", 1))
            worker.start()
            assert box.v in (0, 1)  # this read races with the worker's write
            worker.join()

        def test_rich_assertion_message():
            assert [1, 2] == [1, 3]
        """
    )
    for attempt in ("first run: rewrites", "second run: from the cache"):
        result = run("--racecheck")
        assert result.verdict("::test_instrumented") == {"PASSED"}, attempt
        assert result.verdict("::test_race_in_the_test_module_itself") == {"FAILED"}, attempt
        assert "Box.v" in result.section("test_race_in_the_test_module_itself")
        text = result.section("test_rich_assertion_message")
        assert "At index 1 diff: 2 != 3" in text, attempt
        assert RACE_HEADLINE not in text
    cached = list((suite.path / "__pycache__").glob("test_both.*racecheck-*.pytest-*.pyc"))
    assert len(cached) == 1
    # A plain run afterwards never loads code rewritten for racecheck.
    plain = run()
    assert plain.verdict("::test_instrumented") == {"FAILED"}
    assert plain.verdict("::test_race_in_the_test_module_itself") == {"PASSED"}
    assert "At index 1 diff: 2 != 3" in plain.section("test_rich_assertion_message")


def test_unittest_testcase_races_fail_too(suite, run):
    suite.makepyfile(
        test_unit="""
        import unittest
        import app

        class TestCounter(unittest.TestCase):
            def test_racy(self):
                app.racy()

            def test_synchronised(self):
                self.assertEqual(app.synchronised(), 2)
        """
    )
    result = run("--racecheck")
    assert result.verdict("::TestCounter::test_racy") == {"FAILED"}
    assert result.verdict("::TestCounter::test_synchronised") == {"PASSED"}
    assert "unittest/case.py" not in result.section("TestCounter.test_racy")


def test_marker_turns_detection_off_for_one_test(suite, run):
    suite.makepyfile(
        test_marker="""
        import pytest
        import app

        @pytest.mark.racecheck(detect=False)
        def test_allowed_to_race():
            app.racy()

        def test_not_allowed():
            app.racy()
        """
    )
    result = run("--racecheck", "--strict-markers")
    assert result.verdict("::test_allowed_to_race") == {"PASSED"}
    assert result.verdict("::test_not_allowed") == {"FAILED"}


def test_expect_race_fixture(suite, run):
    suite.makepyfile(
        test_expect=textwrap.dedent(
            """
            import app

            def test_enabled(racecheck):
                assert racecheck.enabled

            def test_expected(racecheck):
                with racecheck.expect_race():
                    app.racy()

            def test_expected_but_absent(racecheck):
                with racecheck.expect_race():
                    app.synchronised()

            def test_race_outside_the_block_still_fails(racecheck):
                with racecheck.expect_race():
                    app.racy()
                app.racy()
            """
        )
    )
    result = run("--racecheck")
    assert result.verdict("::test_expected") == {"PASSED"}
    assert result.verdict("::test_enabled") == {"PASSED"}
    assert result.verdict("::test_expected_but_absent") == {"FAILED"}
    assert "no data race was detected" in result.section("test_expected_but_absent")
    assert result.verdict("::test_race_outside_the_block_still_fails") == {"FAILED"}
    assert "racecheck: 2 expected race(s) inside expect_race()" in result.summary()
    # Without detection the fixture skips instead of failing.
    plain = run()
    assert plain.result.parseoutcomes() == {"failed": 1, "skipped": 3}
    assert "needs race detection (pytest --racecheck)" in plain.out
