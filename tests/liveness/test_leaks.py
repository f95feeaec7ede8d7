"""The leak checker: each feature both ways (leak reported / clean twin passes)."""

from __future__ import annotations

import queue
import re
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor

import pytest
from liveness_fakes import FakeChan, Threads

from racecheck.errors import LeakError
from racecheck.liveness import leaks
from racecheck.report.findings import LeakFinding

FAST = 0.05  # max_wait when a leak is expected: the thread is parked until teardown


def _parked(threads: Threads, name: str = "parked", **kwargs: object) -> threading.Thread:
    """A thread parked on an Event that teardown sets."""
    release = threading.Event()
    threads.on_teardown(release.set)
    thread = threading.Thread(target=_wait_on, args=(release,), name=name, **kwargs)  # type: ignore[arg-type]
    thread.start()
    return threads.adopt(thread)


def _wait_on(event: threading.Event) -> None:
    event.wait(timeout=10)


# -- basic scope ------------------------------------------------------------------------


def test_leaked_thread_is_reported_with_its_details(threads: Threads) -> None:
    with pytest.raises(LeakError) as caught:
        with leaks.verify_none(max_wait=FAST):
            leaked = _parked(threads, name="leaky-worker", daemon=True)
    finding = caught.value.finding  # type: ignore[attr-defined]
    assert isinstance(finding, LeakFinding)
    (dump,) = finding.threads
    assert dump.thread.name == "leaky-worker"
    assert dump.thread.ident == leaked.ident
    assert dump.thread.daemon is True
    assert dump.thread.target.endswith("test_leaks._wait_on")
    assert dump.thread.created_at[0].function == "_parked"
    assert any(f.function == "_wait_on" for f in dump.stack)
    assert dump.blocked_on is not None and dump.blocked_on.what == "Event.wait"
    assert "leaky-worker" in str(caught.value)


def test_thread_finishing_inside_scope_passes(threads: Threads) -> None:
    with leaks.verify_none(max_wait=2.0):
        t = threads.start(lambda: None)
        t.join(timeout=5)


def test_finished_but_not_joined_thread_is_not_a_leak(threads: Threads) -> None:
    # The thread is still running when the scope starts to check; it finishes as soon
    # as the body releases it, and the retry sees it gone.
    go = threading.Event()
    with leaks.verify_none(max_wait=5.0):
        threads.start(_wait_on, go)
        go.set()


def test_threads_alive_before_the_scope_are_not_checked(threads: Threads) -> None:
    _parked(threads, name="older")
    with leaks.verify_none(max_wait=FAST):
        pass


def test_find_without_baseline_sees_every_thread(threads: Threads) -> None:
    _parked(threads, name="anywhere")
    finding = leaks.find(max_wait=FAST)
    assert finding is not None
    assert "anywhere" in [d.thread.name for d in finding.threads]
    again = leaks.find(leaks.ignore_name("anywhere"), max_wait=FAST)
    assert again is None or "anywhere" not in [d.thread.name for d in again.threads]


def test_body_exception_propagates_with_the_report_as_a_note(threads: Threads) -> None:
    with pytest.raises(ValueError, match="boom") as caught:
        with leaks.verify_none(max_wait=FAST):
            _parked(threads, name="noted")
            raise ValueError("boom")
    assert any("noted" in note for note in caught.value.__notes__)


# -- decorator --------------------------------------------------------------------------


def test_decorator_with_options_reports_and_passes(threads: Threads) -> None:
    @leaks.verify_none(max_wait=FAST)
    def leaky() -> None:
        _parked(threads, name="decorated")

    @leaks.verify_none(max_wait=FAST)
    def clean() -> int:
        threads.start(lambda: None).join(timeout=5)
        return 7

    with pytest.raises(LeakError, match="decorated"):
        leaky()
    assert clean() == 7


def test_bare_decorator(threads: Threads) -> None:
    @leaks.verify_none
    def clean(x: int) -> int:
        return x + 1

    assert clean(1) == 2
    assert clean.__name__ == "clean"

    class Service:
        @leaks.verify_none
        def run(self, x: int) -> int:
            return x * 2

        @leaks.verify_none(max_wait=FAST)
        def leak(self) -> None:
            _parked(threads, name="from-method")

    assert Service().run(2) == 4  # bound like a plain method
    with pytest.raises(LeakError, match="from-method"):
        Service().leak()


