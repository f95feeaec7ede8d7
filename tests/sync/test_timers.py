"""Timers: after, tick, Timer, Ticker, after_func; the scheduler thread; leak/deadlock
records; the happens-before contract (creation/reset -> the send on .c)."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sync_helpers import WAIT, wait_until  # noqa: F401

from racecheck.sync import events, timers
from racecheck.sync.chan import Chan, select
from racecheck.sync.timers import Ticker, Timer, after, after_func, live_timers, tick

LONG = 3600.0  # a deadline no test ever reaches


def recv_within(ch: Chan[Any], seconds: float = WAIT) -> Any:
    """Receive from ``ch``, failing (not hanging) if nothing arrives in time."""
    index, value = select(ch.recv, after(seconds).recv)
    assert index == 0, "nothing received in time"
    return value


def is_listed(record_site_line: int) -> bool:
    return any(r.created_at and r.created_at[0][1] == record_site_line for r in live_timers())


def line_of(fn: Callable[..., Any], offset: int) -> int:
    return fn.__code__.co_firstlineno + offset


# -- after / Timer -----------------------------------------------------------------------


def test_after_receives_once_no_earlier_than_the_deadline() -> None:
    start = time.monotonic()
    ch = after(0.02)
    value = recv_within(ch)
    assert value >= start + 0.02
    assert time.monotonic() >= start + 0.02
    assert ch.cap == 1 and len(ch) == 0
    assert select(ch.recv, default=True) == (-1, None)


def test_timer_stop_before_firing_prevents_the_send() -> None:
    t = Timer(LONG)
    line = line_of(test_timer_stop_before_firing_prevents_the_send, 1)
    assert is_listed(line)
    assert t.stop() is True
    assert t.stop() is False  # already stopped
    assert not is_listed(line)
    assert t.c is not None and select(t.c.recv, default=True) == (-1, None)


def test_timer_stop_after_value_received_returns_false() -> None:
    t = Timer(0)
    assert t.c is not None
    recv_within(t.c)
    assert t.stop() is False


def test_timer_stop_discards_a_fired_but_unreceived_value() -> None:
    """Go 1.23: no stale value is received after Stop returns."""
    t = Timer(0)
    assert t.c is not None
    c = t.c
    wait_until(lambda: len(c) == 1, "the timer to fire")
    assert t.stop() is True  # the value had not been received: the timer counts as active
    assert select(c.recv, default=True) == (-1, None)


def test_timer_reset_reports_whether_it_was_active_and_fires_again() -> None:
    t = Timer(LONG)
    assert t.reset(0) is True
    assert t.c is not None
    recv_within(t.c)
    assert t.reset(0) is False  # expired and received
    recv_within(t.c)
    assert t.reset(LONG) is False
    assert t.stop() is True


def test_timer_reset_discards_a_stale_value() -> None:
    t = Timer(0)
    assert t.c is not None
    c = t.c
    wait_until(lambda: len(c) == 1, "the timer to fire")
    assert t.reset(LONG) is True
    assert select(c.recv, default=True) == (-1, None)
    t.stop()


def test_timers_fire_in_deadline_order() -> None:
    late = after(0.02)
    early = after(0.01)
    # each value is the scheduler's clock when it fired that timer
    assert recv_within(early) <= recv_within(late)


# -- Ticker / tick ------------------------------------------------------------------------


def test_ticker_ticks_repeatedly_and_stops() -> None:
    ticker = Ticker(0.005)
    values = [recv_within(ticker.c) for _ in range(3)]
    assert values == sorted(values) and len(set(values)) == 3
    line = line_of(test_ticker_ticks_repeatedly_and_stops, 1)
    records = [r for r in live_timers() if r.created_at[0][1] == line]
    assert [r.kind for r in records] == ["Ticker"]
    ticker.stop()
    assert not is_listed(line)
    assert select(ticker.c.recv, default=True) == (-1, None)  # stop drains a stale tick


def test_ticker_drops_ticks_for_a_slow_receiver() -> None:
    ticker = Ticker(0.002)
    c = ticker.c
    wait_until(lambda: len(c) == 1, "a first tick")
    first = c.recv()
    assert first is not None
    # while nobody receives, at least five periods pass: the buffer still holds one tick
    wait_until(lambda: time.monotonic() > first + 0.012 and len(c) == 1, "more periods")
    assert len(c) == 1
    stale = c.recv()
    assert stale is not None and stale > first
    fresh = recv_within(c)  # the ticker kept running: the next tick is a new one
    assert fresh > stale
    ticker.stop()


def test_ticker_reset_changes_the_period_and_restarts_a_stopped_ticker() -> None:
    ticker = Ticker(LONG)
    ticker.stop()
    ticker.reset(0.002)
    recv_within(ticker.c)
    ticker.stop()


def test_ticker_rejects_non_positive_intervals() -> None:
    with pytest.raises(ValueError, match="non-positive interval"):
        Ticker(0)
    ticker = Ticker(LONG)
    with pytest.raises(ValueError, match="non-positive interval"):
        ticker.reset(-1)
    ticker.stop()


def test_tick_returns_a_ticking_channel() -> None:
    ch = tick(0.002)
    recv_within(ch)
    recv_within(ch)
    del ch  # nobody can receive any more: the ticker is dropped (Go 1.23)
    gc.collect()
    line = line_of(test_tick_returns_a_ticking_channel, 1)
    assert not is_listed(line)


def test_an_unreferenced_pending_timer_is_not_listed() -> None:
    Timer(LONG)  # dropped at once, channel and all
    gc.collect()
    assert not is_listed(line_of(test_an_unreferenced_pending_timer_is_not_listed, 1))


# -- after_func ---------------------------------------------------------------------------


def test_after_func_runs_on_a_fresh_daemon_thread() -> None:
    seen: dict[str, Any] = {}
    ran = threading.Event()

    def fn() -> None:
        t = threading.current_thread()
        seen.update(daemon=t.daemon, main=t is threading.main_thread(), ident=t.ident)
        ran.set()

    timer = after_func(0.005, fn)
    assert timer.c is None
    assert ran.wait(WAIT)
    assert seen["daemon"] is True and seen["main"] is False
    assert seen["ident"] != timers._debug_state()["ident"]  # not the scheduler thread
    assert timer.stop() is False  # already started


def test_after_func_stopped_before_firing_never_runs() -> None:
    calls: list[int] = []
    ran = threading.Event()
    timer = after_func(0.02, lambda: (calls.append(1), ran.set()))
    if timer.stop():
        recv_within(after(0.04))  # the scheduler fires in deadline order: 0.02 is past
        assert calls == []
    else:  # this thread was descheduled for 20 ms: then it must have run, once
        assert ran.wait(WAIT) and calls == [1]


def test_after_func_reset_postpones() -> None:
    ran = threading.Event()
    timer = after_func(LONG, ran.set)
    assert timer.reset(0) is True
    assert ran.wait(WAIT)


def test_after_func_exception_reaches_threading_excepthook() -> None:
    caught: list[BaseException | None] = []
    done = threading.Event()
    previous = threading.excepthook

    def hook(args: Any) -> None:
        caught.append(args.exc_value)
        done.set()

    def boom() -> None:
        raise KeyError("user error")

    threading.excepthook = hook
    try:
        after_func(0, boom)
        assert done.wait(WAIT)
    finally:
        threading.excepthook = previous
    assert isinstance(caught[0], KeyError)


# -- the scheduler thread and the liveness records -----------------------------------------


def test_scheduler_thread_is_invisible_to_threading() -> None:
    recv_within(after(0))
    ident = timers._debug_state()["ident"]
    assert ident is not None
    assert ident not in {t.ident for t in threading.enumerate()}


def test_pending_timers_counts_live_timers_and_tickers() -> None:
    base = timers.pending_timers()
    t = Timer(LONG)
    k = Ticker(LONG)
    f = after_func(LONG, lambda: None)
    assert timers.pending_timers() == base + 3
    records = live_timers()
    assert {"Timer", "Ticker"} <= {r.kind for r in records}
    assert all(r.deadline > time.monotonic() for r in records if r.deadline > LONG / 2)
    t.stop()
    k.stop()
    f.stop()
    assert timers.pending_timers() == base


def test_live_timer_records_are_stable_and_hold_no_references() -> None:
    t = Timer(LONG)
    line = line_of(test_live_timer_records_are_stable_and_hold_no_references, 1)
    first = [r for r in live_timers() if r.created_at[0][1] == line]
    second = [r for r in live_timers() if r.created_at[0][1] == line]
    assert len(first) == 1 and first[0] is second[0]
    assert first[0].created_at[0][0].endswith("test_timers.py")
    assert not hasattr(first[0], "__dict__")  # plain data only
    t.stop()


def test_stop_reset_loops_do_not_grow_the_heap() -> None:
    t = Timer(LONG)
    for _ in range(2_000):
        t.reset(LONG)
    assert timers._debug_state()["heap"] < 600
    t.stop()


def test_stress_many_timers_each_fire_exactly_once() -> None:
    chans = [after(0.001 * (i % 20)) for i in range(300)]
    got = [recv_within(c) for c in chans]
    assert len(got) == 300
    assert all(select(c.recv, default=True) == (-1, None) for c in chans)


def test_stress_concurrent_stop_and_reset() -> None:
    """Many threads create, reset and stop timers while they fire: every timer either
    delivers once or is stopped, never both, and the scheduler keeps going."""
    errors: list[BaseException] = []

    def churn(seed: int) -> None:
        try:
            for i in range(200):
                t = Timer(0.0005 * ((seed + i) % 3))
                if i % 3 == 0:
                    t.reset(0)
                assert t.c is not None
                if t.stop():
                    assert select(t.c.recv, default=True) == (-1, None)
                else:
                    recv_within(t.c)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(s,)) for s in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(WAIT * 2)
    assert not errors and not any(th.is_alive() for th in threads)
    recv_within(after(0))  # the scheduler is alive


# -- happens-before ---------------------------------------------------------------------------


class FakeHB:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, int, Any]] = []
        self.n = 0

    def publish(self, into: object | None) -> object:
        with self.lock:
            self.n += 1
            token = ("tok", self.n)
            self.calls.append(("publish", threading.get_ident(), token))
        return token

    def consume(self, token: object) -> None:
        with self.lock:
            self.calls.append(("consume", threading.get_ident(), token))

    def audit(self, obj: object, op: str, what: str, depth: int) -> None:
        with self.lock:
            self.calls.append(("audit", threading.get_ident(), (obj, op, what)))

    def of(self, kind: str, ident: int) -> list[Any]:
        return [t for k, i, t in self.calls if k == kind and i == ident]


@pytest.fixture
def hb() -> Any:
    fake = FakeHB()
    previous = events._hb
    events.set_happens_before(fake)
    try:
        yield fake
    finally:
        events.set_happens_before(previous)


def test_timer_creation_orders_before_the_receive_of_its_send(hb: FakeHB) -> None:
    me = threading.get_ident()
    t = Timer(0)
    created = hb.of("publish", me)[-1]
    assert t.c is not None
    c = t.c
    wait_until(lambda: len(c) == 1, "the timer to fire")
    assert c.recv() is not None
    assert created in hb.of("consume", me)
    scheduler = timers._debug_state()["ident"]
    assert not [call for call in hb.calls if call[1] == scheduler]  # never calls the detector


def test_timer_reset_token_is_the_one_carried(hb: FakeHB) -> None:
    me = threading.get_ident()
    t = Timer(LONG)
    t.reset(0)
    reset_token = hb.of("publish", me)[-1]
    assert t.c is not None
    c = t.c
    wait_until(lambda: len(c) == 1, "the timer to fire")
    c.recv()
    assert reset_token in hb.of("consume", me)


def test_after_func_consumes_the_creation_token_before_fn(hb: FakeHB) -> None:
    me = threading.get_ident()
    seen: list[Any] = []
    ran = threading.Event()

    def fn() -> None:
        seen.extend(hb.of("consume", threading.get_ident()))
        ran.set()

    after_func(0, fn)
    created = hb.of("publish", me)[-1]
    assert ran.wait(WAIT)
    assert created in seen
