"""The rich renderer on a terminal, plain Go text when piped, never stdout."""

from __future__ import annotations

import io
import re

import report_samples as samples

from racecheck.config import Options
from racecheck.report.console import Reporter, render_rich, thread_colour, wants_colour
from racecheck.report.text import format_race

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rich_output_highlights_both_source_lines() -> None:
    out = io.StringIO()
    render_rich(samples.race(), out, "/src/proj/")
    text = out.getvalue()
    assert "\x1b[" in text
    # Syntax highlighting splits the source line into styled tokens.
    assert "self.value += 1" not in text
    plain = ANSI.sub("", text)
    assert plain.count("    self.value += 1") == 2
    assert "WARNING: DATA RACE" in plain
    assert "Previous read at Counter.value" in plain


def test_rich_output_has_the_same_words_as_plain_text() -> None:
    out = io.StringIO()
    render_rich(samples.race(), out, "/src/proj/")
    assert ANSI.sub("", out.getvalue()) == format_race(samples.race(), "/src/proj/")


def test_thread_colour_is_consistent_and_used() -> None:
    t2 = samples.T2
    assert thread_colour(t2) == thread_colour(samples.T2)
    out = io.StringIO()
    render_rich(samples.race(), out)
    # the thread's name is printed in a style of its own, not the header's plain bold
    assert re.search(r"\x1b\[[0-9;]+mThread-2 \(worker\)\x1b\[0m", out.getvalue())


def test_reporter_plain_when_piped() -> None:
    stream = io.StringIO()
    Reporter(Options(strip_path_prefix="/src/proj/"), stream=stream).race(samples.race())
    assert stream.getvalue() == format_race(samples.race(), "/src/proj/")


def test_reporter_rich_on_tty_and_plain_with_color_no() -> None:
    tty = _Tty()
    Reporter(Options(), stream=tty).race(samples.race())
    assert "\x1b[" in tty.getvalue()
    tty2 = _Tty()
    Reporter(Options(color="no"), stream=tty2).race(samples.race())
    assert "\x1b[" not in tty2.getvalue()


def test_wants_colour_respects_no_color(monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_colour("auto", _Tty())
    assert wants_colour("yes", io.StringIO())


def test_reporter_defaults_to_stderr_never_stdout(capsys) -> None:
    reporter = Reporter(Options())
    reporter.race(samples.race())
    reporter.summary([samples.race()])
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "WARNING: DATA RACE" in captured.err
    assert captured.err.endswith("racecheck: Found 1 data race(s)\n")


def test_reporter_log_path_appends(tmp_path, capsys) -> None:
    log = tmp_path / "race.log"
    reporter = Reporter(Options(log_path=str(log)))
    reporter.race(samples.race())
    reporter.finding(samples.leak())
    reporter.summary([samples.race()])
    assert capsys.readouterr() == ("", "")
    content = log.read_text()
    assert content.count("WARNING: DATA RACE") == 1
    assert "WARNING: THREAD LEAK" in content
    assert content.endswith("racecheck: Found 1 data race(s)\n")


def test_no_summary_when_nothing_found(capsys) -> None:
    Reporter(Options()).summary([])
    assert capsys.readouterr().err == ""


def test_write_reports_json_and_sarif(tmp_path) -> None:
    import json

    from racecheck.report.json import load_report

    opts = Options(
        reports=[("json", str(tmp_path / "r.json")), ("sarif", str(tmp_path / "s/r.sarif"))]
    )
    Reporter(opts).write_reports(samples.all_findings())
    assert load_report(tmp_path / "r.json") == samples.all_findings()
    sarif = json.loads((tmp_path / "s/r.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    assert len(sarif["runs"][0]["results"]) == 4
