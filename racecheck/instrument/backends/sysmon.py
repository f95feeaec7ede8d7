"""Raw-lock capture with ``sys.monitoring`` (3.12+): CALL and C_RETURN events.

Cost control: a call site whose callee is not a raw lock's method returns
``sys.monitoring.DISABLE`` (so it never reports again) unless its code mentions a lock
method name (``x.acquire()`` may see a raw lock next time); call sites in racecheck and
in contract-modelled stdlib modules are disabled at once.  The tool id is a free one
among those no standard tool claims (never the debugger, coverage or profiler ids).
"""

from __future__ import annotations

import sys
from types import CodeType
from typing import Any

from racecheck.instrument.backends.base import (
    LOCK_METHOD_NAMES,
    after_return,
    before_call,
    lock_call,
)
from racecheck.instrument.stdlib_common import is_internal_file

_CANDIDATE_IDS = (3, 4, 5)  # 0 debugger, 1 coverage, 2 profiler are others' by convention
_TOOL_NAME = "racecheck"


class SysMonitoringBackend:
    name = "sys.monitoring"

    def __init__(self) -> None:
        self.tool_id: int | None = None

    def start(self) -> None:
        if self.tool_id is not None:
            return
        mon: Any = sys.monitoring  # type: ignore[attr-defined]
        for tool_id in _CANDIDATE_IDS:
            if mon.get_tool(tool_id) is None:
                try:
                    mon.use_tool_id(tool_id, _TOOL_NAME)
                except ValueError:
                    continue  # taken meanwhile
                break
        else:
            raise RuntimeError(
                "racecheck: no free sys.monitoring tool id (3, 4 and 5 are all in use); "
                "raw lock acquire()/release() calls will not be seen"
            )
        self.tool_id = tool_id
        ev = mon.events
        try:
            mon.register_callback(tool_id, ev.CALL, _guarded(_on_call))
            mon.register_callback(tool_id, ev.C_RETURN, _guarded(_on_c_return))
            # C_RETURN cannot be enabled without C_RAISE; a raising acquire gets no edge,
            # so C_RAISE has no callback.
            mon.set_events(tool_id, ev.CALL | ev.C_RETURN | ev.C_RAISE)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        tool_id = self.tool_id
        if tool_id is None:
            return
        mon: Any = sys.monitoring  # type: ignore[attr-defined]
        mon.set_events(tool_id, 0)
        mon.register_callback(tool_id, mon.events.CALL, None)
        mon.register_callback(tool_id, mon.events.C_RAISE, None)
        mon.register_callback(tool_id, mon.events.C_RETURN, None)
        mon.free_tool_id(tool_id)
        self.tool_id = None


_DISABLE: Any = sys.monitoring.DISABLE if sys.version_info >= (3, 12) else None  # type: ignore[attr-defined]


def _guarded(callback: Any) -> Any:
    """The callback, made safe at interpreter shutdown: a backend still registered while
    modules are torn down sees its globals turn to None; those errors are dropped then
    (and only then), everything it needs being captured here."""
    is_finalizing = sys.is_finalizing

    def guarded(code: CodeType, offset: int, func: Any, arg0: Any) -> Any:
        try:
            return callback(code, offset, func, arg0)
        except Exception:
            if is_finalizing():
                return None
            raise

    return guarded


def _may_call_lock_methods(code: CodeType) -> bool:
    return not LOCK_METHOD_NAMES.isdisjoint(code.co_names)


def _on_call(code: CodeType, offset: int, func: Any, arg0: Any) -> Any:
    if is_internal_file(code.co_filename):
        return _DISABLE
    found = lock_call(func, arg0)
    if found is None:
        return None if _may_call_lock_methods(code) else _DISABLE
    before_call(*found)
    return None


def _on_c_return(code: CodeType, offset: int, func: Any, arg0: Any) -> Any:
    found = lock_call(func, arg0)
    if found is not None and not is_internal_file(code.co_filename):
        after_return(found[0], found[1], 1)
    return None
