"""racecheck: Go's race detector, goleak and concurrency primitives, for Python threads.

The public API is imported lazily (PEP 562), so ``import racecheck`` (which the pytest
plugin does in every session, enabled or not) costs nothing until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # primitives
    "go": "racecheck.sync.goroutine",
    "Chan": "racecheck.sync.chan",
    "select": "racecheck.sync.chan",
    "after": "racecheck.sync.timers",
    "tick": "racecheck.sync.timers",
    "after_func": "racecheck.sync.timers",
    "Timer": "racecheck.sync.timers",
    "Ticker": "racecheck.sync.timers",
    "WaitGroup": "racecheck.sync.waitgroup",
    "Once": "racecheck.sync.waitgroup",
    "Semaphore": "racecheck.sync.waitgroup",
    "Mutex": "racecheck.sync.locks",
    "RWMutex": "racecheck.sync.locks",
    "Cond": "racecheck.sync.locks",
    "AtomicInt": "racecheck.sync.atomic",
    "AtomicBool": "racecheck.sync.atomic",
    "AtomicRef": "racecheck.sync.atomic",
    "ErrGroup": "racecheck.sync.errgroup",
    "Context": "racecheck.sync.context",
    "background": "racecheck.sync.context",
    "todo": "racecheck.sync.context",
    "with_cancel": "racecheck.sync.context",
    "with_timeout": "racecheck.sync.context",
    "with_deadline": "racecheck.sync.context",
    "with_value": "racecheck.sync.context",
    "with_cancel_cause": "racecheck.sync.context",
    "cause": "racecheck.sync.context",
    "Canceled": "racecheck.sync.context",
    "DeadlineExceeded": "racecheck.sync.context",
    # errors
    "MisuseError": "racecheck.errors",
    "LeakError": "racecheck.errors",
    "DeadlockError": "racecheck.errors",
    # detector control and annotations
    "enable": "racecheck.runtime",
    "disable": "racecheck.runtime",
    "is_enabled": "racecheck.runtime",
    "races": "racecheck.runtime",
    "reset": "racecheck.runtime",
    "findings": "racecheck.runtime",
    "happens_before": "racecheck.runtime",
    "happens_after": "racecheck.runtime",
}

__all__ = [
    "AtomicBool",
    "AtomicInt",
    "AtomicRef",
    "Canceled",
    "Chan",
    "Cond",
    "Context",
    "DeadlineExceeded",
    "DeadlockError",
    "ErrGroup",
    "LeakError",
    "MisuseError",
    "Mutex",
    "Once",
    "RWMutex",
    "Semaphore",
    "Ticker",
    "Timer",
    "WaitGroup",
    "__version__",
    "after",
    "after_func",
    "background",
    "cause",
    "context",
    "disable",
    "enable",
    "findings",
    "go",
    "happens_after",
    "happens_before",
    "is_enabled",
    "leaks",
    "races",
    "reset",
    "select",
    "tick",
    "todo",
    "with_cancel",
    "with_cancel_cause",
    "with_deadline",
    "with_timeout",
    "with_value",
]


def __getattr__(name: str) -> Any:
    if name in ("context", "leaks"):
        module = importlib.import_module(
            "racecheck.sync.context" if name == "context" else "racecheck.liveness.leaks"
        )
        globals()[name] = module
        return module
    try:
        module_name = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'racecheck' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # the real imports, for type checkers and IDEs
    from racecheck import context, leaks
    from racecheck.errors import DeadlockError, LeakError, MisuseError
    from racecheck.runtime import (
        disable,
        enable,
        findings,
        happens_after,
        happens_before,
        is_enabled,
        races,
        reset,
    )
    from racecheck.sync.atomic import AtomicBool, AtomicInt, AtomicRef
    from racecheck.sync.chan import Chan, select
    from racecheck.sync.context import (
        Canceled,
        Context,
        DeadlineExceeded,
        background,
        cause,
        todo,
        with_cancel,
        with_cancel_cause,
        with_deadline,
        with_timeout,
        with_value,
    )
    from racecheck.sync.errgroup import ErrGroup
    from racecheck.sync.goroutine import go
    from racecheck.sync.locks import Cond, Mutex, RWMutex
    from racecheck.sync.timers import Ticker, Timer, after, after_func, tick
    from racecheck.sync.waitgroup import Once, Semaphore, WaitGroup
