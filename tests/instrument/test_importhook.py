"""The import hook: which modules are rewritten, and the rewritten-code cache."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from pathlib import Path

import pytest

import racecheck
from racecheck.instrument import importhook, rewrite
from racecheck.instrument.importhook import Selection


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch):
    """A project root on sys.path with a package, a venv and a plain module; the finder
    installed for it.  Everything is undone afterwards."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # PYTHONDONTWRITEBYTECODE
    root = tmp_path / "proj"
    _write(root / "rcapp" / "__init__.py", "from . import helper\nVALUE = helper.twice(2)\n")
    _write(root / "rcapp" / "helper.py", "def twice(x):\n    return x * 2\n")
    _write(root / "rcplain.py", "counter = 0\ndef bump():\n    global counter\n    counter += 1\n")
    _write(root / ".venv" / "lib" / "site-packages" / "rcvendored.py", "X = 1\n")
    _write(root / "envlike" / "pyvenv.cfg", "home = /usr\n")
    _write(root / "envlike" / "rcinenv.py", "X = 1\n")
    outside = tmp_path / "elsewhere"
    _write(outside / "rcoutside.py", "X = 1\n")
    paths = [
        str(root),
        str(outside),
        str(root / ".venv" / "lib" / "site-packages"),
        str(root / "envlike"),
    ]
    sys.path[:0] = paths
    importlib.invalidate_caches()
    before = set(sys.modules)
    finder = importhook.install(Selection.create([root]))
    try:
        yield root
    finally:
        importhook.uninstall()
        assert finder not in sys.meta_path
        for p in paths:
            sys.path.remove(p)
        for name in set(sys.modules) - before:
            del sys.modules[name]
        importlib.invalidate_caches()


def _purge(*names: str) -> None:
    for name in list(sys.modules):
        if name in names or any(name.startswith(n + ".") for n in names):
            del sys.modules[name]


def _instrumented(module) -> bool:
    return "__rc__" in vars(module)


def test_modules_under_the_root_are_rewritten(project):
    import rcplain

    assert _instrumented(rcplain)
    assert rcplain.__file__ == str(project / "rcplain.py")
    assert rcplain.__spec__.origin == rcplain.__file__
    assert isinstance(rcplain.__loader__, importhook.RewritingLoader)
    assert "def bump" in inspect.getsource(rcplain)
    rcplain.bump()
    assert rcplain.counter == 1


def test_packages_and_relative_imports(project):
    import rcapp

    assert _instrumented(rcapp) and _instrumented(rcapp.helper)
    assert rcapp.VALUE == 4
    assert rcapp.__path__ == [str(project / "rcapp")]


def test_outside_roots_venvs_are_not_rewritten(project):
    import rcinenv
    import rcoutside
    import rcvendored

    assert not _instrumented(rcoutside)
    assert not _instrumented(rcvendored)
    assert not _instrumented(rcinenv)


def test_exclude_and_include_globs_take_precedence(project):
    importhook.install(Selection.create([project], include=["rcvendored"], exclude=["rcapp*"]))
    import rcapp
    import rcvendored

    assert not _instrumented(rcapp) and not _instrumented(rcapp.helper)
    assert _instrumented(rcvendored)


def test_selection_rules():
    root = os.path.dirname(os.path.dirname(os.path.abspath(racecheck.__file__)))
    sel = Selection.create([root, "/"])
    assert not sel.selects("json", json.__file__)  # stdlib, even under a root
    assert not sel.selects("pytest", pytest.__file__)  # site-packages
    chan = os.path.join(os.path.dirname(racecheck.__file__), "sync", "chan.py")
    assert not sel.selects("racecheck.sync.chan", chan)
    assert Selection.create([root], include=["racecheck.*"]).selects("racecheck.sync.chan", chan)
    assert Selection.create(["/"], include=["json"]).selects("json", json.__file__)
    assert not Selection.create([root], include=["*"], exclude=["app"]).selects("app", "/x/app.py")


def test_import_hook_keyword_install_builds_a_selection(tmp_path):
    finder = importhook.install(roots=[tmp_path], include=["a*"], exclude=["b*"])
    try:
        assert finder.selection.roots == (os.path.normcase(os.path.realpath(tmp_path)),)
        assert finder.selection.include == ("a*",) and finder.selection.exclude == ("b*",)
        assert sys.meta_path[0] is finder
        assert importhook.installed() is finder
    finally:
        importhook.uninstall()
    assert importhook.installed() is None


def test_second_import_reuses_the_cache(project, monkeypatch):
    import rcplain

    cache = importhook.cache_path(rcplain.__file__)
    assert cache is not None and os.path.exists(cache)
    name = os.path.basename(cache)
    assert name.startswith(f"rcplain.{sys.implementation.cache_tag}.racecheck-")
    assert name.endswith(f"-{importhook.rewriter_digest()}.pyc")
    assert racecheck.__version__ in name
    # The standard bytecode cache is never written with instrumented code.
    assert not os.path.exists(importlib.util.cache_from_source(rcplain.__file__))

    def fail(*args, **kwargs):
        raise AssertionError("rewrote again")

    monkeypatch.setattr(rewrite, "compile_instrumented", fail)
    before = importhook.stats()
    _purge("rcplain")
    import rcplain as again

    after = importhook.stats()
    assert _instrumented(again)
    assert after["cached"] == before["cached"] + 1
    assert after["rewritten"] == before["rewritten"]


def test_changed_source_is_rewritten_again(project):
    import rcplain

    before = importhook.stats()
    _write(project / "rcplain.py", "counter = 41\n")
    _purge("rcplain")
    importlib.invalidate_caches()
    import rcplain as changed

    assert changed.counter == 41
    assert importhook.stats()["rewritten"] == before["rewritten"] + 1
    assert rcplain is not changed


def test_cache_write_failures_are_ignored(project, monkeypatch):
    (project / "__pycache__").write_text("not a directory")
    import rcplain

    assert _instrumented(rcplain)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    import rcapp

    assert _instrumented(rcapp)
    assert not os.path.exists(importhook.cache_path(rcapp.__file__))


def test_corrupt_cache_is_rewritten(project):
    import rcplain

    cache = importhook.cache_path(rcplain.__file__)
    Path(cache).write_bytes(b"garbage")
    _purge("rcplain")
    before = importhook.stats()
    import rcplain as again

    assert _instrumented(again)
    assert importhook.stats()["rewritten"] == before["rewritten"] + 1


def test_loader_looks_like_the_stock_one(project):
    import rcplain

    assert type(rcplain.__loader__).__name__ == "SourceFileLoader"
    assert isinstance(rcplain.__loader__, importlib.machinery.SourceFileLoader)
    assert rcplain.__cached__ == importlib.util.cache_from_source(rcplain.__file__)
