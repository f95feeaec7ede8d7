"""Lock-order inversions: reported the first time a cycle appears; never for consistent
order, a gate lock, a single thread, try_lock or reentrant acquisition.  The steps run
one after the other (each thread is joined before the next starts), so no test can
actually deadlock."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator

import pytest
from liveness_fakes import FakeLock, FakeRLock, run_in_thread

from racecheck.liveness.lockorder import LockOrderChecker
from racecheck.report.findings import InversionFinding
from racecheck.sync import events


@pytest.fixture
def checker() -> Iterator[LockOrderChecker]:
    reported: list[InversionFinding] = []
    lo = LockOrderChecker(on_inversion=reported.append).start()
    lo.reported = reported  # type: ignore[attr-defined]
    try:
        yield lo
    finally:
        lo.stop()


def nested(outer: FakeLock, inner: FakeLock) -> None:
    with outer:
        with inner:
            pass


def test_inversion_is_reported_once_with_threads_and_stacks(checker: LockOrderChecker) -> None:
    a, b = FakeLock(), FakeLock()
    run_in_thread(lambda: nested(a, b), "T1")
    assert checker.findings == []
    run_in_thread(lambda: nested(b, a), "T2")
    (finding,) = checker.findings
    assert checker.reported == [finding]  # type: ignore[attr-defined]
    first, second = finding.cycle
    assert (first.thread.name, second.thread.name) == ("T2", "T1")
    assert first.first == second.second and first.second == second.first
    assert "FakeLock" in first.first
    for edge in finding.cycle:
        assert edge.first_acquired_at[0].function == "nested"
        assert edge.second_acquired_at[0].function == "nested"
        assert edge.second_acquired_at[0].line == "with inner:"
        assert edge.first_acquired_at[0].line == "with outer:"
    run_in_thread(lambda: nested(b, a), "T3")
    run_in_thread(lambda: nested(a, b), "T4")
    assert len(checker.findings) == 1  # the same cycle is not reported again


def test_consistent_order_is_not_reported(checker: LockOrderChecker) -> None:
    a, b, c = FakeLock(), FakeLock(), FakeLock()
    for name in ("T1", "T2", "T3"):
        run_in_thread(lambda: nested(a, b), name)
        run_in_thread(lambda: nested(b, c), name + "'")
        run_in_thread(lambda: nested(a, c), name + "''")
    assert checker.findings == []


def test_single_thread_cycle_is_not_reported(checker: LockOrderChecker) -> None:
    a, b = FakeLock(), FakeLock()
    nested(a, b)
    nested(b, a)
    assert checker.findings == []
    run_in_thread(lambda: nested(b, a), "other")  # twin: a second thread makes it real
    assert len(checker.findings) == 1


def test_gate_lock_prevents_the_report(checker: LockOrderChecker) -> None:
    gate, a, b = FakeLock(), FakeLock(), FakeLock()

    def gated(x: FakeLock, y: FakeLock) -> None:
        with gate:
            nested(x, y)

    run_in_thread(lambda: gated(a, b), "T1")
    run_in_thread(lambda: gated(b, a), "T2")
    assert checker.findings == []
    run_in_thread(lambda: nested(b, a), "T3")  # twin: the same order without the gate
    assert len(checker.findings) == 1


def test_lock_taken_after_the_first_is_no_gate(checker: LockOrderChecker) -> None:
    g, a, b = FakeLock(), FakeLock(), FakeLock()

    def late_gate(x: FakeLock, y: FakeLock) -> None:
        with x, g, y:
            pass

    run_in_thread(lambda: late_gate(a, b), "T1")
    run_in_thread(lambda: late_gate(b, a), "T2")
    assert len(checker.findings) == 1


def test_try_lock_adds_no_edge(checker: LockOrderChecker) -> None:
    a, b = FakeLock(), FakeLock()

    def try_inner() -> None:
        with a:
            assert b.acquire(blocking=False)
            b.release()

    run_in_thread(try_inner, "T1")
    run_in_thread(lambda: nested(b, a), "T2")
    assert checker.findings == []


def test_lock_held_after_try_lock_still_orders_later_locks(checker: LockOrderChecker) -> None:
    a, b = FakeLock(), FakeLock()

    def try_outer() -> None:
        assert a.acquire(blocking=False)
        with b:
            pass
        a.release()

    run_in_thread(try_outer, "T1")
    run_in_thread(lambda: nested(b, a), "T2")
    assert len(checker.findings) == 1


def test_reentrant_acquisition_is_not_an_edge(checker: LockOrderChecker) -> None:
    r, b, c = FakeRLock(), FakeLock(), FakeLock()

    def reenter() -> None:
        with r, b, r:  # r again while holding b: reentrant, so no b -> r edge
            pass
        with r, r:
            pass
        with c:  # r fully released: no r -> c edge either
            pass

    run_in_thread(reenter, "T1")
    run_in_thread(lambda: nested(r, b), "T2")
    run_in_thread(lambda: nested(c, r), "T3")
    assert checker.findings == []


def test_lock_released_by_another_thread_is_no_longer_held(checker: LockOrderChecker) -> None:
    a, b = FakeLock(), FakeLock()
    run_in_thread(a.acquire, "owner")
    run_in_thread(a.release, "releaser")  # a Lock used as a signal
    run_in_thread(lambda: nested(b, a), "T2")
    # If "owner" still counted a as held, its next acquisition would add a -> b.
    assert checker.findings == []


def test_three_lock_cycle_across_three_threads(checker: LockOrderChecker) -> None:
    a, b, c = FakeLock(), FakeLock(), FakeLock()
    run_in_thread(lambda: nested(a, b), "T1")
    run_in_thread(lambda: nested(b, c), "T2")
    assert checker.findings == []
    run_in_thread(lambda: nested(c, a), "T3")
    (finding,) = checker.findings
    assert len(finding.cycle) == 3
    assert {e.thread.name for e in finding.cycle} == {"T1", "T2", "T3"}


def test_cycle_needing_more_threads_than_took_it_is_not_reported(
    checker: LockOrderChecker,
) -> None:
    a, b, c = FakeLock(), FakeLock(), FakeLock()

    def one_thread_two_edges() -> None:
        nested(a, b)
        nested(b, c)

    run_in_thread(one_thread_two_edges, "T1")
    run_in_thread(lambda: nested(c, a), "T2")
    assert checker.findings == []  # three locks must be held at once: needs 3 threads


def test_dead_lock_objects_leave_the_graph(checker: LockOrderChecker) -> None:
    doomed, b = [FakeLock()], FakeLock()
    run_in_thread(lambda: nested(doomed[0], b), "T1")
    nodes_before = len(checker._nodes)
    doomed.clear()
    gc.collect()
    fresh = FakeLock()
    run_in_thread(lambda: nested(b, fresh), "T2")  # drains the dead queue
    assert len(checker._nodes) == nodes_before  # a's node went, fresh's came
    run_in_thread(lambda: nested(fresh, b), "T3")  # an inversion with fresh, not with a
    (finding,) = checker.findings
    assert all(hex(id(fresh)) in (e.first + e.second) for e in finding.cycle)


def test_standard_locks_as_graph_nodes(checker: LockOrderChecker) -> None:
    # The stdlib patches report threading.Lock/RLock through the same hooks.
    a, b = threading.Lock(), threading.RLock()

    def order(x: object, y: object) -> None:
        events.lock_acquired(x, True, depth=0)  # depth 0: order() itself is the user
        events.lock_acquired(y, True, depth=0)
        events.lock_released(y)
        events.lock_released(x)

    run_in_thread(lambda: order(a, b), "T1")
    run_in_thread(lambda: order(b, a), "T2")
    (finding,) = checker.findings
    assert {e.first.split()[0] for e in finding.cycle} == {type(a).__name__, type(b).__name__}
    assert finding.cycle[0].second_acquired_at[0].function == "order"


def test_stopped_checker_sees_nothing() -> None:
    lo = LockOrderChecker().start()
    lo.stop()
    a, b = FakeLock(), FakeLock()
    run_in_thread(lambda: nested(a, b), "T1")
    run_in_thread(lambda: nested(b, a), "T2")
    assert lo.findings == [] and sys.modules["racecheck.sync.events"]._locks is None
