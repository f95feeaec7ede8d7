"""Rewritten code behaves exactly like the original: odd constructs, tracebacks."""

from __future__ import annotations

import ast
import asyncio
import sys
import traceback

import pytest

from racecheck.instrument.rewrite import compile_instrumented, rewrite_module

ODD = '''
"""Module docstring."""
from __future__ import annotations

import dataclasses
import enum
import functools

class Base:
    def greet(self) -> str:
        return "base"

class Child(Base):
    def greet(self) -> str:
        return "child+" + super().greet()

    def klass(self):
        return __class__

class Private:
    def __init__(self):
        self.__secret = 1
        self.__dict__["_Private__other"] = 2

    def reveal(self):
        return self.__secret + self.__other

class Slotted:
    __slots__ = ("a", "b")

    def __init__(self):
        self.a = 1
        self.b = 2

class Prop:
    def __init__(self):
        self._x = 0

    @property
    def x(self):
        return self._x

    @x.setter
    def x(self, value):
        self._x = value * 2

class Meta(type):
    def __new__(mcs, name, bases, ns):
        ns["added"] = True
        return super().__new__(mcs, name, bases, ns)

class WithMeta(metaclass=Meta):
    pass

def gen(n):
    total = 0
    for i in range(n):
        total += i
        yield total

async def agen(n):
    for i in range(n):
        yield i

async def coro():
    out = [i async for i in agen(3)]
    await asyncio_sleep0()
    return out

async def asyncio_sleep0():
    return None

def deco(f):
    @functools.wraps(f)
    def wrapper(*a, **k):
        return ("wrapped", f(*a, **k))
    return wrapper

@deco
def decorated(x):
    return x

def lambdas():
    add = lambda a, b=1: a + b
    return add(1), (lambda: add(2, 2))()

def walrus(xs):
    if (n := len(xs)) > 1:
        return n
    return [y for x in xs if (y := x * 2)]

class Color(enum.Enum):
    RED = 1
    GREEN = 2

@dataclasses.dataclass
class Point:
    x: int
    y: int = 0

def match(value):
    match value:
        case Color.RED:
            return "red"
        case Point(x=0, y=yy):
            return f"on axis {yy}"
        case [first, *rest]:
            return first, rest
        case {"k": v, **others}:
            return v, others
        case _:
            return None

def strings():
    ns = {"a": 1}
    exec("b = a + 1", ns)
    return eval("b * 2", ns)

def exceptions():
    try:
        raise ValueError("x")
    except ValueError as exc:
        return str(exc)

def nested_classes():
    class Inner:
        __v = 5
        def get(self):
            return self.__v
    return Inner().get()

def chained(a, b, c):
    return a < b < c, a in [a], b not in (a,)

def unpacking():
    a, (b, *c) = 1, [2, 3, 4]
    d = {**{"k": 1}, "j": 2}
    return a, b, c, d

def with_stmt():
    import threading
    lock = threading.Lock()
    with lock as held:
        inside = lock.locked()
    return held, inside, lock.locked()

def raising():
    x = {}
    return x["missing"]

def raising_attr(o):
    return o.nope
'''


@pytest.fixture
def m(load):
    return load(ODD, name="rcodd")


@pytest.fixture(params=[False, True], ids=["nosink", "sink"])
def maybe_sink(request):
    if request.param:
        return request.getfixturevalue("sink")
    return None


def test_module_metadata_kept(m):
    assert m.__doc__ == "Module docstring."
    assert m.__file__.endswith("rcodd.py")
    assert m.Base.greet.__annotations__ == {"return": "str"}  # from __future__ kept


def test_future_import_stays_first():
    tree = rewrite_module(ast.parse(ODD), "x.py")
    assert isinstance(tree.body[1], ast.ImportFrom) and tree.body[1].module == "__future__"
    assert isinstance(tree.body[0], ast.Expr)  # docstring


def test_odd_constructs_keep_working(m, maybe_sink):
    assert m.Child().greet() == "child+base"
    assert m.Child().klass() is m.Child
    assert m.Private().reveal() == 3
    s = m.Slotted()
    assert (s.a, s.b) == (1, 2)
    p = m.Prop()
    p.x = 2
    assert p.x == 4
    assert m.WithMeta.added is True
    assert list(m.gen(4)) == [0, 1, 3, 6]
    assert asyncio.run(m.coro()) == [0, 1, 2]
    assert m.decorated(3) == ("wrapped", 3)
    assert m.decorated.__name__ == "decorated"
    assert m.lambdas() == (2, 4)
    assert m.walrus([1, 2, 3]) == 3
    assert m.walrus([5]) == [10]
    assert m.match(m.Color.RED) == "red"
    assert m.match(m.Point(0, 7)) == "on axis 7"
    assert m.match([1, 2, 3]) == (1, [2, 3])
    assert m.match({"k": 1, "z": 2}) == (1, {"z": 2})
    assert m.match(42) is None
    assert m.strings() == 4
    assert m.exceptions() == "x"
    assert m.nested_classes() == 5
    assert m.chained(1, 2, 3) == (True, True, True)
    assert m.unpacking() == (1, 2, [3, 4], {"k": 1, "j": 2})
    assert m.with_stmt() == (True, True, False)
    assert m.Point(1) == m.Point(1, 0)


def test_traceback_points_at_original_lines(m, maybe_sink):
    lines = ODD.splitlines()
    with pytest.raises(KeyError) as info:
        m.raising()
    frames = traceback.extract_tb(info.value.__traceback__)
    last = frames[-1]
    assert last.filename.endswith("rcodd.py")
    assert lines[last.lineno - 1].strip() == 'return x["missing"]'
    assert last.line == 'return x["missing"]'
    assert last.colno is not None
    assert lines[last.lineno - 1][last.colno : last.end_colno] == 'x["missing"]'


def test_attribute_error_location_and_message(m, maybe_sink):
    with pytest.raises(AttributeError, match="nope") as info:
        m.raising_attr(object())
    last = traceback.extract_tb(info.value.__traceback__)[-1]
    assert last.line == "return o.nope"


def test_line_numbers_of_every_statement_are_original():
    plain = compile(ODD, "x.py", "exec", dont_inherit=True)
    rewritten = compile_instrumented(ODD, "x.py")

    def lines(code):
        out = set()
        for _, _, line in code.co_lines():
            if line is not None:
                out.add(line)
        for const in code.co_consts:
            if hasattr(const, "co_lines"):
                out |= lines(const)
        return out

    assert lines(rewritten) - lines(plain) <= {3}  # the hooks import sits on the future line
    assert lines(plain) <= lines(rewritten)


def test_syntax_errors_are_reported_like_compile():
    with pytest.raises(SyntaxError) as info:
        compile_instrumented("x = (\n", "bad.py")
    assert info.value.filename == "bad.py"


def test_bytes_source_with_encoding_cookie():
    code = compile_instrumented(b"# -*- coding: latin-1 -*-\ns = '\xe9'\n", "enc.py")
    ns: dict = {"__name__": "enc"}
    exec(code, ns)
    assert ns["s"] == "\u00e9"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="PEP 695 syntax")
def test_type_parameters_and_type_aliases(load, maybe_sink):
    m = load(
        """
        type Pair[T] = tuple[T, T]
        def first[T](xs: list[T]) -> T:
            return xs[0]
        class Box[T]:
            def __init__(self, v: T):
                self.v = v
        """,
        name="rcpep695",
    )
    assert m.first([3, 4]) == 3
    assert m.Box(5).v == 5
    assert m.Pair.__value__ == tuple[m.Pair.__type_params__[0], m.Pair.__type_params__[0]]
