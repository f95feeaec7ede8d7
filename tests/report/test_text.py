"""The plain-text renderer keeps Go's race-report layout exactly."""

from __future__ import annotations

import report_samples as samples

from racecheck.report.findings import Access, Frame, RaceFinding, ThreadInfo
from racecheck.report.text import format_finding, format_race, summary_lines

EXPECTED_RACE = """\
==================
WARNING: DATA RACE
Write at Counter.value (app.Counter object at 0x7f01) by thread Thread-2 (worker):
  File "app.py", line 12, in bump
    self.value += 1
  File "app.py", line 20, in worker
    bump(c)

Previous read at Counter.value (app.Counter object at 0x7f01) by thread Thread-1 (worker):
  File "app.py", line 12, in bump
    self.value += 1
  File "app.py", line 20, in worker
    bump(c)

Thread Thread-2 (running) created at:
  File "app.py", line 25, in main
    t = threading.Thread(target=worker, args=(c,))
Thread Thread-1 (finished) created at:
  File "app.py", line 25, in main
    t = threading.Thread(target=worker, args=(c,))
==================
"""


def test_race_layout_is_go_layout_exactly() -> None:
    assert format_race(samples.race(), strip_path_prefix="/src/proj/") == EXPECTED_RACE


def test_without_strip_prefix_full_paths_are_kept() -> None:
    text = format_race(samples.race())
    assert 'File "/src/proj/app.py", line 12, in bump' in text


def test_source_line_filled_from_linecache_when_missing(tmp_path) -> None:
    src = tmp_path / "mod.py"
    src.write_text("x = 1\ncounter['hits'] += 1   \n")
    main = ThreadInfo(name="MainThread")
    frame = Frame(str(src), 2, "<module>")  # no line recorded
    finding = RaceFinding(
        current=Access("mutate", "dict", "dict object at 0x1", main, (frame,)),
        previous=Access("iterate", "dict", "dict object at 0x1", main, (frame,)),
    )
    text = format_race(finding, strip_path_prefix=str(tmp_path) + "/")
    assert "Mutation at dict (dict object at 0x1) by thread MainThread:" in text
    assert "Previous iteration at dict (dict object at 0x1) by thread MainThread:" in text
    assert "  File \"mod.py\", line 2, in <module>\n    counter['hits'] += 1\n" in text
    assert "created at" not in text  # the main thread has no creation stack


def test_thread_names_with_a_plain_name_get_their_target() -> None:
    thread = ThreadInfo(name="poller", target="app.poll", created_at=(Frame("a.py", 1, "m", "x"),))
    finding = RaceFinding(
        current=Access("write", "x", "", thread, (Frame("a.py", 3, "poll", "g = 1"),)),
        previous=Access("read", "x", "", ThreadInfo("MainThread"), ()),
    )
    text = format_race(finding)
    assert "Write at x by thread poller (poll):" in text
    assert "Previous read at x by thread MainThread:\n  <no stack recorded>\n" in text
    assert "Thread poller (running) created at:" in text


def test_leak_dump_goroutine_style() -> None:
    text = format_finding(samples.leak(), "/src/proj/")
    assert text.startswith("==================\nWARNING: THREAD LEAK\n")
    assert 'thread 7 "worker (consume)" [chan receive, 2 minutes]:\n' in text
    assert '  File "app.py", line 8, in consume\n    item = ch.recv()\n' in text
    assert "waiting on racecheck.sync.chan.Chan object at 0x7f02 created at:\n" in text
    assert 'created at (target app.consume, daemon):\n  File "app.py", line 30' in text
    assert "ThreadPoolExecutor created at /src/proj/app.py:40 was not shut down" in text


def test_deadlock_uses_gos_words() -> None:
    text = format_finding(samples.deadlock(), "/src/proj/")
    assert text.startswith("fatal error: all goroutines are asleep - deadlock!\n\n")
    assert 'thread 1 "MainThread" [chan receive, 1.5 seconds]:\n' in text


def test_inversion_layout() -> None:
    text = format_finding(samples.inversion(), "/src/proj/")
    lines = text.splitlines()
    assert lines[:3] == [
        "==================",
        "WARNING: POTENTIAL DEADLOCK (lock-order inversion)",
        "Cycle in lock order graph: lock_a => lock_b => lock_a",
    ]
    assert "lock_b acquired while holding lock_a by thread Thread-1 (worker):" in lines
    assert "lock_a previously acquired by the same thread here:" in lines
    assert lines[-1] == "=================="


def test_summary_line_go_wording() -> None:
    assert summary_lines([samples.race(), samples.race()]) == ["racecheck: Found 2 data race(s)"]
    assert summary_lines([]) == []
    assert "racecheck: Found 1 deadlock(s)" in summary_lines(samples.all_findings())
