"""The liveness checkers against the real racecheck primitives (Chan, Mutex, WaitGroup,
timers, contexts), each both ways."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from liveness_fakes import Threads

from racecheck import Chan, Mutex, WaitGroup
from racecheck import select as racecheck_select
from racecheck.errors import DeadlockError, LeakError
from racecheck.liveness import leaks
from racecheck.liveness.deadlock import HEADER, DeadlockDetector
from racecheck.liveness.lockorder import LockOrderChecker
from racecheck.sync import context, events, timers


def _until_blocked(thread: threading.Thread, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while thread.ident not in events.blocked_threads():
        assert time.monotonic() < deadline, "thread never blocked"
        time.sleep(0.001)


# -- leaks ------------------------------------------------------------------------------


def test_thread_blocked_on_chan_is_reported_with_the_chan(threads: Threads) -> None:
    ch: Chan[int] = Chan()
    line = sys._getframe().f_lineno - 1
    threads.on_teardown(lambda: ch.close())
    with pytest.raises(LeakError) as caught:
        with leaks.verify_none(max_wait=0.05):
            worker = threads.start(ch.recv, name="chan-reader")
            _until_blocked(worker)
    (dump,) = caught.value.finding.threads  # type: ignore[attr-defined]
    assert dump.blocked_on is not None and dump.blocked_on.what == "chan receive"
    assert "Chan" in dump.blocked_on.object_repr
    assert dump.blocked_on.created_at[0].lineno == line


def test_chan_handoff_inside_scope_is_clean(threads: Threads) -> None:
    with leaks.verify_none(max_wait=2.0):
        ch: Chan[int] = Chan()
        threads.start(ch.send, 5)
        assert ch.recv() == 5


def test_pending_timer_and_running_ticker_are_leaks() -> None:
    timer = ticker = None
    try:
        with pytest.raises(LeakError) as caught:
            with leaks.verify_none(max_wait=0.05):
                timer = timers.Timer(60)
                ticker = timers.Ticker(60)
        others = caught.value.finding.others  # type: ignore[attr-defined]
        assert len(others) == 2
        assert any(o.startswith("Timer created at") and "still pending" in o for o in others)
        assert any(o.startswith("Ticker created at") and "still running" in o for o in others)
        assert all(__file__ in o for o in others)
    finally:
        if timer is not None:
            timer.stop()
        if ticker is not None:
            ticker.stop()


def test_stopped_timer_and_ticker_are_clean() -> None:
    with leaks.verify_none(max_wait=0.05):
        timers.Timer(60).stop()
        ticker = timers.Ticker(60)
        ticker.stop()


def test_lost_cancel_is_a_leak_and_a_called_cancel_is_not() -> None:
    with leaks.verify_none(max_wait=0.05):
        ctx, cancel = context.with_cancel(context.background())
        cancel()
        del ctx, cancel

    def lose() -> None:
        context.with_cancel(context.background())  # cancel dropped: Go's lostcancel

    with pytest.raises(LeakError) as caught:
        with leaks.verify_none(max_wait=0.05):
            lose()
            gc.collect()
    (line,) = caught.value.finding.others  # type: ignore[attr-defined]
    assert "cancel was never called" in line and "lose" in line


# -- deadlocks --------------------------------------------------------------------------


@pytest.fixture
def detector() -> Iterator[DeadlockDetector]:
    det = DeadlockDetector(mode="raise", grace=0.05, poll=0.01).start()
    try:
        yield det
    finally:
        det.stop()


def test_mutex_deadlock_raises_in_both_threads(
    detector: DeadlockDetector, threads: Threads
) -> None:
    a, b = Mutex(), Mutex()
    a.lock()
    b_taken = threading.Event()
    outcome: list[BaseException] = []

    def other() -> None:
        b.lock()
        b_taken.set()
        try:
            a.lock()
        except DeadlockError as error:
            outcome.append(error)
        finally:
            b.unlock()

    threads.start(other)
    assert b_taken.wait(timeout=5)
    with pytest.raises(DeadlockError):
        b.lock()  # classic AB/BA: both asleep
    a.unlock()
    threads.threads[-1].join(timeout=5)
    assert len(outcome) == 1
    (finding,) = detector.findings
    assert {d.blocked_on.what for d in finding.threads if d.blocked_on} == {"Mutex.lock"}


def test_chan_and_select_deadlock_raises_in_every_blocked_thread(
    detector: DeadlockDetector, threads: Threads
) -> None:
    """A receiver parked on a Chan and a select both get DeadlockError (the channel's
    wake-up lets the pending exception fire), and the channels stay usable."""
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    outcome: list[BaseException] = []

    def selector() -> None:
        try:
            racecheck_select(a.recv, b.recv)
        except DeadlockError as error:
            outcome.append(error)

    threads.start(selector)
    _until_blocked(threads.threads[-1])
    with pytest.raises(DeadlockError, match="all goroutines are asleep"):
        Chan[int]().recv()
    threads.threads[-1].join(timeout=5)
    assert len(outcome) == 1
    (finding,) = detector.findings
    assert {d.blocked_on.what for d in finding.threads if d.blocked_on} == {
        "chan receive",
        "select",
    }
    # the withdrawn select left nothing queued: a later hand-off works normally
    c: Chan[int] = Chan(1)
    c.send(7)
    assert c.recv() == 7 and len(a._recvq) == 0 and len(b._recvq) == 0


def test_waitgroup_forgotten_done_is_a_deadlock(detector: DeadlockDetector) -> None:
    wg = WaitGroup()
    wg.add(1)
    with pytest.raises(DeadlockError, match="all goroutines are asleep"):
        wg.wait()


def test_waitgroup_done_by_a_sleeping_thread_is_not(
    detector: DeadlockDetector, threads: Threads
) -> None:
    wg = WaitGroup()
    wg.add(1)
    main = threading.current_thread()

    def late_done() -> None:
        _until_blocked(main)
        time.sleep(0.3)  # a sleeping thread can progress
        wg.done()

    threads.start(late_done)
    wg.wait()
    assert detector.findings == []


EXIT_SCRIPT = textwrap.dedent(
    """
    import threading
    from racecheck import Chan
    from racecheck.liveness.deadlock import install_exit_check

    ch = Chan()
    threading.Thread(target=ch.recv, name="forgotten-reader").start()
    install_exit_check(grace=0.1)
    print("main done", flush=True)
    """
)


@pytest.mark.parametrize("hang", [True, False], ids=["hang", "clean"])
def test_exit_hang_on_a_chan(hang: bool) -> None:
    script = EXIT_SCRIPT if hang else EXIT_SCRIPT + "ch.send(1)\n"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=env
    )
    assert result.stdout == "main done\n"
    if hang:
        assert result.returncode == 2
        assert HEADER in result.stderr and "forgotten-reader" in result.stderr
    else:
        assert result.returncode == 0, result.stderr


# -- lock order -------------------------------------------------------------------------


def test_mutex_inversion_is_reported_and_consistent_order_is_not(threads: Threads) -> None:
    checker = LockOrderChecker().start()
    try:
        a, b, c = Mutex(), Mutex(), Mutex()

        def nested(x: Mutex, y: Mutex) -> None:
            with x:
                with y:
                    pass

        for name, (x, y) in {"T1": (a, b), "T2": (a, b), "T3": (b, c)}.items():
            threads.start(nested, x, y, name=name).join(timeout=5)
        assert checker.findings == []
        threads.start(nested, b, a, name="T4").join(timeout=5)
        (finding,) = checker.findings
        names = [e.thread.name for e in finding.cycle]
        assert names[0] == "T4" and names[1] in ("T1", "T2")
        assert all("Mutex" in e.first for e in finding.cycle)
    finally:
        checker.stop()
