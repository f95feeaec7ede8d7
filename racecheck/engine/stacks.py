"""Cheap stack capture for the previous access of every location, and the history bound.

When the shadow state of a location is updated (never on a same-epoch fast path) the
engine records the user's stack as a flat tuple ``(filename, lineno, function, ...)``
(strings and ints only: never frames, which would keep the user's locals alive), interned
in a :class:`StackTable` so identical stacks share one tuple and a cell stores a small
int.  The table is bounded (``history_size``): when it is full the oldest stacks are
forgotten, and a report whose previous stack was forgotten says so, like Go's
``[failed to restore the stack]``.  That bounds stack memory however many locations and
however long the run.
"""

from __future__ import annotations

import linecache
import os
from types import FrameType

from racecheck._rawsync import allocate_lock
from racecheck.report.findings import Frame, Stack

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
"""Frames whose file is under here are racecheck's own and never shown."""

FlatStack = tuple[object, ...]
"""``(filename, lineno, function, filename, lineno, function, ...)``, innermost first."""

DEFAULT_DEPTH = 32


def capture(frame: FrameType | None, limit: int = DEFAULT_DEPTH) -> FlatStack:
    """The stack from ``frame`` outwards, skipping racecheck's frames, as a flat tuple."""
    out: list[object] = []
    pkg = PACKAGE_DIR
    n = 0
    while frame is not None and n < limit:
        code = frame.f_code
        filename = code.co_filename
        if not filename.startswith(pkg):
            out.append(filename)
            out.append(frame.f_lineno)
            out.append(code.co_name)
            n += 1
        frame = frame.f_back
    return tuple(out)


def to_frames(flat: FlatStack) -> Stack:
    """Report-time rendering: Frame objects with the source line from linecache."""
    frames = []
    for i in range(0, len(flat), 3):
        filename = str(flat[i])
        lineno = int(flat[i + 1])  # type: ignore[call-overload]
        line = linecache.getline(filename, lineno).strip()
        frames.append(Frame(filename, lineno, str(flat[i + 2]), line))
    return tuple(frames)


LOST_STACK: Stack = (Frame("[failed to restore the stack]", 0, "?"),)
"""Shown for a previous access whose stack fell out of the bounded history."""


def history_capacity(history_size: int) -> int:
    """Go-style ``history_size`` (0..7, default 1) to the number of distinct stacks kept:
    4096 << history_size."""
    return 4096 << max(0, min(int(history_size), 16))


class StackTable:
    """Interns flat stacks to small ids; keeps at most ``capacity`` of them (oldest
    dropped first).  Thread-safe: one raw lock, taken only on the engine's slow path."""

    __slots__ = ("_lock", "_ids", "_stacks", "_next", "capacity")

    def __init__(self, capacity: int) -> None:
        self._lock = allocate_lock()
        self._ids: dict[FlatStack, int] = {}
        self._stacks: dict[int, FlatStack] = {}
        self._next = 1
        self.capacity = max(1, capacity)

    def intern(self, flat: FlatStack) -> int:
        with self._lock:
            sid = self._ids.get(flat)
            if sid is not None:
                return sid
            sid = self._next
            self._next = sid + 1
            self._ids[flat] = sid
            self._stacks[sid] = flat
            if len(self._stacks) > self.capacity:
                oldest = next(iter(self._stacks))
                del self._ids[self._stacks.pop(oldest)]
            return sid

    def get(self, sid: int) -> FlatStack | None:
        with self._lock:
            return self._stacks.get(sid)

    def __len__(self) -> int:
        with self._lock:
            return len(self._stacks)

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()
            self._stacks.clear()
