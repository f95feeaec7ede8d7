"""The recorders ``gm`` returns for built-in container methods behave like the bound
method they wrap (they are tuple subclasses, for speed) and record the call."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

SOURCE = """
def method(c, name):
    if name == "append":
        return c.append
    if name == "add":
        return c.add
    if name == "pop":
        return c.pop
    if name == "rotate":
        return c.rotate
    raise AssertionError(name)

def call_append(c, x):
    c.append(x)

def call_append_kw(c, x):
    c.append(object=x)
"""


@pytest.fixture
def mod(load: Any) -> Any:
    return load(SOURCE, "rc_recorders")


@pytest.mark.parametrize(
    ("make", "name", "args"),
    [(list, "append", (1,)), (set, "add", (1,)), (list, "pop", ()), (deque, "rotate", (1,))],
)
def test_recorder_looks_like_the_bound_method(
    sink: Any, mod: Any, make: Any, name: str, args: tuple[Any, ...]
) -> None:
    c = make([5, 6])
    rec = mod.method(c, name)
    bound = getattr(c, name)
    assert type(rec) is not type(bound)  # really a recorder
    assert rec == bound and not rec != bound
    assert hash(rec) == hash(bound)
    assert repr(rec) == repr(bound)
    assert rec.__name__ == name and rec.__self__ is c
    sink.take()
    rec(*args)
    assert ("mutate", None) in sink.on(c)


def test_plain_mutator_records_one_mutation_on_the_call_line(sink: Any, mod: Any) -> None:
    c: list[int] = []
    mod.call_append(c, 3)
    assert c == [3]
    [(op, obj, key, line)] = sink.take()
    assert (op, obj, key) == ("mutate", c, None)
    assert line == mod.call_append.__code__.co_firstlineno + 1


def test_keyword_misuse_raises_the_native_error(sink: Any, mod: Any) -> None:
    with pytest.raises(TypeError) as native:
        [].append(object=1)  # type: ignore[call-arg]
    c: list[int] = []
    with pytest.raises(TypeError) as ours:
        mod.call_append_kw(c, 1)
    assert str(ours.value) == str(native.value)
    assert sink.on(c) == []  # it did not mutate
    files = []
    tb = ours.value.__traceback__
    while tb is not None:
        files.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    assert not any(f.endswith("hooks.py") for f in files), files
