"""The C StackTable (native core) against the reference stacks.StackTable: the same ids
for the same stacks, the same resolved frames, the same forgetting."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from racecheck.engine import stacks
from racecheck.engine.core import native_class


def _tables(capacity: int) -> list[Any]:
    out: list[Any] = [stacks.StackTable(capacity)]
    if native_class() is not None:
        from racecheck.engine import _native  # type: ignore[attr-defined]

        out.append(
            _native.StackTable(
                capacity, stacks.PACKAGE_DIR, frozenset(stacks.BOUNDARY_FILES), stacks.resolve
            )
        )
    return out


def _frame_at(depth: int) -> Any:
    """A frame ``depth`` calls deep (so stacks differ by more than their top line)."""
    if depth == 0:
        return sys._getframe(1)
    return _frame_at(depth - 1)


@pytest.fixture(params=["python", "native"])
def table_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "native" and native_class() is None:
        pytest.skip("native core not built")
    return str(request.param)


def _table(kind: str, capacity: int) -> Any:
    tables = _tables(capacity)
    return tables[0] if kind == "python" else tables[1]


def test_same_stack_same_id_and_frames(table_kind: str) -> None:
    t = _table(table_kind, 64)
    f = sys._getframe()
    ids = []
    for _ in range(2):
        line, sid = f.f_lineno, t.intern_frame(f, 24)  # the same position both times
        ids.append(sid)
    a, b = ids
    assert a == b
    assert t.intern_frame(f, 24) != a  # another position, another stack
    flat = t.get(a)
    assert flat is not None
    assert flat[:3] == (__file__, line, "test_same_stack_same_id_and_frames")
    assert len(t) == 2


def test_different_stacks_get_different_ids(table_kind: str) -> None:
    t = _table(table_kind, 64)
    ids = {t.intern_frame(_frame_at(d), 24) for d in range(5)}
    assert len(ids) == 5
    assert len(t) == 5


def test_both_tables_resolve_alike() -> None:
    tables = _tables(64)
    if len(tables) < 2:
        pytest.skip("native core not built")
    frames = [_frame_at(d) for d in range(4)] + [None]
    for limit in (1, 3, 24):
        resolved = [[t.get(t.intern_frame(f, limit)) for f in frames] for t in tables]
        assert resolved[0] == resolved[1]


def test_capacity_forgets_the_oldest(table_kind: str) -> None:
    t = _table(table_kind, 3)
    ids = [t.intern_frame(_frame_at(d), 24) for d in range(5)]
    assert len(t) == 3
    assert [t.get(i) is None for i in ids] == [True, True, False, False, False]
    t.clear()
    assert len(t) == 0
    assert all(t.get(i) is None for i in ids)
