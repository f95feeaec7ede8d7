"""Subscripts, container methods and iteration of built-in containers."""

from __future__ import annotations

import collections
import traceback

import pytest

SOURCE = """
import collections

def get(c, k):
    return c[k]

def put(c, k, v):
    c[k] = v

def delete(c, k):
    del c[k]

def add(c, k):
    c[k] += 1

def slice_read(c):
    return c[1:3]

def slice_store(c):
    c[0:2] = ["a", "b"]

def slice_del(c):
    del c[::2]

def pop(c, k):
    return c.pop(k)

def length(c):
    return len(c)

def methods(lst, d):
    lst.append(1)
    lst.pop()
    d.get("k")
    d.setdefault("k", 0)
    d.pop("k")
    d.update({"a": 1}, b=2)

def extend(lst, other):
    lst.extend(other)

def join(lst):
    return ",".join(lst)

def views(d):
    return list(d.keys()), [v for v in d.values()], d.copy()

def contains(x, c):
    return x in c

def not_contains(x, c):
    return x not in c

def loop(c):
    out = []
    for x in c:
        out.append(x)
    return out

def comprehensions(c):
    return [x for x in c], {x for x in c}, {x: 1 for x in c}, sum(x for x in c)

def unpack(c):
    a, b = c
    return a, b

def starred(c):
    return max(*c), [*c]

def consumers(c):
    return (list(c), tuple(c), set(c), frozenset(c), sorted(c), sum(c), min(c), max(c),
            any(c), all(c), list(enumerate(c)), list(zip(c, c)))

def dict_unpack(d):
    return {**d}, dict(**d)
"""


@pytest.fixture
def m(load):
    return load(SOURCE)


def test_dict_item_read_write_delete(sink, m):
    d = {}
    sink.take()
    m.put(d, "k", 1)
    assert m.get(d, "k") == 1
    m.delete(d, "k")
    assert sink.on(d) == [
        ("write_item", "k"),
        ("mutate", None),
        ("read_item", "k"),
        ("write_item", "k"),
        ("mutate", None),
    ]


def test_list_indices_are_normalised(sink, m):
    lst = [10, 20, 30]
    sink.take()
    assert m.get(lst, -1) == 30
    m.put(lst, -3, 0)
    assert sink.on(lst) == [("read_item", 2), ("write_item", 0), ("mutate", None)]


def test_augmented_item_is_read_then_write(sink, m):
    d = {"k": 1}
    sink.take()
    m.add(d, "k")
    assert d == {"k": 2}
    assert sink.on(d) == [("read_item", "k"), ("write_item", "k"), ("mutate", None)]


def test_slices(sink, m):
    lst = [0, 1, 2, 3, 4]
    sink.take()
    assert m.slice_read(lst) == [1, 2]
    assert sink.on(lst) == [("read_item", 1), ("read_item", 2)]
    m.slice_store(lst)
    assert lst[:2] == ["a", "b"]
    assert sink.on(lst) == [("write_item", 0), ("write_item", 1), ("mutate", None)]
    m.slice_del(lst)
    assert lst == ["b", 3]
    assert sink.on(lst) == [
        ("write_item", 0),
        ("write_item", 2),
        ("write_item", 4),
        ("mutate", None),
    ]


def test_len_is_not_an_access(sink, m):
    lst = [1]
    sink.take()
    assert m.length(lst) == 1
    assert sink.take() == []


def test_subclasses(sink, m):
    class Plain(dict):
        pass

    class Custom(dict):
        def __getitem__(self, k):
            return "custom"

    p, c, od, dd = (
        Plain(k=1),
        Custom(k=1),
        collections.OrderedDict(k=1),
        collections.defaultdict(int),
    )
    sink.take()
    m.get(p, "k")
    assert m.get(c, "k") == "custom"
    m.get(od, "k")
    m.get(dd, "k")
    assert sink.on(p) == [("read_item", "k")]
    m.get(c, "k")
    assert sink.on(c) == []
    m.get(od, "k")
    assert sink.on(od) == [("read_item", "k")]
    m.get(dd, "z")
    assert sink.on(dd) == [("read_item", "z")]


