"""FastTrack's rules, each both ways: the racy pair is reported, its synchronised twin
(fork/join or publish/consume) is not."""

from __future__ import annotations

import threading

import pytest
from engine_helpers import EngineThread, F, Obj, run_in_thread, wait

from racecheck.engine.detector import Detector
from racecheck.sync import events


@pytest.fixture
def d() -> Detector:
    return Detector()


def _ops(d: Detector) -> list[tuple[str, str]]:
    return [(r.current.op, r.previous.op) for r in d.races()]


# ---- write/write -------------------------------------------------------------------


def test_write_write_unordered_is_a_race(d):
    o = Obj()
    run_in_thread(d, lambda: d.write_attr(o, "x", F()), sync=False)
    d.write_attr(o, "x", F())
    assert _ops(d) == [("write", "write")]
    race = d.races()[0]
    assert race.current.location == "Obj.x"
    assert race.current.thread.name == "MainThread"
    assert race.previous.thread.running is False


def test_write_write_ordered_by_join_is_not(d):
    o = Obj()
    run_in_thread(d, lambda: d.write_attr(o, "x", F()), sync=True)
    d.write_attr(o, "x", F())
    assert d.races() == []


def test_fork_orders_parent_past_before_child(d):
    o = Obj()
    d.write_attr(o, "x", F())
    run_in_thread(d, lambda: d.write_attr(o, "x", F()))
    assert d.races() == []


def test_parent_after_fork_is_concurrent_with_child(d):
    o = Obj()
    child_done = threading.Event()

    def child():
        d.write_attr(o, "x", F())
        child_done.set()

    t = EngineThread(d, child).start()
    wait(child_done)
    d.write_attr(o, "x", F())  # after fork, no join yet: concurrent
    t.join()
    assert _ops(d) == [("write", "write")]


# ---- write/read and read/write -----------------------------------------------------


def test_write_then_unordered_read_is_a_race(d):
    o = Obj()
    run_in_thread(d, lambda: d.write_attr(o, "x", F()), sync=False)
    d.read_attr(o, "x", F())
    assert _ops(d) == [("read", "write")]


def test_write_then_read_through_publish_consume_is_not(d):
    o = Obj()
    box: list[object] = []

    def child():
        d.write_attr(o, "x", F())
        box.append(d.publish(None))

    run_in_thread(d, child, sync=False)
    d.consume(box[0])
    d.read_attr(o, "x", F())
    assert d.races() == []


def test_read_then_unordered_write_is_a_race(d):
    o = Obj()
    run_in_thread(d, lambda: d.read_attr(o, "x", F()), sync=False)
    d.write_attr(o, "x", F())
    assert _ops(d) == [("write", "read")]


def test_read_then_joined_write_is_not(d):
    o = Obj()
    run_in_thread(d, lambda: d.read_attr(o, "x", F()))
    d.write_attr(o, "x", F())
    assert d.races() == []


def test_reads_never_race(d):
    o = Obj()
    d.read_attr(o, "x", F())
    run_in_thread(d, lambda: d.read_attr(o, "x", F()), sync=False)
    d.read_attr(o, "x", F())
    assert d.races() == []


def test_publish_advances_the_clock(d):
    """Accesses after a release are not covered by the token released before them."""
    o = Obj()
    box: list[object] = []

    def child():
        box.append(d.publish(None))
        d.write_attr(o, "x", F())

    run_in_thread(d, child, sync=False)
    d.consume(box[0])
    d.read_attr(o, "x", F())
    assert _ops(d) == [("read", "write")]


def test_publish_into_joins_tokens(d):
    """A token published into an earlier one carries both pasts (e.g. two unlockers)."""
    o1, o2 = Obj(), Obj()
    box: list[object] = []
    run_in_thread(d, lambda: (d.write_attr(o1, "x", F()), box.append(d.publish(None))), False)
    run_in_thread(d, lambda: (d.write_attr(o2, "x", F()), box.append(d.publish(box[0]))), False)
    d.consume(box[1])
    d.read_attr(o1, "x", F())
    d.read_attr(o2, "x", F())
    assert d.races() == []


# ---- read-shared promotion ---------------------------------------------------------


