"""Run a function right after a module is first imported.

racecheck patches a few stdlib modules (asyncio's event loop, ``multiprocessing.pool``)
that most programs never import; importing them eagerly cost ~45 ms and several MB at
every start.  :func:`when_imported` patches at once if the module is already loaded,
else when the program imports it: a meta-path finder at the front of ``sys.meta_path``
finds the real spec (asking the finders behind it), wraps its loader's ``exec_module``
for that one import, and after the module body ran puts the original loader back on the
module (``__loader__``/``__spec__.loader`` are what the program would have seen) and
calls the waiting functions.  The import lock of the module serialises the exec; our
own lock only guards the table of waiting functions.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from racecheck._rawsync import allocate_lock

Callback = Callable[[ModuleType], None]

_lock = allocate_lock()
_waiting: dict[str, list[Callback]] = {}


class _Loader:
    """Wraps the real loader for one import (see the module docstring)."""

    def __init__(self, real: Any, name: str) -> None:
        self._real = real
        self._name = name

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self._real, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._real
        if module.__spec__ is not None:
            module.__spec__.loader = self._real
        self._real.exec_module(module)
        if sys.modules.get(self._name) is not module:
            return  # a module built by hand from the spec, not the import: keep waiting
        with _lock:
            callbacks = _waiting.pop(self._name, [])
        _run(callbacks, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Finder:
    """A meta-path finder (duck-typed: importlib.abc costs an import of its own)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in _waiting:  # a lock-free dict read
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, _Finder):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec: ModuleSpec | None = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader, fullname)  # type: ignore[assignment]
        return spec


_finder = _Finder()


def _run(callbacks: list[Callback], module: ModuleType) -> None:
    """Run the patches; a failing one is reported, never raised into the program's
    import (which would change what the program does)."""
    for callback in callbacks:
        try:
            callback(module)
        except Exception as exc:  # pragma: no cover - a bug of ours, made visible
            sys.stderr.write(
                f"racecheck: internal error patching {module.__name__}: "
                f"{type(exc).__name__}: {exc}\n"
            )


def when_imported(name: str, callback: Callback) -> None:
    """Call ``callback(module)`` now if ``name`` is imported, else right after it is."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    with _lock:
        _waiting.setdefault(name, []).append(callback)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
    module = sys.modules.get(name)  # imported meanwhile, before the finder was in place
    if module is not None:
        with _lock:
            pending = _waiting.get(name, [])
            mine = callback in pending
            if mine:
                pending.remove(callback)
        if mine:
            callback(module)


def keep_first() -> None:
    """Move the finder back in front of ``sys.meta_path`` if something was inserted
    before it (racecheck's own rewriting finder is, after start-up): a finder in front
    that claims a waiting module would bypass the patch.  Ours asks the others anyway."""
    with _lock:
        if _finder in sys.meta_path and sys.meta_path[0] is not _finder:
            sys.meta_path.remove(_finder)
            sys.meta_path.insert(0, _finder)


def cancel(callback: Callback) -> None:
    """Forget ``callback`` wherever it waits; drops the finder when nothing waits."""
    with _lock:
        for name in list(_waiting):
            pending = [c for c in _waiting[name] if c is not callback]
            if pending:
                _waiting[name] = pending
            else:
                del _waiting[name]
        if not _waiting and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
