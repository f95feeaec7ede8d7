"""Deadlock detection: declared when nothing can wake anyone, never while a thread could
still make progress.  Every untimed wait here is a FakeChan wait with a hidden safety
timeout, so a detector bug fails the test instead of hanging it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import Iterator

import pytest
from liveness_fakes import FakeChan, SafetyTimeout, Threads

from racecheck.errors import DeadlockError
from racecheck.liveness.deadlock import HEADER, DeadlockDetector, render_deadlock
from racecheck.report.findings import DeadlockFinding
from racecheck.sync import events


@pytest.fixture
def detector() -> Iterator[DeadlockDetector]:
    found: list[DeadlockFinding] = []
    det = DeadlockDetector(on_deadlock=found.append, mode="raise", grace=0.05, poll=0.01)
    det.start()
    try:
        yield det
    finally:
        det.stop()


def _until_blocked(thread: threading.Thread, timeout: float = 5.0) -> None:
    """Wait (bounded) until ``thread`` is registered blocked in a racecheck primitive."""
    deadline = time.monotonic() + timeout
    while thread.ident not in events.blocked_threads():
        assert time.monotonic() < deadline, "thread never blocked"
        time.sleep(0.001)


def _recv_into(chan: FakeChan, outcome: list[BaseException | object]) -> None:
    try:
        outcome.append(chan.recv())
    except BaseException as error:  # noqa: BLE001 - the test inspects it
        outcome.append(error)


def test_all_blocked_raises_deadlock_error_in_every_blocked_thread(
    detector: DeadlockDetector, threads: Threads
) -> None:
    main_chan, worker_chan = FakeChan(), FakeChan()
    outcome: list[BaseException | object] = []
    threads.start(_recv_into, worker_chan, outcome, name="stuck-worker")
    with pytest.raises(DeadlockError, match="all goroutines are asleep - deadlock!"):
        main_chan.recv()
    threads.threads[-1].join(timeout=5)
    assert len(outcome) == 1 and isinstance(outcome[0], DeadlockError)
    (finding,) = detector.findings
    by_name = {d.thread.name: d for d in finding.threads}
    assert set(by_name) == {"MainThread", "stuck-worker"}
    for dump in finding.threads:
        assert dump.blocked_on is not None and dump.blocked_on.what == "chan receive"
        assert dump.blocked_on.created_at[0].function.startswith("test_all_blocked")
    assert render_deadlock(finding).count("chan receive") >= 2


def test_sleeping_thread_counts_as_able_to_progress(
    detector: DeadlockDetector, threads: Threads
) -> None:
    chan = FakeChan()
    main = threading.current_thread()

    def sleeper_then_send() -> None:
        _until_blocked(main)
        time.sleep(0.3)  # many grace periods: a sleeping thread must prevent the report
        chan.send("late")

    threads.start(sleeper_then_send)
    assert chan.recv() == "late"
    assert detector.findings == []


def test_thread_in_timed_wait_counts_as_able_to_progress(
    detector: DeadlockDetector, threads: Threads
) -> None:
    chan, side = FakeChan(), FakeChan()
    main = threading.current_thread()

    def timed_then_send() -> None:
        _until_blocked(main)
        with pytest.raises(TimeoutError):
            side.recv(timeout=0.3)  # registered with a timeout: can always progress
        chan.send("after timeout")

    threads.start(timed_then_send)
    assert chan.recv() == "after timeout"
    assert detector.findings == []


def test_pending_timer_prevents_the_report(
    detector: DeadlockDetector, threads: Threads, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending = [object()]
    timers = types.ModuleType("racecheck.sync.timers")
    timers.pending_timers = lambda: list(pending)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "racecheck.sync.timers", timers)
    chan = FakeChan()
    main = threading.current_thread()

    def fire_timer_later() -> None:
        _until_blocked(main)
        time.sleep(0.3)  # the "timer" is pending all this time: no report
        chan.send("tick")

    threads.start(fire_timer_later)
    assert chan.recv() == "tick"
    assert detector.findings == []
    pending.clear()  # clean twin: with no timer the same wait is a deadlock
    with pytest.raises(DeadlockError):
        chan.recv()


def test_untimed_join_of_a_blocked_thread_is_understood(
    detector: DeadlockDetector, threads: Threads
) -> None:
    chan = FakeChan()
    outcome: list[BaseException | object] = []
    worker = threads.start(_recv_into, chan, outcome, name="joined-worker")
    _until_blocked(worker)
    with pytest.raises(DeadlockError):
        worker.join()  # the worker gets DeadlockError, then the join raises it here too
    assert len(outcome) == 1 and isinstance(outcome[0], DeadlockError)
    (finding,) = detector.findings
    main_dump = next(d for d in finding.threads if d.thread.name == "MainThread")
    assert main_dump.blocked_on is not None and main_dump.blocked_on.what == "Thread.join"


def test_timed_join_is_not_understood(detector: DeadlockDetector, threads: Threads) -> None:
    chan = FakeChan()
    outcome: list[BaseException | object] = []
    worker = threads.start(_recv_into, chan, outcome)
    _until_blocked(worker)
    worker.join(timeout=0.3)  # a join with a timeout can progress: no report
    assert worker.is_alive() and detector.findings == []
    chan.send("done")
    worker.join(timeout=5)
    assert outcome == ["done"]


def test_transient_all_blocked_state_is_not_declared(threads: Threads) -> None:
    # A wake-up in flight: both threads look blocked for an instant, then one moves on.
    det = DeadlockDetector(mode="raise", grace=1.0, poll=0.005)
    det.start()
    try:
        chan = FakeChan()
        outcome: list[BaseException | object] = []
        worker = threads.start(_recv_into, chan, outcome)
        _until_blocked(worker)
        for _ in range(20):
            with events.blocking(object(), "select"):
                pass
        chan.send("ok")
        worker.join(timeout=5)
        assert outcome == ["ok"] and det.findings == []
    finally:
        det.stop()


def test_no_detector_means_no_report(threads: Threads) -> None:
    # Clean twin of the first test: without a detector the wait runs into the fake's
    # safety timeout (shortened here) instead of a DeadlockError.
    import liveness_fakes

    chan = FakeChan()
    old = liveness_fakes.SAFETY
    liveness_fakes.SAFETY = 0.2
    try:
        with pytest.raises(SafetyTimeout):
            chan.recv()
    finally:
        liveness_fakes.SAFETY = old


EXIT_SCRIPT = textwrap.dedent(
    """
    import threading
    from racecheck._rawsync import RawCondition
    from racecheck.liveness.deadlock import install_exit_check
    from racecheck.sync import events

    cond = RawCondition()

    def forever():
        with cond:
            with events.blocking(cond, "chan receive"):
                cond.wait()

    threading.Thread(target=forever, name="non-daemon").start()
    install_exit_check(grace=0.1)
    print("main done", flush=True)
    """
)


def test_exit_hang_becomes_deadlock_report_with_status_2(tmp_path: object) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == "main done\n"
    assert HEADER in result.stderr
    assert "non-daemon" in result.stderr and "chan receive" in result.stderr


def test_exit_without_hang_exits_normally() -> None:
    # The same program with a timed wait (declared as such): it can progress, so exits 0.
    script = EXIT_SCRIPT.replace("cond.wait()", "cond.wait(0.5)").replace(
        '"chan receive")', '"chan receive", timeout=0.5)'
    )
    assert script.count("0.5") == 2
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode == 0, result.stderr
    assert HEADER not in result.stderr
