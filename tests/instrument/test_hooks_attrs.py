"""Attribute accesses: exactly the expected sink calls, and the never-an-access list."""

from __future__ import annotations

import sys

import pytest

from racecheck.instrument import hooks

SOURCE = """
import threading

class Plain:
    def __init__(self):
        self.x = 0

class Slotted:
    __slots__ = ("x",)

class WithProperty:
    def __init__(self):
        self._v = 0
    @property
    def v(self):
        return 1
    @v.setter
    def v(self, value):
        pass

class CustomGet:
    def __getattribute__(self, name):
        return 42

class CustomSet:
    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)

class Lazy:
    def __init__(self):
        self.real = 1
    def __getattr__(self, name):
        return "computed"

class Local(threading.local):
    pass

class Counter:
    count = 0

class Sub(Counter):
    pass

def read(o):
    return o.x

def write(o, v):
    o.x = v

def delete(o):
    del o.x

def bump(o):
    o.x += 1

def read_v(o):
    return o.v

def write_v(o):
    o.v = 5

def read_name(o, name):
    return getattr(o, name)

def anything(o):
    return o.anything

def set_anything(o):
    o.anything = 1

def class_read():
    return Sub.count

def class_bump():
    Counter.count += 1

def builtins_access(o):
    setattr(o, "x", 1)
    a = getattr(o, "x")
    b = hasattr(o, "x")
    delattr(o, "x")
    return a, b

def shadowed(o):
    getattr = lambda obj, name: "mine"
    return getattr(o, "x")

def str_method():
    return "a".upper()
"""


def test_plain_attribute_read_write_delete(sink, load):
    m = load(SOURCE)
    o = m.Plain()
    sink.take()
    m.write(o, 3)
    assert m.read(o) == 3
    m.delete(o)
    assert not hasattr(o, "x")
    assert sink.on(o) == [("write", "x"), ("read", "x"), ("write", "x")]


def test_augmented_attribute_is_read_then_write(sink, load):
    m = load(SOURCE)
    o = m.Plain()
    sink.take()
    m.bump(o)
    assert o.x == 1
    assert sink.on(o) == [("read", "x"), ("write", "x")]


def test_frame_is_the_users_frame(sink, load):
    m = load(SOURCE)
    o = m.Plain()
    sink.take()
    m.read(o)
    [(op, obj, key, line)] = sink.take()
    assert line == m.read.__code__.co_firstlineno + 1


def test_slots_members_are_accesses(sink, load):
    m = load(SOURCE)
    o = m.Slotted()
    sink.take()
    m.write(o, 1)
    m.read(o)
    m.bump(o)
    assert sink.on(o) == [("write", "x"), ("read", "x"), ("read", "x"), ("write", "x")]


def test_properties_are_not_accesses(sink, load):
    m = load(SOURCE)
    o = m.WithProperty()
    sink.take()
    assert m.read_v(o) == 1
    m.write_v(o)
    assert sink.on(o) == []


def test_custom_getattribute_and_setattr_are_not_accesses(sink, load):
    m = load(SOURCE)
    g = m.CustomGet()
    s = m.CustomSet()
    sink.take()
    assert m.anything(g) == 42
    m.set_anything(s)
    assert s.anything == 1
    assert sink.on(g) == []
    assert sink.on(s) == []  # also consumes
    m.anything(s)  # reads are still accesses: only __setattr__ is overridden
    assert sink.on(s) == [("read", "anything")]


def test_getattr_misses_are_not_accesses_hits_are(sink, load):
    m = load(SOURCE)
    o = m.Lazy()
    sink.take()
    assert m.anything(o) == "computed"
    assert sink.on(o) == []
    assert m.read_name(o, "real") == 1
    assert sink.on(o) == [("read", "real")]


def test_thread_local_is_not_an_access(sink, load):
    m = load(SOURCE)
    o = m.Local()
    sink.take()
    m.write(o, 1)
    m.read(o)
    assert sink.on(o) == []


def test_racecheck_objects_are_not_accesses(sink, load):
    m = load(SOURCE)
    scope = hooks.CellScope("f")
    namespace = hooks.Namespace("n")
    sink.take()
    m.read_name(scope, "function")
    m.read_name(namespace, "name")
    assert sink.take() == []


def test_immutable_builtins_are_not_accesses(sink, load):
    m = load(SOURCE)
    sink.take()
    assert m.str_method() == "A"
    assert m.read_name(int, "from_bytes") == int.from_bytes
    assert sink.take() == []


