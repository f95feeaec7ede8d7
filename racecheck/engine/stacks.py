"""Cheap stack capture for the previous access of every location, and the history bound.

When the shadow state of a location is updated (never on a same-epoch fast path) the
engine records the user's stack as ``(code, f_lasti)`` pairs (never frames, which would
keep the user's locals alive), interned in a :class:`StackTable` so identical stacks
share one tuple and a cell stores a small int.  The table is bounded (``history_size``): when it is full the oldest stacks are
forgotten, and a report whose previous stack was forgotten says so, like Go's
``[failed to restore the stack]``.  That bounds stack memory however many locations and
however long the run.
"""

from __future__ import annotations

import linecache
import os
import threading
from types import CodeType, FrameType
from typing import Any

from racecheck._rawsync import allocate_lock
from racecheck.report.findings import Frame, Stack

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
"""Frames whose file is under here are racecheck's own and never shown."""

RUNNER_FILE = PACKAGE_DIR + "runner.py"
"""``racecheck run``'s launcher: frames older than it (the CLI, click, the console
script) are not the program's and are cut off."""
BOUNDARY_FILES = frozenset({RUNNER_FILE, PACKAGE_DIR + "pytest_plugin.py"})
"""Launchers whose frames end a stack (the pytest plugin's frame separates a test from
pytest's own machinery)."""

_THREADING_FILE = threading.__file__
"""Thread bootstrap frames (``_bootstrap``, ``_bootstrap_inner``, ``run``) at the outer
end of a thread's stack are dropped: the thread's creation stack says where it came from,
as Go's reports do."""

FlatStack = tuple[object, ...]
"""``(filename, lineno, function, filename, lineno, function, ...)``, innermost first."""

DEFAULT_DEPTH = 24


def capture(frame: FrameType | None, limit: int = 1000) -> FlatStack:
    """The stack from ``frame`` outwards, skipping racecheck's frames, as a flat tuple
    (report time: computes line numbers, which is the expensive part)."""
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
        elif filename in BOUNDARY_FILES:
            break
        frame = frame.f_back
    return tuple(out)


def to_frames(flat: FlatStack) -> Stack:
    """Report-time rendering: Frame objects with the source line from linecache."""
    end = len(flat)
    while end >= 3 and flat[end - 3] == _THREADING_FILE:
        end -= 3
    if end == 0:
        end = len(flat)  # nothing but threading frames: keep them
    frames = []
    for i in range(0, end, 3):
        filename = str(flat[i])
        lineno = int(flat[i + 1])  # type: ignore[call-overload]
        line = linecache.getline(filename, lineno).strip()
        frames.append(Frame(filename, lineno, str(flat[i + 2]), line))
    return tuple(frames)


def line_of(code: CodeType, lasti: int) -> int:
    for start, end, line in code.co_lines():
        if start <= lasti < end:
            return line if line is not None else code.co_firstlineno
    return code.co_firstlineno


def resolve(stored: tuple[object, ...]) -> FlatStack:
    """A stored ``(code, lasti, ...)`` stack as a flat (filename, lineno, function) one."""
    out: list[object] = []
    for i in range(0, len(stored), 2):
        code: Any = stored[i]
        out.append(code.co_filename)
        out.append(line_of(code, int(stored[i + 1])))  # type: ignore[call-overload]
        out.append(code.co_name)
    return tuple(out)


LOST_STACK: Stack = (Frame("[failed to restore the stack]", 0, "?"),)
"""Shown for a previous access whose stack fell out of the bounded history."""


def history_capacity(history_size: int) -> int:
    """Go-style ``history_size`` (0..7, default 1) to the number of distinct stacks kept:
    4096 << history_size."""
    return 4096 << max(0, min(int(history_size), 10))


class StackTable:
    """Interns previous-access stacks to small ids; keeps at most ``capacity`` of them
    (oldest dropped first).

    The hot part, :meth:`intern_frame`, builds a key of ints only: ``(id(code), f_lasti,
    ...)`` per frame (``f_lasti`` is a field read; ``f_lineno`` would decode the line
    table, ~7x slower), looked up lock-free (a built-in dict ``get`` is atomic).  Only
    on a miss it takes the lock and stores the code objects themselves, which keeps them
    alive for as long as the entry exists, so the ids in its key cannot be reused.  Line
    numbers and racecheck-frame filtering happen at report time.
    """

    __slots__ = ("_lock", "_ids", "_stacks", "_next", "capacity")

    def __init__(self, capacity: int) -> None:
        self._lock = allocate_lock()
        self._ids: dict[tuple[int, ...], int] = {}
        self._stacks: dict[int, tuple[tuple[int, ...], tuple[object, ...]]] = {}
        self._next = 1
        self.capacity = max(1, capacity)

    def intern_frame(self, frame: FrameType | None, limit: int) -> int:
        key: list[int] = []
        add = key.append
        f = frame
        for _ in range(limit):
            if f is None:
                break
            add(id(f.f_code))
            add(f.f_lasti)
            f = f.f_back
        k = tuple(key)
        sid = self._ids.get(k)
        if sid is not None:
            return sid
        stored: list[object] = []
        pkg = PACKAGE_DIR
        f = frame
        n = 0
        while f is not None and n < limit:
            code = f.f_code
            if not code.co_filename.startswith(pkg):
                stored.append(code)
                stored.append(f.f_lasti)
            elif code.co_filename in BOUNDARY_FILES:
                break
            f = f.f_back
            n += 1
        with self._lock:
            sid = self._ids.get(k)
            if sid is not None:
                return sid
            sid = self._next
            self._next = sid + 1
            self._ids[k] = sid
            self._stacks[sid] = (k, tuple(stored))
            if len(self._stacks) > self.capacity:
                oldest = next(iter(self._stacks))
                del self._ids[self._stacks.pop(oldest)[0]]
            return sid

    def get(self, sid: int) -> FlatStack | None:
        """The stack (filename, lineno, function)* of an id, None if forgotten."""
        with self._lock:
            entry = self._stacks.get(sid)
        return resolve(entry[1]) if entry is not None else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._stacks)

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()
            self._stacks.clear()