def test_decorated_pytest_test_is_collected_and_checked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading
        from racecheck.liveness import leaks

        RELEASE = threading.Event()

        @leaks.verify_none
        def test_clean(tmp_path):
            assert tmp_path.exists()

        @leaks.verify_none(max_wait=0.05)
        def test_leaky():
            threading.Thread(target=RELEASE.wait, args=(10,), daemon=True).start()

        def test_release():
            RELEASE.set()
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:racecheck", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*racecheck.errors.LeakError*", "FAILED *::test_leaky*"])


# -- ignore options ---------------------------------------------------------------------


def _leaks_with(threads: Threads, *options: leaks.LeakOption) -> list[str]:
    try:
        with leaks.verify_none(*options, max_wait=FAST):
            _parked(threads, name="opt-target")
    except LeakError as error:
        return [d.thread.name for d in error.finding.threads]  # type: ignore[attr-defined]
    return []


@pytest.mark.parametrize(
    "option",
    [
        leaks.ignore_name("opt-*"),
        leaks.ignore_name(re.compile(r"^opt-t")),
        leaks.ignore_top_function("Condition.wait"),
        leaks.ignore_any_function("_wait_on"),
        leaks.ignore_any_function("test_leaks._wait_on"),
        leaks.ignore_created_by("_parked"),
    ],
    ids=["name-glob", "name-regex", "top", "any", "any-qualified", "created-by"],
)
def test_ignore_option_ignores_matching_thread(threads: Threads, option: leaks.LeakOption) -> None:
    assert _leaks_with(threads, option) == []


@pytest.mark.parametrize(
    "option",
    [
        leaks.ignore_name("other-*"),
        leaks.ignore_top_function("_wait_on"),  # on the stack, but not at its top
        leaks.ignore_any_function("not_on_stack"),
        leaks.ignore_created_by("_wait_on"),
    ],
    ids=["name", "top", "any", "created-by"],
)
def test_ignore_option_keeps_other_threads(threads: Threads, option: leaks.LeakOption) -> None:
    assert _leaks_with(threads, option) == ["opt-target"]


def test_ignore_current_snapshots_threads_alive_now(threads: Threads) -> None:
    _parked(threads, name="before-snapshot")
    option = leaks.ignore_current()
    _parked(threads, name="after-snapshot")
    finding = leaks.find(option, max_wait=FAST)
    assert finding is not None
    names = [d.thread.name for d in finding.threads]
    assert "after-snapshot" in names and "before-snapshot" not in names


def test_runner_threads_are_never_reported(threads: Threads) -> None:
    release = threading.Event()
    threads.on_teardown(release.set)

    def runner_helper() -> None:
        release.wait(timeout=10)

    runner_helper.__module__ = "_pytest.fake_helper"
    with leaks.verify_none(max_wait=FAST):
        threads.start(runner_helper)


# -- what a thread is blocked on --------------------------------------------------------


def test_blocked_on_racecheck_primitive_names_it_and_its_creation(threads: Threads) -> None:
    chan = FakeChan()  # the creation line below is what the report must point at
    line = sys._getframe().f_lineno - 1
    threads.on_teardown(lambda: chan.send(None))
    entered = threading.Event()

    def receiver() -> None:
        entered.set()
        chan.recv()

    threads.start(receiver, name="receiver")
    assert entered.wait(timeout=5)
    finding = leaks.find(leaks.ignore_name("MainThread"), max_wait=0.2, baseline=None)
    assert finding is not None
    (dump,) = [d for d in finding.threads if d.thread.name == "receiver"]
    assert dump.blocked_on is not None
    assert dump.blocked_on.what == "chan receive"
    assert "FakeChan" in dump.blocked_on.object_repr
    assert dump.blocked_on.created_at[0].lineno == line
    assert dump.blocked_on.seconds is not None and dump.blocked_on.seconds >= 0


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("queue", "queue.get"), ("lock", "Lock.acquire"), ("join", "Thread.join")],
)
def test_blocked_on_stdlib_wait_read_from_frames(
    threads: Threads, kind: str, expected: str
) -> None:
    q: queue.Queue[int] = queue.Queue()
    lock = threading.Lock()
    lock.acquire()
    stop = threading.Event()
    other = _parked(threads, name="joined")
    threads.on_teardown(lambda: q.put(0))
    threads.on_teardown(lock.release)
    threads.on_teardown(stop.set)

    def waiter() -> None:
        if kind == "queue":
            q.get(timeout=10)
        elif kind == "lock":
            lock.acquire(True, 10)
        else:
            other.join(10)

    finding = None
    with pytest.raises(LeakError) as caught:
        with leaks.verify_none(max_wait=FAST):
            threads.start(waiter, name="frames")
    finding = caught.value.finding  # type: ignore[attr-defined]
    (dump,) = finding.threads
    assert dump.blocked_on is not None and dump.blocked_on.what == expected


