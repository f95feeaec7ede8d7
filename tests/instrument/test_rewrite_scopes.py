"""Globals and closure cells: which names are accesses, and their locations."""

from __future__ import annotations

import threading

from racecheck.instrument import hooks

SOURCE = """
import os
from os import path as osp

counter = 0
items = []
CONFIG = {"a": 1}

def helper():
    return 1

class Thing:
    pass

def read_globals():
    return counter, len(items), helper(), Thing, os.sep, osp

def write_global():
    global counter
    counter = 5

def augment_global():
    global counter
    counter += 1

def walrus_global():
    global counter
    return (counter := 9)

def declare_later():
    global late
    late = 1

def locals_only(a):
    b = a + 1
    c = [b]
    return b, c

def make_counter():
    total = 0
    def inc():
        nonlocal total
        total += 1
        return total
    def peek():
        return total
    return inc, peek

def make_lambda():
    x = 1
    return lambda: x

def comprehension_only(xs):
    y = 2
    return [x + y for x in xs]
"""


def _on_module(calls, module):
    return [(op, key) for op, obj, key, _ in calls if obj is module]


def test_module_assigned_globals_are_accesses_def_class_import_names_are_not(sink, load):
    m = load(SOURCE)
    sink.take()
    m.read_globals()
    assert _on_module(sink.take(), m) == [("read", "counter"), ("read", "items")]


def test_global_writes(sink, load):
    m = load(SOURCE)
    sink.take()
    m.write_global()
    m.augment_global()
    assert m.walrus_global() == 9
    m.declare_later()
    assert _on_module(sink.take(), m) == [
        ("write", "counter"),
        ("read", "counter"),
        ("write", "counter"),
        ("write", "counter"),
        ("write", "late"),
    ]
    assert m.counter == 9


def test_module_level_statements_record_writes(sink, load):
    load("x = 1\nx += 1\nfor i in range(2):\n    pass\n")
    calls = [(op, key) for op, _obj, key, _ in sink.take()]
    assert calls == [
        ("write", "x"),
        ("read", "x"),
        ("write", "x"),
        ("write", "i"),
        ("write", "i"),
    ]


def test_locals_are_never_accesses(sink, load):
    m = load(SOURCE)
    sink.take()
    assert m.locals_only(1) == (2, [2])
    assert sink.take() == []


def test_nonlocal_cells_location_is_one_scope_per_invocation(sink, load):
    m = load(SOURCE)
    sink.take()
    inc1, peek1 = m.make_counter()
    [(op, scope1, key, _)] = sink.take()  # the initial ``total = 0``
    assert (op, key) == ("write", "total")
    assert isinstance(scope1, hooks.CellScope)
    inc2, _ = m.make_counter()
    [(_, scope2, _, _)] = sink.take()
    assert isinstance(scope2, hooks.CellScope) and scope2 is not scope1
    assert inc1() == 1
    assert peek1() == 1
    inc2()
    calls = sink.take()
    assert [(op, obj, key) for op, obj, key, _ in calls[:3]] == [
        ("read", scope1, "total"),
        ("write", scope1, "total"),
        ("read", scope1, "total"),  # ``return total``
    ]
    assert calls[3][:3] == ("read", scope1, "total")  # peek
    assert {obj for _, obj, _, _ in calls[4:]} == {scope2}


def test_lambda_captures_are_cells(sink, load):
    m = load(SOURCE)
    sink.take()
    f = m.make_lambda()
    assert f() == 1
    calls = sink.take()
    assert [(op, key) for op, _obj, key, _ in calls] == [("write", "x"), ("read", "x")]


def test_comprehension_only_captures_are_locals(sink, load):
    m = load(SOURCE)
    sink.take()
    assert m.comprehension_only([1]) == [3]
    assert [c for c in sink.take() if c[0] != "iterate"] == []


def test_closure_cells_race_between_threads_is_visible(sink, load):
    """Two threads bumping a shared closure variable both report on one location."""
    m = load(SOURCE)
    inc, _ = m.make_counter()
    sink.take()
    t = threading.Thread(target=inc)
    t.start()
    t.join(5)
    inc()
    calls = sink.take()
    scopes = {obj for _, obj, _, _ in calls}
    assert len(scopes) == 1
    assert [op for op, *_ in calls] == ["read", "write", "read"] * 2


def test_dir_of_module_gains_only_one_name(load):
    m = load("x = 1\ndef f():\n    return x\n")
    plain: dict = {}
    exec("x = 1\ndef f():\n    return x\n", plain)
    assert set(dir(m)) - set(plain) - {
        "__file__",
        "__name__",
        "__doc__",
        "__loader__",
        "__package__",
        "__spec__",
    } == {"__rc__"}


def test_globals_of_a_plain_namespace_are_one_location(sink):
    from racecheck.instrument.rewrite import compile_instrumented

    ns: dict = {"__name__": "not_a_module"}
    exec(compile_instrumented("x = 1\ndef f():\n    return x\n", "<ns>"), ns)
    ns["f"]()
    calls = sink.take()
    assert [(op, key) for op, _obj, key, _ in calls] == [("write", "x"), ("read", "x")]
    assert calls[0][1] is calls[1][1]
    assert isinstance(calls[0][1], hooks.Namespace)
