"""The one elision (``p.x OP p.x``: see "Elisions" in racecheck.instrument.rewrite):
its shape, when the second read is still recorded, and racy programs that must still be
reported by the real engine."""

from __future__ import annotations

import ast
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from racecheck.instrument import hooks
from racecheck.instrument.rewrite import rewrite_module
from racecheck.sync import events

detector_mod = pytest.importorskip("racecheck.engine.detector")

WAIT = 5.0


def rewritten(source: str) -> str:
    tree = ast.parse(source)
    rewrite_module(tree, "m.py")
    return ast.unparse(tree)


@pytest.mark.parametrize(
    ("source", "elided"),
    [
        ("def f(p):\n    return p.x * p.x\n", True),
        ("def f(p):\n    return (lambda q: q.x + q.x)(p)\n", True),
        ("def f(ps):\n    return [p.x * p.x for p in ps]\n", True),
        ("def f(p):\n    return p.x * 2 * p.x\n", False),  # an operation in between
        ("def f(p, q):\n    return p.x * q.x\n", False),  # two objects
        ("def f(p):\n    return p.x * p.y\n", False),  # two attributes
        ("def f(p):\n    return (p.x *\n            p.x)\n", False),  # two lines
        ("g = 1\ndef f():\n    return g.x * g.x\n", False),  # a tracked global
        ("import m\ndef f():\n    return m.x * m.x\n", False),  # any global
        ("p = 1\nv = p.x * p.x\n", False),  # module scope
        ("class C:\n    v = p.x * p.x\n", False),  # class scope
        ("def f(p):\n    def g():\n        return p.x * p.x\n    return g\n", False),  # cell
        ("def f(p):\n    return p.copy * p.copy\n", False),  # container method name
    ],
)
def test_which_pairs_are_elided(source: str, elided: bool) -> None:
    out = rewritten(source)
    assert ("rd2(" in out) is elided, out
    if elided:
        assert out.count("__rc__.rd") == 1, out  # one hook for the pair


SOURCE = """
import threading

class Plain:
    def __init__(self):
        self.x = 3

class Slotted:
    __slots__ = ("x",)

class Logged:
    '''A non-data descriptor in Python: loading ``x`` runs user code.'''
    log = []
    def __get__(self, obj, owner):
        Logged.log.append("get")
        return 5

class HasDescriptor:
    x = Logged()

class Fallback:
    def __getattr__(self, name):
        return 7

class Klass:
    x = 2

def square(p):
    return p.x * p.x

def set_x(cls, value):
    cls.x = value

def del_x(cls):
    del cls.x
"""


@pytest.fixture
def mod(load: Any) -> Any:
    return load(SOURCE, "rc_elision")


def test_pure_load_records_one_read_and_keeps_the_value(sink: Any, mod: Any) -> None:
    p = mod.Plain()
    sink.take()  # the write in __init__
    assert mod.square(p) == 9
    assert sink.on(p) == [("read", "x")]
    s = mod.Slotted()
    s.x = 4
    assert mod.square(s) == 16
    assert sink.on(s) == [("read", "x")]


def test_elided_read_is_on_the_user_line(sink: Any, mod: Any) -> None:
    p = mod.Plain()
    sink.take()
    mod.square(p)
    [(op, obj, key, line)] = sink.take()
    assert (op, obj, key) == ("read", p, "x")
    assert line == mod.square.__code__.co_firstlineno + 1


def test_python_descriptor_second_read_recorded_after_the_load(sink: Any, mod: Any) -> None:
    """The first load runs ``__get__`` (user code that could synchronise), so the second
    read is recorded after it: read, get, read, then the native second load's get."""
    p = mod.HasDescriptor()
    mod.Logged.log.clear()
    order: list[str] = []
    real = sink._add

    def add(op: str, obj: Any, key: Any, frame: Any) -> None:
        if obj is p:
            order.append(f"{op}:{len(mod.Logged.log)}")
        real(op, obj, key, frame)

    sink._add = add
    assert mod.square(p) == 25
    assert order == ["read:0", "read:1"]
    assert mod.Logged.log == ["get", "get"]


def test_getattr_class_and_module_reads_are_both_recorded(sink: Any, mod: Any) -> None:
    f = mod.Fallback()
    f.x = 6  # in the instance dict: still a class with __getattr__, so not "pure"
    assert mod.square(f) == 36
    assert sink.on(f) == [("read", "x"), ("read", "x")]
    assert mod.square(mod.Klass) == 4
    assert sink.on(mod.Klass) == [("read", "x"), ("read", "x")]


