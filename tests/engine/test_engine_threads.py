"""Thread lifecycle: fork/begin/end/joined, unknown threads, slot reuse, ident reuse."""

from __future__ import annotations

import gc
import threading

from engine_helpers import EngineThread, F, Obj, run_in_thread, wait

from racecheck.engine.detector import Detector


def test_sequential_fork_join_reuses_one_slot():
    d = Detector()
    o = Obj()
    for _ in range(50):
        run_in_thread(d, lambda: d.write_attr(o, "x", F()))
        d.write_attr(o, "x", F())
    assert d.races() == []
    assert d.vector_size() == 2  # main + one reused worker slot, not 51
    assert d.stats()["slots"] == 2


def test_vectors_grow_with_live_threads_only():
    d = Detector()
    for _ in range(5):
        gate = threading.Event()
        ts = [EngineThread(d, lambda g=gate: wait(g)).start() for _ in range(4)]
        gate.set()
        for t in ts:
            t.join()
    assert d.stats()["slots"] == 5  # main + 4 live at a time


def test_finished_but_unjoined_slot_is_not_reused():
    """Reusing t1's slot for t2 before t1's end is ordered before t2 would make t2's
    clock cover t1's accesses and hide this race."""
    d = Detector()
    o = Obj()
    t1 = run_in_thread(d, lambda: d.write_attr(o, "x", F()), sync=False)
    assert t1 is not None
    t2 = run_in_thread(d, lambda: d.write_attr(o, "x", F()), sync=False)
    assert t2 is not None
    assert [(r.current.op, r.previous.op) for r in d.races()] == [("write", "write")]
    assert d.stats()["slots"] == 3


def test_slot_reuse_keeps_old_epochs_ordered_only_when_they_are():
    d = Detector()
    o = Obj()
    run_in_thread(d, lambda: d.write_attr(o, "x", F()))  # joined: slot 1 free + ordered
    second_wrote = threading.Event()

    def second():
        d.write_attr(o, "x", F())
        second_wrote.set()

    t = EngineThread(d, second).start()  # reuses the slot; ordered after the first
    wait(second_wrote)
    assert d.races() == []
    d.read_attr(o, "x", F())  # main is not ordered after the second thread: race
    t.join()
    assert [(r.current.op, r.previous.op) for r in d.races()] == [("read", "write")]
    assert d.stats()["slots"] == 2


def test_unknown_threads_get_a_slot_and_are_concurrent():
    d = Detector()
    o = Obj()
    t = threading.Thread(target=lambda: d.write_attr(o, "x", F()))  # never forked
    t.start()
    t.join(5)
    d.write_attr(o, "x", F())
    [race] = d.races()
    assert race.previous.thread.name == t.name
    assert race.previous.thread.created_at == ()


def test_ident_reuse_never_inherits_a_dead_threads_clock():
    """Two raw threads run one after the other (likely with the same ident): the second
    starts with a fresh state, so its write races with the first's."""
    d = Detector()
    o = Obj()
    idents = []

    def body():
        idents.append(threading.get_ident())
        d.write_attr(o, "x", F())

    for _ in range(2):
        t = threading.Thread(target=body)
        t.start()
        t.join(5)
    [race] = d.races()
    assert race.current.thread.tid != race.previous.thread.tid
    assert len(idents) == 2  # (equal idents on most platforms: the case this covers)


def test_dead_unknown_thread_frees_its_slot():
    d = Detector()
    t = threading.Thread(target=lambda: d.publish(None))
    t.start()
    t.join(5)
    gc.collect()
    stats = d.stats()
    assert stats["live_threads"] == 1  # only main
    assert stats["free_slots"] == 1


def test_end_publishes_final_clock_for_joined():
    d = Detector()
    o = Obj()
    t = EngineThread(d, lambda: d.write_attr(o, "x", F())).start()
    t.join(sync=False)
    d.joined(t.thread)  # the same edge the stdlib patches report after join()
    d.read_attr(o, "x", F())
    assert d.races() == []


def test_joined_on_unknown_thread_is_harmless():
    d = Detector()
    d.joined(threading.current_thread())
    d.joined(object())
    assert d.races() == []


def test_begin_with_foreign_token_adopts_the_thread():
    d = Detector()
    other = Detector()
    o = Obj()
    th = threading.Thread(target=lambda: None)
    token = other.fork(th, ())
    done = threading.Event()

    def body():
        d.begin(th, token)
        d.write_attr(o, "x", F())
        d.end(th)
        done.set()

    raw = threading.Thread(target=body)
    raw.start()
    wait(done)
    raw.join(5)
    d.write_attr(o, "x", F())
    assert len(d.races()) == 1


def test_thread_info_in_reports():
    d = Detector()
    o = Obj()

    def worker():
        d.write_attr(o, "x", F())

    t = EngineThread(d, worker, name="Thread-9 (worker)")
    t.start()
    t.join(sync=False)
    d.write_attr(o, "x", F())
    [race] = d.races()
    prev = race.previous.thread
    assert prev.name == "Thread-9 (worker)"
    assert prev.running is False and prev.state == "finished"
    assert prev.created_at[0].filename == "spawner.py"
    assert prev.target == "EngineThread._run"
    assert prev.tid != race.current.thread.tid
    assert race.current.thread.running is True


def test_accesses_before_begin_precede_the_threads_later_accesses():
    """A thread that touched memory before its begin() (adopted as unknown) keeps its
    own order across the switch to the forked state."""
    d = Detector()
    o = Obj()
    th = threading.Thread(target=lambda: None)
    token = d.fork(th, ())

    def body():
        d.write_attr(o, "x", F())  # adopted: no begin yet
        d.begin(th, token)
        d.write_attr(o, "x", F())
        d.end(th)

    raw = threading.Thread(target=body)
    raw.start()
    raw.join(5)
    assert d.races() == []
