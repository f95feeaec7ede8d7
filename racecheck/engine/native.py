"""The native core: the reference :class:`Detector` with its hot path in C.

``_native`` (racecheck/engine/_native.c) supplies the data the hot path touches, as C
types: cells with C epochs, object shadows, thread states with C vector clocks, and a
``Core`` whose six methods are the AccessSink fast paths.  Everything the fast path
cannot settle goes to :meth:`NativeDetector._slow` below, which records the stack (the
same interned :class:`StackTable` as the Python core) and applies FastTrack's rules in C.
Threads, reports, suppressions and shadow reclamation are the reference code, unchanged,
so both cores give the same verdicts (tests/engine/test_engine_differential.py).
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

from racecheck.engine import _native  # type: ignore[attr-defined]
from racecheck.engine.clock import Token
from racecheck.engine.detector import _AUDIT, _ITEM, _OP_CLASS, Detector

_apply = _native.apply
_same_epoch = _native.same_epoch
_cell_for = _native.cell_for


class NativeDetector(Detector):
    """:class:`Detector` whose per-access work runs in C (see the module docstring)."""

    _cell_class = _native.Cell
    _shadow_class = _native.Shadow
    _state_class = _native.TState
    _map_class = _native.ShadowMap

    def _bind_hot_paths(self) -> None:
        core = self._core = _native.Core(self._tls, self._adopt, self._objs, self._slow)
        self.read_attr = core.read_attr
        self.write_attr = core.write_attr
        self.read_item = core.read_item
        self.write_item = core.write_item
        self.mutate = core.mutate
        self.iterate = core.iterate

    def _set_ts(self, ts: Any) -> None:
        super()._set_ts(ts)
        self._core.set_current(ts)

    @staticmethod
    def _join(ts: Any, other: Any) -> None:
        ts.join(other)

    def _tick(self, ts: Any) -> None:
        ts.tick()

    def publish(self, into: object | None = None) -> object:
        """As the reference's, with the snapshot and join taken in C."""
        ts: Any = self._current()
        token = Token(ts.snapshot(into.vc if isinstance(into, Token) and into.vc else None))
        ts.tick()
        return token

    def audit(self, obj: object, op: str, what: str, depth: int = 1) -> None:
        cls = _OP_CLASS.get(op)
        if cls is None:
            raise ValueError(f"audit op must be read/write/mutate/iterate, not {op!r}")
        ts = self._current()
        sh = self._objs.get(id(obj))
        if sh is not None and sh.audit is not None and _same_epoch(sh.audit, cls, ts):
            return
        try:
            frame: FrameType | None = sys._getframe(depth + 1)
        except ValueError:
            frame = None
        self._slow(ts, obj, _AUDIT, None, cls, what, frame)

    _same_epoch_rule = staticmethod(_same_epoch)

    def _update(
        self,
        obj: object,
        sh: Any,
        ns: int,
        key: object,
        cell: Any,
        cls: int,
        ts: Any,
        meta: Any,
    ) -> list[Any] | None:
        """No Python lock: the cell is created atomically in C (``cell_for``) except for
        item keys that need identity keys (the reference's locked path), and the C apply
        locks the cell's own stripe itself.  (A Python lock held across Python code is a
        place where the GIL can change hands while others wait on it: every thread of
        an object-creating program would queue there.)"""
        if cell is None:
            if ns != _ITEM or type(key) is str or type(key) is int:
                cell = _cell_for(sh, ns, key)
            else:
                with self._stripes[(id(obj) >> 4) & 63]:
                    cell = self._cell_locked(sh, ns, key)
        result: list[Any] | None = _apply(cell, cls, ts, meta)
        return result