def test_tuples_and_strings_are_not_tracked(sink, m):
    t = (1, 2)
    sink.take()
    assert m.get(t, 0) == 1
    assert m.get("ab", 1) == "b"
    assert m.loop(t) == [1, 2]
    assert [c for c in sink.take() if c[0] != "mutate"] == []  # out.append mutates out


def test_container_methods(sink, m):
    lst, d = [], {}
    sink.take()
    m.methods(lst, d)
    assert d == {"a": 1, "b": 2}
    calls = sink.take()
    assert [(op, k) for op, o, k, _ in calls if o is lst] == [
        ("mutate", None),  # append
        ("write_item", 0),  # pop() takes the last element
        ("mutate", None),
    ]
    assert [(op, k) for op, o, k, _ in calls if o is d] == [
        ("read_item", "k"),  # get
        ("read_item", "k"),  # setdefault
        ("mutate", None),
        ("write_item", "k"),  # pop
        ("mutate", None),
        ("write_item", "a"),  # update writes each key it stores
        ("write_item", "b"),
        ("mutate", None),
    ]


def test_extend_iterates_its_argument(sink, m):
    lst, other = [], [1, 2]
    sink.take()
    m.extend(lst, other)
    calls = sink.take()
    assert [(op, o) for op, o, _, _ in calls] == [("iterate", other), ("mutate", lst)]


def test_str_join_iterates(sink, m):
    lst = ["a", "b"]
    sink.take()
    assert m.join(lst) == "a,b"
    assert sink.on(lst) == [("iterate", None)]


def test_views_and_copy_iterate_the_dict(sink, m):
    d = {"a": 1}
    sink.take()
    assert m.views(d) == (["a"], [1], {"a": 1})
    ops = sink.on(d)
    assert ops and set(ops) == {("iterate", None)}
    assert len(ops) >= 3


def test_in(sink, m):
    lst, d, s = [1], {"k": 1}, {1}
    sink.take()
    assert m.contains(1, lst)
    assert m.not_contains("z", d)
    assert m.contains(1, s)
    calls = sink.take()
    assert [(op, o, k) for op, o, k, _ in calls] == [
        ("iterate", lst, None),
        ("read_item", d, "z"),
    ]


@pytest.mark.parametrize("name", ["loop", "comprehensions", "unpack", "starred"])
def test_iteration_syntax(sink, m, name):
    c = [1, 2]
    sink.take()
    getattr(m, name)(c)
    ops = sink.on(c)
    assert ops and set(ops) == {("iterate", None)}


def test_iteration_builtins(sink, m):
    c = [1, 2]
    sink.take()
    m.consumers(c)
    assert sink.on(c) == [("iterate", None)] * 13  # zip(c, c) iterates it twice


def test_dict_double_star(sink, m):
    d = {"a": 1}
    sink.take()
    assert m.dict_unpack(d) == ({"a": 1}, {"a": 1})
    assert sink.on(d) == [("iterate", None), ("iterate", None)]


def test_sets_and_deques(sink, m):
    s, dq = {1}, collections.deque([1, 2])
    sink.take()
    m.loop(s)
    assert m.get(dq, -1) == 2
    m.loop(dq)
    assert sink.on(s) == [("iterate", None)]
    m.loop(dq)
    assert sink.on(dq) == [("iterate", None)]


def test_hook_frames_do_not_appear_in_tracebacks(sink, m):
    with pytest.raises(KeyError) as info:
        m.get({}, "missing")
    files = [f.filename for f in traceback.extract_tb(info.value.__traceback__)]
    assert not any("racecheck" in f for f in files), files
    for call in (lambda: m.pop({}, "k"), lambda: m.delete({}, "k"), lambda: m.add({}, "k")):
        with pytest.raises(KeyError) as info:
            call()
        files = [f.filename for f in traceback.extract_tb(info.value.__traceback__)]
        assert not any("racecheck" in f for f in files), files


def test_passthrough_without_sink(m):
    d, lst = {}, [0, 1, 2, 3]
    m.put(d, "k", 1)
    m.add(d, "k")
    assert d == {"k": 2}
    assert m.slice_read(lst) == [1, 2]
    assert m.loop(lst) == lst