def test_no_sink_is_a_plain_load(mod: Any) -> None:
    hooks.uninstall()
    assert mod.square(mod.Plain()) == 9
    with pytest.raises(AttributeError) as info:
        mod.square(object())
    assert info.value.name == "x"
    assert "hooks.py" not in "".join(str(tb.tb_frame.f_code.co_filename) for tb in _tbs(info))


def test_error_traceback_has_no_hook_frame(sink: Any, mod: Any) -> None:
    with pytest.raises(AttributeError) as info:
        mod.square(mod.Slotted())  # slot never set
    files = [tb.tb_frame.f_code.co_filename for tb in _tbs(info)]
    assert not any(f.endswith("hooks.py") for f in files), files


def _tbs(info: Any) -> list[Any]:
    out = []
    tb = info.value.__traceback__
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


def test_class_change_between_calls_is_seen(sink: Any, mod: Any) -> None:
    """The purity decision is invalidated when instrumented code changes the class."""
    p = mod.Plain()
    mod.square(p)
    sink.take()
    mod.set_x(mod.Plain, mod.Logged())  # a Python non-data descriptor (instance dict wins)
    try:
        mod.square(p)
        assert sink.on(p) == [("read", "x"), ("read", "x")]
    finally:
        mod.del_x(mod.Plain)
    mod.square(p)
    assert sink.on(p) == [("read", "x")]


# ---- against the real engine --------------------------------------------------------

ENGINE_SOURCE = """
import sys
from racecheck.sync import events

class Plain:
    def __init__(self):
        self.x = 1

class Releasing:
    '''``__get__`` publishes the thread's clock (a release), then lets the test run the
    other thread before the second load.'''
    def __init__(self, published, resume):
        self.published = published
        self.resume = resume
    def __get__(self, obj, owner):
        if not self.published:
            self.published.append(events.publish())
            assert self.resume.wait(5)
        return 0

def square(p):
    return p.x * p.x

def write(p):
    p.x = 2
"""


@pytest.fixture
def engine(load: Any) -> Iterator[tuple[Any, Any]]:
    det = detector_mod.Detector()
    events.set_happens_before(det)
    hooks.install(det)
    try:
        yield det, load(ENGINE_SOURCE, "rc_elision_engine")
    finally:
        hooks.uninstall()
        events.set_happens_before(None)


def _run(fn: Any, *args: Any) -> None:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join(WAIT)
    assert not t.is_alive() and not errors, errors


def test_racy_square_is_still_reported(engine: tuple[Any, Any]) -> None:
    det, mod = engine
    p = mod.Plain()
    _run(mod.write, p)  # no edge from this thread to the reader: a race
    assert mod.square(p) == 4
    assert _races_on_x(det) == 1


def test_write_after_square_is_still_reported(engine: tuple[Any, Any]) -> None:
    det, mod = engine
    p = mod.Plain()
    _run(mod.square, p)
    mod.write(p)
    assert _races_on_x(det) == 1


def _races_on_x(det: Any) -> int:
    """Races on ``Plain.x`` between ``square`` and ``write`` (the test threads are not
    ordered after ``__init__`` either, so that pair may race too)."""
    square_line = ENGINE_SOURCE.splitlines().index("def square(p):") + 2
    return sum(
        1
        for race in det.races()
        if race.current.location == "Plain.x"
        and square_line in (race.current.stack[0].lineno, race.previous.stack[0].lineno)
    )


def test_release_inside_the_first_load_keeps_the_second_read(engine: tuple[Any, Any]) -> None:
    """The case an unconditional elision would miss: the first load publishes (like a
    lock release), another thread consumes that, writes ``p.x`` (ordered after the first
    read only), and the second load reads the new value: the second read races."""
    det, mod = engine
    published: list[Any] = []
    resume = threading.Event()  # invisible to racecheck
    mod.Plain.x = mod.Releasing(published, resume)
    p = mod.Plain.__new__(mod.Plain)  # no instance value: the first load runs __get__
    result: list[int] = []
    reader = threading.Thread(target=lambda: result.append(mod.square(p)))
    reader.start()
    try:
        for _ in range(500):
            if published:
                break
            reader.join(0.01)
        assert published, "the reader never reached the first load"
        events.consume(published[0])
        mod.write(p)
    finally:
        resume.set()
        reader.join(WAIT)
    assert result == [0]  # 0 * 2: the first load ran __get__, the second saw the write
    del mod.Plain.x
    assert _races_on_x(det) == 1, det.races()