# -- executors --------------------------------------------------------------------------


def test_executor_not_shut_down_is_one_line_with_its_creation_site() -> None:
    release = threading.Event()
    executor = ThreadPoolExecutor(max_workers=3)
    try:
        with pytest.raises(LeakError) as caught:
            with leaks.verify_none(max_wait=FAST):
                executor = ThreadPoolExecutor(max_workers=3)
                line = sys._getframe().f_lineno - 1
                for _ in range(2):
                    executor.submit(release.wait, 10)
        finding = caught.value.finding  # type: ignore[attr-defined]
        assert finding.threads == ()
        (line_text,) = finding.others
        assert "ThreadPoolExecutor" in line_text and "not shut down" in line_text
        assert f"{__file__}:{line}" in line_text
    finally:
        release.set()
        executor.shutdown(wait=True)


def test_executor_shut_down_inside_scope_passes() -> None:
    with leaks.verify_none(max_wait=2.0):
        with ThreadPoolExecutor(max_workers=2) as executor:
            assert executor.submit(lambda: 3).result(timeout=5) == 3


def test_workers_lazily_started_by_an_outside_executor_belong_to_it() -> None:
    release = threading.Event()
    executor = ThreadPoolExecutor(max_workers=2)
    try:
        with leaks.verify_none(max_wait=FAST):
            executor.submit(release.wait, 10)  # starts its first worker inside the scope
    finally:
        release.set()
        executor.shutdown(wait=True)


# -- timers and lost cancels (through the neighbours' functions) -------------------------


class _FakeTimer:
    def __init__(self, line: int) -> None:
        self.created_at = ((__file__, line, "test"),)


class Ticker(_FakeTimer):
    pass


def test_pending_timers_and_lost_cancels_are_other_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live: list[object] = [_FakeTimer(1)]  # existed before the scope: not reported
    lost: list[object] = ["context created at old.py:1: cancel was never called"]
    timers = types.ModuleType("racecheck.sync.timers")
    timers.live_timers = lambda: list(live)  # type: ignore[attr-defined]
    context = types.ModuleType("racecheck.sync.context")
    context.lost_cancels = lambda: list(lost)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "racecheck.sync.timers", timers)
    monkeypatch.setitem(sys.modules, "racecheck.sync.context", context)

    with leaks.verify_none(max_wait=FAST):
        pass  # nothing new: clean twin

    with pytest.raises(LeakError) as caught:
        with leaks.verify_none(max_wait=FAST):
            live.append(_FakeTimer(42))
            live.append(Ticker(43))
            lost.append("context created at new.py:7: cancel was never called")
    others = caught.value.finding.others  # type: ignore[attr-defined]
    assert others == (
        f"_FakeTimer created at {__file__}:42 (in test) still pending",
        f"Ticker created at {__file__}:43 (in test) still running (never stopped)",
        "context created at new.py:7: cancel was never called",
    )


# -- rendering ---------------------------------------------------------------------------


def test_render_leak_is_a_go_style_dump(threads: Threads) -> None:
    with pytest.raises(LeakError) as caught:
        with leaks.verify_none(max_wait=FAST):
            _parked(threads, name="rendered", daemon=True)
    text = leaks.render_leak(caught.value.finding)  # type: ignore[attr-defined]
    assert text.startswith("racecheck: found unexpected threads")
    assert re.search(r'thread \d+ "rendered" \[Event.wait, [\d.]+ seconds\] \(daemon\):', text) or (
        re.search(r'thread \d+ "rendered" \[Event.wait\] \(daemon\):', text)
    )
    assert "target: " in text and "started at:" in text and "_parked()" in text
