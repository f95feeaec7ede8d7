"""What a race report says: locations, objects, stacks, threads; dedup, the ignore
comment, suppressions, callbacks, reset, the history bound."""

from __future__ import annotations

import re
import types

from engine_helpers import F, Obj, run_in_thread

from racecheck.engine.detector import Detector, parse_suppressions
from racecheck.engine.stacks import LOST_STACK, StackTable


def racy(d: Detector, first, second) -> None:
    """``first`` in a finished, unjoined thread, then ``second`` here: unordered."""
    run_in_thread(d, first, sync=False)
    second()


def test_names_of_locations_and_objects():
    d = Detector()
    app = types.ModuleType("app")

    class Counter:
        count = 0

    c = Counter()
    racy(d, lambda: d.write_attr(app, "total", F()), lambda: d.read_attr(app, "total", F()))
    racy(
        d, lambda: d.write_attr(Counter, "count", F()), lambda: d.write_attr(Counter, "count", F())
    )
    racy(d, lambda: d.write_attr(c, "value", F()), lambda: d.write_attr(c, "value", F()))
    racy(d, lambda: d.write_item({}, "k", F()), lambda: None)
    box: dict[str, int] = {}
    racy(d, lambda: d.write_item(box, "k", F()), lambda: d.read_item(box, "k", F()))
    lst = [1, 2, 3, 4]
    racy(d, lambda: d.write_item(lst, 3, F()), lambda: d.read_item(lst, 3, F()))
    got = {(r.current.location, r.current.object_repr) for r in d.races()}
    assert ("app.total", "module app") in got
    assert ("Counter.count", f"class {__name__}.{Counter.__qualname__}") in got
    assert ("dict['k']", f"dict object at {id(box):#x}") in got
    assert ("list[3]", f"list object at {id(lst):#x}") in got
    [inst] = [r for r in d.races() if r.current.location == "Counter.value"]
    assert re.fullmatch(
        rf"{__name__}\.test_names_of_locations_and_objects\.<locals>\.Counter object at 0x[0-9a-f]+",
        inst.current.object_repr,
    )


def test_user_repr_is_never_called():
    class Loud:
        def __repr__(self):
            raise AssertionError("engine called the user's __repr__")

    d = Detector()
    o = Loud()
    racy(d, lambda: d.write_attr(o, "x", F()), lambda: d.write_attr(o, "x", F()))
    assert "Loud object at 0x" in d.races()[0].current.object_repr


def inner_write(d: Detector, o: object) -> None:
    d.write_attr(o, "x", F())  # the current access


def outer(d: Detector, o: object) -> None:
    inner_write(d, o)


def test_both_stacks_are_full_innermost_first_with_source_lines():
    d = Detector()
    o = Obj()
    racy(d, lambda: outer(d, o), lambda: outer(d, o))
    [race] = d.races()
    for access in (race.current, race.previous):
        names = [f.function for f in access.stack]
        assert names[:2] == ["inner_write", "outer"]
        assert access.stack[0].line == 'd.write_attr(o, "x", F())  # the current access'
        assert access.stack[0].filename == __file__
        assert not any("/racecheck/" in f.filename for f in access.stack)
    assert race.current.stack[2].function == "<lambda>"


def test_each_pair_of_sites_is_reported_once():
    d = Detector()
    for _ in range(3):
        o = Obj()
        racy(d, lambda o=o: d.write_attr(o, "x", F()), lambda o=o: d.write_attr(o, "x", F()))
    assert len(d.races()) == 1
    o = Obj()
    racy(d, lambda: d.write_attr(o, "x", F()), lambda: d.read_attr(o, "x", F()))
    assert len(d.races()) == 2


def test_ignore_comment_on_either_line_silences():
    d = Detector()
    o = Obj()
    racy(
        d,
        lambda: d.write_attr(o, "x", F()),  # racecheck: ignore
        lambda: d.write_attr(o, "x", F()),
    )
    o2 = Obj()
    racy(
        d,
        lambda: d.write_attr(o2, "x", F()),
        lambda: d.write_attr(o2, "x", F()),  # racecheck: ignore
    )
    assert d.races() == []
    o3 = Obj()
    racy(d, lambda: d.write_attr(o3, "x", F()), lambda: d.write_attr(o3, "x", F()))
    assert len(d.races()) == 1


