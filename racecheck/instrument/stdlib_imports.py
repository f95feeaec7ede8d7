"""The import edge: a module's body has finished executing before any ``import`` of it
returns.

CPython guarantees it (the per-module import lock, then ``sys.modules``), so a worker
thread that imports a module lazily, for the first time or after another thread did,
reads the module's globals ordered after the writes its body made.  Without this edge
every lazily imported module's globals would be reported as racing with their own
initialisation.

Only instrumented modules record accesses, so only they publish: the import hook's loader
calls :func:`module_executed` after running a module's body, and the wrapped
``builtins.__import__`` / ``importlib.import_module`` consume the token of every module an
import statement names, once the import has returned.
"""

from __future__ import annotations

import builtins
import importlib
from typing import Any

from racecheck._rawsync import allocate_lock
from racecheck.instrument.stdlib_common import Patcher
from racecheck.sync import events

_lock = allocate_lock()
_tokens: dict[str, object] = {}
"""Module name -> token published when its body finished (joined over re-executions)."""
_patcher = Patcher()
_orig_import = builtins.__import__
_orig_import_module = importlib.import_module


def module_executed(name: str) -> None:
    """Called by racecheck's loader right after module ``name``'s body ran."""
    if events._hb is None:
        return
    with _lock:
        token = events.publish(_tokens.get(name))
        if token is not None:
            _tokens[name] = token


def _names(module: Any, name: str, fromlist: Any, level: int) -> list[str]:
    """Every module an import statement makes available: the prefixes of an absolute
    ``import a.b.c``, the module itself, and the submodules a ``from`` import names."""
    out: list[str] = []
    if level == 0 and name:
        parts = name.split(".")
        out.extend(".".join(parts[: i + 1]) for i in range(len(parts)))
    base = getattr(module, "__name__", None)
    if isinstance(base, str):
        out.append(base)
        if fromlist:
            out.extend(f"{base}.{item}" for item in fromlist if isinstance(item, str))
    return out


def _consume(names: list[str]) -> None:
    for name in names:
        token = _tokens.get(name)
        if token is not None:
            events.consume(token)


def _import(
    name: str,
    globals: Any = None,
    locals: Any = None,
    fromlist: Any = (),
    level: int = 0,
) -> Any:
    module = _orig_import(name, globals, locals, fromlist, level)
    if _tokens:
        _consume(_names(module, name, fromlist, level))
    return module


def _import_module(name: str, package: str | None = None) -> Any:
    module = _orig_import_module(name, package)
    if _tokens:
        _consume(_names(module, "", (), 1))
    return module


def install_imports() -> None:
    if _patcher:
        return
    _patcher.patch(builtins, "__import__", _import)
    _patcher.patch(importlib, "import_module", _import_module)


def uninstall_imports() -> None:
    _patcher.restore()
    with _lock:
        _tokens.clear()