def test_concurrent_reads_promote_to_read_vector_and_all_are_checked(d):
    o = Obj()
    both_read = threading.Barrier(2, timeout=5)

    def reader():
        d.read_attr(o, "x", F())
        both_read.wait()

    a = EngineThread(d, reader).start()
    b = EngineThread(d, reader).start()
    a.join()
    b.join(sync=False)  # only a is ordered before main
    cell = d._objs[id(o)].attrs["x"]
    assert isinstance(cell.r, dict) and len(cell.r) == 2  # read-shared
    d.write_attr(o, "x", F())
    races = d.races()
    assert [(r.current.op, r.previous.op) for r in races] == [("write", "read")]
    assert races[0].previous.thread.name == b.thread.name


def test_read_shared_ordered_before_writer_is_not_a_race(d):
    o = Obj()
    both_read = threading.Barrier(2, timeout=5)

    def reader():
        d.read_attr(o, "x", F())
        both_read.wait()

    a = EngineThread(d, reader).start()
    b = EngineThread(d, reader).start()
    a.join()
    b.join()
    d.write_attr(o, "x", F())
    assert d.races() == []


def test_ordered_reads_stay_an_epoch(d):
    o = Obj()
    d.read_attr(o, "x", F())
    run_in_thread(d, lambda: d.read_attr(o, "x", F()))
    d.read_attr(o, "x", F())
    assert isinstance(d._objs[id(o)].attrs["x"].r, int)


# ---- items and the third kind ------------------------------------------------------


def test_items_same_key_race_and_distinct_keys_do_not(d):
    c = [0, 0]
    run_in_thread(d, lambda: d.write_item(c, 0, F()), sync=False)
    d.write_item(c, 1, F())
    assert d.races() == []
    d.write_item(c, 0, F())
    assert _ops(d) == [("write", "write")]
    assert d.races()[0].current.location == "list[0]"


def test_attribute_and_item_namespaces_are_apart(d):
    class D(dict):
        pass

    c = D()
    run_in_thread(d, lambda: d.write_item(c, "k", F()), sync=False)
    d.write_attr(c, "k", F())
    assert d.races() == []


def test_mutations_never_race_with_each_other(d):
    c: list[int] = []
    run_in_thread(d, lambda: d.mutate(c, F()), sync=False)
    d.mutate(c, F())
    assert d.races() == []


def test_iterations_never_race_with_each_other(d):
    c: list[int] = []
    run_in_thread(d, lambda: d.iterate(c, F()), sync=False)
    d.iterate(c, F())
    assert d.races() == []


@pytest.mark.parametrize("first,second", [("mutate", "iterate"), ("iterate", "mutate")])
def test_mutation_and_iteration_race_both_ways(d, first, second):
    c: list[int] = []
    run_in_thread(d, lambda: getattr(d, first)(c, F()), sync=False)
    getattr(d, second)(c, F())
    assert _ops(d) == [(second, first)]
    assert d.races()[0].current.location == "list"


@pytest.mark.parametrize("first,second", [("mutate", "iterate"), ("iterate", "mutate")])
def test_mutation_and_iteration_ordered_do_not_race(d, first, second):
    c: list[int] = []
    run_in_thread(d, lambda: getattr(d, first)(c, F()), sync=True)
    getattr(d, second)(c, F())
    assert d.races() == []


def test_concurrent_mutations_are_all_checked_by_a_later_iteration(d):
    c: list[int] = []
    both = threading.Barrier(2, timeout=5)

    def appender():
        d.mutate(c, F())
        both.wait()

    a = EngineThread(d, appender).start()
    b = EngineThread(d, appender).start()
    a.join()
    b.join(sync=False)
    d.iterate(c, F())
    races = d.races()
    assert [(r.current.op, r.previous.op) for r in races] == [("iterate", "mutate")]
    assert races[0].previous.thread.name == b.thread.name


# ---- audits of primitives ----------------------------------------------------------


class Chan:
    """A stand-in primitive reporting its operations like racecheck's Chan does."""

    def __init__(self) -> None:
        self._created_at = events.creation_site()

    def send(self) -> None:
        events.audit(self, "read", "send")

    def close(self) -> None:
        events.audit(self, "write", "close")


class WaitGroup:
    def add(self) -> None:
        events.audit(self, "mutate", "add")

    def wait(self) -> None:
        events.audit(self, "iterate", "wait")