def test_class_attributes_resolve_along_the_mro(sink, load):
    m = load(SOURCE)
    sink.take()
    assert m.class_read() == 0
    m.class_bump()
    calls = sink.take()
    ops = [(op, obj, key) for op, obj, key, _ in calls]
    assert ("read", m.Counter, "count") in ops  # Sub.count is Counter's
    assert ops[-2:] == [("read", m.Counter, "count"), ("write", m.Counter, "count")]


def test_builtin_getattr_setattr_delattr_hasattr(sink, load):
    m = load(SOURCE)
    o = m.Plain()
    sink.take()
    assert m.builtins_access(o) == (1, True)
    assert sink.on(o) == [("write", "x"), ("read", "x"), ("read", "x"), ("write", "x")]


def test_shadowed_getattr_is_just_called(sink, load):
    m = load(SOURCE)
    o = m.Plain()
    sink.take()
    assert m.shadowed(o) == "mine"
    assert sink.on(o) == []


def test_module_attribute_from_outside_is_the_global_inside(sink, load):
    inner = load(
        """
        x = 0
        def bump():
            global x
            x += 1
        def get():
            return x
        """,
        name="rcinner",
    )
    outer = load(
        """
        import rcinner
        def read():
            return rcinner.x
        def write():
            rcinner.x = 10
        """,
        name="rcouter",
    )
    sink.take()
    inner.bump()
    outer.read()
    outer.write()
    assert inner.get() == 10
    assert sink.on(inner) == [
        ("read", "x"),
        ("write", "x"),
        ("read", "x"),
        ("write", "x"),
        ("read", "x"),
    ]


def test_module_dunders_are_not_accesses(sink, load):
    m = load(
        """
        import sys
        def name():
            return sys.__name__
        """
    )
    sink.take()
    assert m.name() == "sys"
    assert sink.on(sys) == []


def test_new_property_invalidates_the_cached_decision(sink, load):
    m = load(
        """
        class K:
            pass
        def read(o):
            return o.y
        def make_property():
            K.y = property(lambda self: 7)
        """
    )
    o = m.K()
    o.y = 1
    sink.take()
    assert m.read(o) == 1
    assert sink.on(o) == [("read", "y")]
    m.make_property()  # a class attribute write through instrumented code
    assert m.read(o) == 7
    assert sink.on(o) == []


def test_no_sink_means_passthrough(load):
    m = load(SOURCE)
    assert hooks.current_sink() is None
    o = m.Plain()
    m.bump(o)
    assert m.read(o) == 1


def test_native_decision_cache_hits(sink, load, hook_class, monkeypatch):
    """The C hooks answer "is obj.x an access?" from their version-tag cache: the Python
    decision runs once per (class state, name), not once per access (on every Python:
    3.13 stopped flagging valid version tags, which once disabled the cache there)."""
    if hook_class is not getattr(hooks, "NativeModuleHooks", None):
        pytest.skip("the C hooks' cache")
    native = hooks._native
    calls: list[tuple[int, str]] = []

    def counting(op, tp, name, fresh):
        calls.append((op, name))
        return hooks._decide(op, tp, name, fresh)

    def configure(decide):
        native.hooks_configure(
            decide,
            hooks._attr_slow,
            hooks._HookMethods.gi,
            hooks._HookMethods.it,
            hooks._HookMethods.gm,
            hooks._HookMethods.si,
            hooks.CONTAINER_METHODS,
            hooks.deque,
        )

    m = load(SOURCE)

    class Fresh(m.Plain):  # a class no earlier test cached
        pass

    f = Fresh()
    sink.take()
    configure(counting)
    try:
        for _ in range(50):
            m.read(f)
        assert calls.count((0, "x")) <= 2
        assert sink.on(f) == [("read", "x")] * 50
        # a class change (here by uninstrumented code) gives the class a new tag:
        # decided again, and now not an access
        Fresh.x = property(lambda self: 1)
        calls.clear()
        for _ in range(5):
            m.read(f)
        assert calls.count((0, "x")) == 1
        assert sink.on(f) == []
    finally:
        configure(hooks._decide)


def test_native_hooks_on_a_class_past_its_version_tag_budget(sink, load, hook_class):
    """CPython (3.12+) stops giving a version tag to a class modified ~1000 times: the C
    hooks then ask Python on every access, which must answer from its tables, and every
    access is still recorded."""
    m = load(SOURCE)

    class Hot(m.Plain):
        pass

    for i in range(1200):
        Hot.knob = i  # uninstrumented class writes: each one retires the class's tag
    h = Hot()
    sink.take()
    for _ in range(20):
        m.read(h)
    assert sink.on(h) == [("read", "x")] * 20
