"""Patches of modules the program imports later: applied right after the import, with
the module looking exactly as it would without racecheck."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from racecheck.instrument import postimport


@pytest.fixture
def fresh_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"rc_post_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("VALUE = 41\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_callback_runs_right_after_first_import(fresh_module: str) -> None:
    seen: list[int] = []

    def patch(module: ModuleType) -> None:
        seen.append(module.VALUE)
        module.VALUE += 1

    postimport.when_imported(fresh_module, patch)
    try:
        assert seen == []
        module = __import__(fresh_module)
        assert seen == [41]
        assert module.VALUE == 42
        # the module's loader is the real one, as without racecheck
        assert type(module.__loader__).__name__ == "SourceFileLoader"
        assert type(module.__spec__.loader).__name__ == "SourceFileLoader"
        __import__(fresh_module)
        assert seen == [41]  # once
    finally:
        postimport.cancel(patch)


def test_already_imported_runs_now() -> None:
    seen: list[str] = []
    postimport.when_imported("json", lambda m: seen.append(m.__name__))
    assert seen == ["json"]


def test_cancel_forgets_and_removes_the_finder(fresh_module: str) -> None:
    seen: list[object] = []

    def patch(module: ModuleType) -> None:
        seen.append(module)

    postimport.when_imported(fresh_module, patch)
    assert any(type(f).__name__ == "_Finder" for f in sys.meta_path)
    postimport.cancel(patch)
    assert not any(type(f).__name__ == "_Finder" for f in sys.meta_path)
    __import__(fresh_module)
    assert seen == []


def test_asyncio_imported_after_enable_gets_its_edge() -> None:
    """In a fresh interpreter: racecheck enabled first, asyncio imported later, and
    ``call_soon_threadsafe`` is patched then (and unpatched by disable)."""
    code = textwrap.dedent(
        """
        import sys
        assert "asyncio" not in sys.modules
        import racecheck
        racecheck.enable()
        import asyncio.base_events as be
        fn = be.BaseEventLoop.__dict__["call_soon_threadsafe"]
        print(fn.__code__.co_filename.endswith("stdlib_futures.py"))
        racecheck.disable()
        fn = be.BaseEventLoop.__dict__["call_soon_threadsafe"]
        print(fn.__code__.co_filename.endswith("base_events.py"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["True", "True"]


def test_a_module_built_by_hand_from_the_spec_does_not_use_up_the_patch(
    fresh_module: str,
) -> None:
    import importlib.util

    seen: list[object] = []

    def patch(module: ModuleType) -> None:
        seen.append(module)

    postimport.when_imported(fresh_module, patch)
    try:
        spec = importlib.util.find_spec(fresh_module)
        assert spec is not None and spec.loader is not None
        by_hand = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(by_hand)
        assert seen == []  # not the imported module
        real = __import__(fresh_module)
        assert seen == [real]
    finally:
        postimport.cancel(patch)


def test_the_finder_stays_in_front_of_racecheck_s_rewriting_finder(fresh_module: str) -> None:
    """The rewriting finder is installed after the stdlib patches and inserts itself at
    the front; a patch waiting for a module it rewrites must still run."""
    from racecheck.instrument import importhook

    seen: list[object] = []

    def patch(module: ModuleType) -> None:
        seen.append(module)

    postimport.when_imported(fresh_module, patch)
    try:
        importhook.install(include=[fresh_module])
        try:
            assert type(sys.meta_path[0]).__name__ == "_Finder"
            module = __import__(fresh_module)
            assert seen == [module]
            assert hasattr(module, "__rc__")  # rewritten as well
        finally:
            importhook.uninstall()
    finally:
        postimport.cancel(patch)