def suppressed_helper(d: Detector, o: object) -> None:
    d.write_attr(o, "x", F())


def test_parse_suppressions():
    assert parse_suppressions(["# c", "", "race:foo.*", "deadlock:x", "bare"]) == [
        "foo.*",
        "bare",
    ]


def test_suppressions_match_any_frame_of_either_stack():
    for pattern in [
        "race:suppressed_helper",
        f"race:{__name__}.suppressed_*",
        "race:test_engine_reports.py",
        "race:*engine/test_engine_reports.py",
    ]:
        assert suppressed_race_count([pattern]) == 0, pattern
    assert suppressed_race_count(["race:nothing_matches_this"]) == 1


def suppressed_race_count(patterns: list[str]) -> int:
    d = Detector(suppressions=patterns)
    o = Obj()
    racy(d, lambda: suppressed_helper(d, o), lambda: d.write_attr(o, "x", F()))
    return len(d.races())


def test_callbacks_run_once_per_new_race_without_engine_locks_held():
    d = Detector()
    seen = []

    def cb(finding):
        seen.append(finding)
        assert d.races()  # the report lock is not held
        d.write_attr(Obj(), "y", F())  # nor any stripe: the engine may be re-entered

    d.add_race_callback(cb)
    o = Obj()
    for _ in range(2):  # the second time is a duplicate pair of sites
        racy(d, lambda: d.write_attr(o, "x", F()), lambda: d.write_attr(o, "x", F()))
    assert seen == d.races() and len(seen) == 1
    d.remove_race_callback(cb)


def test_callback_exceptions_propagate():
    d = Detector()

    class Boom(Exception):
        pass

    def cb(finding):
        raise Boom

    d.add_race_callback(cb)
    o = Obj()
    run_in_thread(d, lambda: d.write_attr(o, "x", F()), sync=False)
    try:
        d.write_attr(o, "x", F())
    except Boom:
        pass
    else:
        raise AssertionError("callback exception swallowed")


def test_reset_clears_findings_and_dedup():
    d = Detector()
    o = Obj()
    racy(d, lambda: d.write_attr(o, "x", F()), lambda: d.write_attr(o, "x", F()))
    assert len(d.races()) == 1
    d.reset()
    assert d.races() == []
    o = Obj()
    racy(d, lambda: d.write_attr(o, "x", F()), lambda: d.write_attr(o, "x", F()))
    assert len(d.races()) == 1


def test_history_bound_forgets_oldest_stacks():
    t = StackTable(capacity=2)
    ids = [t.intern_frame(F(), 8)]

    def other():
        return t.intern_frame(F(), 8)

    def third():
        return t.intern_frame(F(), 8)

    ids += [other(), third()]
    assert len(t) == 2
    assert t.get(ids[0]) is None
    assert t.get(ids[2]) is not None
    assert t.intern_frame(F(), 8) not in ids  # re-interned under a new id


def test_forgotten_previous_stack_is_reported_as_lost():
    d = Detector()
    d._stacks.capacity = 1
    o = Obj()
    run_in_thread(d, lambda: d.write_attr(o, "x", F()), sync=False)
    d.write_attr(Obj(), "y", F())  # evicts the worker's stack
    d.write_attr(o, "x", F())
    [race] = d.races()
    assert race.previous.stack == LOST_STACK
    assert race.current.stack[0].function == "test_forgotten_previous_stack_is_reported_as_lost"


def test_stats():
    d = Detector()
    d.write_attr(Obj(), "x", F())
    s = d.stats()
    assert {"shadow_objects", "stacks", "slots", "live_threads", "races"} <= set(s)


def test_stacks_stop_at_the_launcher_and_drop_thread_bootstrap_frames():
    import threading

    from racecheck.engine.stacks import RUNNER_FILE

    d = Detector()
    o = Obj()

    def access():
        d.write_attr(o, "x", F())

    launched = compile("access()", RUNNER_FILE, "exec")  # as if racecheck run exec'd it
    racy(d, access, lambda: exec(launched, {"access": access}))
    [race] = d.races()
    assert [f.function for f in race.current.stack] == ["access"]
    assert race.previous.stack[0].function == "access"
    assert not any(f.filename == threading.__file__ for f in race.previous.stack)
