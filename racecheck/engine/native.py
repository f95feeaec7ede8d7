"""The native core: the reference :class:`Detector` with its per-access work in C.

``_native`` (racecheck/engine/_native.c and the files it includes) supplies the data the
hot path touches, as C types: cells with C epochs, object shadows keyed by address
(``ShadowMap``), thread states with C vector clocks, the interned stack table
(``StackTable``), and a ``Core`` whose six methods are the AccessSink paths.  A miss of
the same-epoch fast path is taken in C too (shadow, cell, stack id, interned meta,
FastTrack's rules) for attributes, str/int item keys and whole objects; other item keys
and primitive audits go through the reference ``_slow``.  Threads, reports,
suppressions and shadow reclamation are the reference code, unchanged, so both cores
give the same verdicts (tests/engine/test_engine_differential.py).
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

from racecheck.engine import _native  # type: ignore[attr-defined]
from racecheck.engine.clock import Token
from racecheck.engine.detector import _ATTR, _AUDIT, _ITEM, _OP_CLASS, Detector
from racecheck.engine.stacks import BOUNDARY_FILES, PACKAGE_DIR, resolve

_apply = _native.apply
_same_epoch = _native.same_epoch
_cell_for = _native.cell_for
_items_dict = _native.items_dict


class NativeDetector(Detector):
    """:class:`Detector` whose per-access work runs in C (see the module docstring)."""

    _cell_class = _native.Cell
    _shadow_class = _native.Shadow
    _state_class = _native.TState
    _map_class = _native.ShadowMap

    @staticmethod
    def _make_stacks(capacity: int) -> Any:
        return _native.StackTable(capacity, PACKAGE_DIR, frozenset(BOUNDARY_FILES), resolve)

    def _bind_hot_paths(self) -> None:
        core = self._core = _native.Core(self._tls, self._adopt, self._objs, self._slow)
        # Misses of attributes, str/int items and whole objects are taken in C too
        # (shadow, cell, stack id, meta, rules); the rest goes to the reference _slow.
        core.configure_slow(
            self._stacks, self._depth, self._metas, self._shadow.get_or_create, self._report
        )
        # HappensBefore's two hot methods (every lock, queue item, future...) in C too.
        core.set_token_class(Token)
        self.consume = core.consume  # type: ignore[method-assign]
        self.publish = core.publish  # type: ignore[method-assign]
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
            if ns == _ATTR:
                cell = _cell_for(sh, ns, str(key))  # a str subclass name: as the reference
            elif ns != _ITEM or type(key) is str or type(key) is int:
                cell = _cell_for(sh, ns, key)
            else:
                _items_dict(sh)  # the one items dict, made atomically (C may make it too)
                with self._stripes[(id(obj) >> 4) & 63]:
                    cell = self._cell_locked(sh, ns, key)
        result: list[Any] | None = _apply(cell, cls, ts, meta)
        return result