@pytest.fixture
def listening(d):
    events.set_happens_before(d)
    try:
        yield d
    finally:
        events.set_happens_before(None)


def test_close_unordered_with_send_is_reported_with_the_primitive(listening):
    d = listening
    ch = Chan()
    run_in_thread(d, ch.send, sync=False)
    ch.close()
    [race] = d.races()
    assert (race.current.op, race.previous.op) == ("close", "send")
    assert race.current.location == "Chan.close"
    assert race.previous.location == "Chan.send"
    assert (
        "created at" in race.current.object_repr
        and "test_engine_rules.py" in race.current.object_repr
    )
    # the stacks point at the user's calls, not into the primitive or events.py
    assert (
        race.current.stack[0].function
        == "test_close_unordered_with_send_is_reported_with_the_primitive"
    )
    assert race.previous.stack[0].function == "_run"


def test_close_after_joined_send_is_not(listening):
    d = listening
    ch = Chan()
    run_in_thread(d, ch.send)
    ch.close()
    assert d.races() == []


def test_waitgroup_adds_commute_but_add_races_wait(listening):
    d = listening
    wg = WaitGroup()
    run_in_thread(d, wg.add, sync=False)
    wg.add()
    assert d.races() == []  # adds commute
    wg = WaitGroup()
    run_in_thread(d, wg.wait, sync=False)
    wg.wait()
    assert d.races() == []  # waits commute
    wg = WaitGroup()
    run_in_thread(d, wg.add, sync=False)
    wg.wait()
    assert [(r.current.op, r.previous.op) for r in d.races()] == [("wait", "add")]


def test_audit_rejects_unknown_ops(d):
    with pytest.raises(ValueError):
        d.audit(Obj(), "frobnicate", "x", 0)


def test_read_shared_same_epoch_takes_the_fast_path(d):
    o = Obj()
    both_read = threading.Barrier(2, timeout=5)
    again = threading.Event()
    stacks_before: list[int] = []

    def reader():
        d.read_attr(o, "x", F())
        both_read.wait()

    def reader_then_reread():
        reader()
        stacks_before.append(d.stats()["stacks"])
        d.read_attr(o, "x", F())  # a new line, same epoch: nothing recorded
        stacks_before.append(d.stats()["stacks"])
        again.set()

    a = EngineThread(d, reader).start()
    b = EngineThread(d, reader_then_reread).start()
    wait(again)
    a.join()
    b.join()
    assert isinstance(d._objs[id(o)].attrs["x"].r, dict)
    assert stacks_before[0] == stacks_before[1]


def test_same_epoch_is_skipped_for_every_key_type_and_audits(d):
    box: dict[object, int] = {}
    d.write_item(box, (1, "a"), F())
    d.audit(box, "mutate", "add", 0)
    before = d.stats()["stacks"]
    d.write_item(box, (1, "a"), F())  # new lines, same epoch: nothing recorded
    d.audit(box, "mutate", "add", 0)
    assert d.stats()["stacks"] == before
    d.publish(None)  # a new epoch: recorded again
    d.write_item(box, (1, "a"), F())
    assert d.stats()["stacks"] == before + 1


def test_write_checks_every_concurrent_mutation(d):
    """A write conflicts with mutations too; with concurrent mutators, each is checked."""
    prim = Obj()
    both = threading.Barrier(2, timeout=5)

    def adder():
        d.audit(prim, "mutate", "add", 0)
        both.wait()

    a = EngineThread(d, adder).start()
    b = EngineThread(d, adder).start()
    a.join()
    b.join(sync=False)
    d.audit(prim, "write", "close", 0)
    [race] = d.races()
    assert (race.current.op, race.previous.op) == ("close", "add")
    assert race.previous.thread.name == b.thread.name
    assert race.current.location == "Obj.close" and race.previous.location == "Obj.add"


def test_write_resets_readers_so_ordered_later_accesses_are_clean(d):
    o = Obj()
    run_in_thread(d, lambda: d.read_attr(o, "x", F()))
    d.write_attr(o, "x", F())
    run_in_thread(d, lambda: d.write_attr(o, "x", F()))
    d.read_attr(o, "x", F())
    assert d.races() == []
