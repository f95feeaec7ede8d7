"""The import hook: rewrite the user's modules as they are imported, with a pyc cache.

A ``sys.meta_path`` finder asks the normal ``PathFinder`` where a module lives and, when
the module is plain Python source that the :class:`Selection` picks, returns a spec whose
loader compiles it through :func:`racecheck.instrument.rewrite.compile_instrumented`.
Everything else (the spec's ``origin``, ``__file__``, package ``__path__``,
``get_source`` for tracebacks, resource readers) is the stock ``SourceFileLoader``'s.

Which modules are rewritten (first rule that applies):

1. a module name matching an ``exclude`` glob: never;
2. a module name matching an ``include`` glob: always (even in site-packages);
3. racecheck itself: never;
4. a file not under one of the ``roots`` (the script's directory, the project root): never;
5. a file in the standard library, in ``site-packages``/``dist-packages``, or in a
   virtual environment inside a root (``.venv``, ``venv``, ``.tox``, ``.nox``, or any
   directory holding ``pyvenv.cfg``): never;
6. otherwise: rewritten.

The rewritten code is cached next to the normal bytecode, as pytest does for its
assertion rewriting, in ``__pycache__/<name>.<cache_tag>.racecheck-<version>-<hash>.pyc``
where ``<hash>`` is a digest of the rewriter's and hooks' source, so a new racecheck never
loads stale instrumentation.  The cache is validated by a hash of the source (not its
mtime: two edits within one second must not reuse stale code), written atomically
(a private temporary file then ``os.replace``), and any failure to write it (read-only
directory, ``sys.dont_write_bytecode``) is ignored.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.machinery
import importlib.util
import marshal
import os
import sys
import sysconfig
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, ModuleType

import racecheck
from racecheck._rawsync import allocate_lock, get_ident
from racecheck.instrument import hooks as _hooks_module
from racecheck.instrument import postimport
from racecheck.instrument import rewrite as _rewrite_module

_VENV_DIRS = frozenset({".venv", "venv", ".tox", ".nox", "site-packages", "dist-packages"})
_RACECHECK_DIR = os.path.dirname(os.path.abspath(racecheck.__file__))


def _norm(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(sorted(_norm(d) for d in dirs if d))


_STDLIB_DIRS = _stdlib_dirs()


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def project_root(start: str | os.PathLike[str] | None = None) -> str:
    """The nearest directory at or above ``start`` (default: the current directory)
    holding ``pyproject.toml``, ``setup.py``, ``setup.cfg`` or ``.git``; else ``start``."""
    here = Path(start or os.getcwd()).resolve()
    for candidate in (here, *here.parents):
        if any(
            (candidate / marker).exists()
            for marker in ("pyproject.toml", "setup.py", "setup.cfg", ".git")
        ):
            return str(candidate)
    return str(here)


@dataclass(frozen=True)
class Selection:
    """Which modules to instrument (see the module docstring for the rules)."""

    roots: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def create(
        cls,
        roots: Iterable[str | os.PathLike[str]],
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> Selection:
        return cls(tuple(_norm(os.fspath(r)) for r in roots), tuple(include), tuple(exclude))

    @classmethod
    def for_script(
        cls,
        script: str | os.PathLike[str] | None,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> Selection:
        """The default selection for ``racecheck run``: the script's directory (the
        current directory for ``-m``) and the project root."""
        base = os.path.dirname(os.path.abspath(script)) if script else os.getcwd()
        return cls.create([base, project_root()], include, exclude)

    def selects(self, module: str, filename: str) -> bool:
        if any(fnmatch.fnmatchcase(module, pat) for pat in self.exclude):
            return False
        if any(fnmatch.fnmatchcase(module, pat) for pat in self.include):
            return True
        if module == "racecheck" or module.startswith("racecheck."):
            return False
        path = _norm(filename)
        if _under(path, _RACECHECK_DIR):
            return False
        root = next((r for r in self.roots if _under(path, r)), None)
        if root is None:
            return False
        if any(_under(path, d) and not _under(root, d) for d in _STDLIB_DIRS):
            return False
        relative = path[len(root) :].strip(os.sep).split(os.sep)[:-1]
        current = root
        for part in relative:
            if part in _VENV_DIRS:
                return False
            current = os.path.join(current, part)
            if os.path.exists(os.path.join(current, "pyvenv.cfg")):
                return False
        return True


# --------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------

_lock = allocate_lock()
_rewriter_digest: str | None = None
_stats = {"rewritten": 0, "cached": 0}
_HASH_FLAGS = (0b11).to_bytes(4, "little")  # hash-based pyc, checked: PEP 552 layout


def rewriter_digest() -> str:
    """A digest of the source of the rewriter and the hooks: part of the cache name."""
    global _rewriter_digest
    with _lock:
        if _rewriter_digest is None:
            h = hashlib.sha256()
            for mod in (_rewrite_module, _hooks_module):
                with open(mod.__file__ or "", "rb") as f:
                    h.update(f.read())
            _rewriter_digest = h.hexdigest()[:16]
        return _rewriter_digest


def cache_path(source_path: str) -> str | None:
    """Where the rewritten code of ``source_path`` is cached (None: no caching here)."""
    if sys.implementation.cache_tag is None:
        return None
    try:
        standard = importlib.util.cache_from_source(source_path, optimization="")
    except (NotImplementedError, ValueError):
        return None
    base = standard[: -len(".pyc")]
    return f"{base}.racecheck-{racecheck.__version__}-{rewriter_digest()}.pyc"


def stats() -> dict[str, int]:
    """How many modules were rewritten and how many came from the cache (for tests)."""
    with _lock:
        return dict(_stats)


def _count(key: str) -> None:
    with _lock:
        _stats[key] += 1


def read_cached_code(path: str, source_hash: bytes) -> CodeType | None:
    """The code cached at ``path`` if it was written for source with ``source_hash`` by
    this Python (magic number) and this racecheck; None when missing, stale or corrupt.
    Public for the pytest plugin, which caches the test modules it rewrites itself."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if (
        len(data) < 16
        or data[:4] != importlib.util.MAGIC_NUMBER
        or data[4:8] != _HASH_FLAGS
        or data[8:16] != source_hash
    ):
        return None
    try:
        code = marshal.loads(data[16:])
    except (EOFError, ValueError, TypeError):
        return None
    return code if isinstance(code, CodeType) else None


def write_cached_code(path: str, code: CodeType, source_hash: bytes) -> None:
    """Cache ``code`` at ``path`` for source with ``source_hash``: atomically (a private
    temporary file, then ``os.replace``), silently skipped when it cannot be written or
    when ``sys.dont_write_bytecode`` is set."""
    if sys.dont_write_bytecode:
        return
    data = importlib.util.MAGIC_NUMBER + _HASH_FLAGS + source_hash + marshal.dumps(code)
    tmp = f"{path}.{os.getpid()}.{get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


_read_cache = read_cached_code  # the names older callers used
_write_cache = write_cached_code


def load_instrumented(source_path: str, source: bytes | None = None) -> CodeType:
    """The instrumented code of a source file, from the cache when it is fresh."""
    if source is None:
        with open(source_path, "rb") as f:
            source = f.read()
    source_hash = importlib.util.source_hash(source)
    where = cache_path(source_path)
    if where is not None:
        code = read_cached_code(where, source_hash)
        if code is not None:
            _count("cached")
            return code
    code = _rewrite_module.compile_instrumented(source, source_path)
    _count("rewritten")
    if where is not None:
        write_cached_code(where, code, source_hash)
    return code


# --------------------------------------------------------------------------------------
# Finder and loader
# --------------------------------------------------------------------------------------


class RewritingLoader(importlib.machinery.SourceFileLoader):
    """The stock source loader with our code object instead of the plain compile (and
    never the standard ``.pyc``: instrumented code must not leak into plain runs)."""

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        return load_instrumented(path, self.get_data(path))

    def exec_module(self, module: types.ModuleType) -> None:
        super().exec_module(module)
        # The body has run: every later import of this module is ordered after it.
        from racecheck.instrument.stdlib_imports import module_executed

        module_executed(module.__name__)


# Fidelity: a program that looks at ``type(__loader__).__name__`` sees what plain python
# shows (it is a SourceFileLoader in every other respect too).
RewritingLoader.__name__ = RewritingLoader.__qualname__ = "SourceFileLoader"


class RewritingFinder:
    """The ``sys.meta_path`` entry."""

    def __init__(self, selection: Selection) -> None:
        self.selection = selection

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if (
            spec is None
            or spec.origin is None
            or type(spec.loader) is not importlib.machinery.SourceFileLoader
            or not self.selection.selects(fullname, spec.origin)
        ):
            return None
        loader = RewritingLoader(fullname, spec.origin)
        return importlib.util.spec_from_file_location(
            fullname,
            spec.origin,
            loader=loader,
            submodule_search_locations=spec.submodule_search_locations,
        )

    def invalidate_caches(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<racecheck RewritingFinder {self.selection}>"


_finder: RewritingFinder | None = None


def install(
    selection: Selection | None = None,
    *,
    roots: Iterable[str | os.PathLike[str]] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> RewritingFinder:
    """Put the finder first on ``sys.meta_path`` (replacing an earlier one).  Pass a
    :class:`Selection`, or ``roots``/``include``/``exclude`` to build one."""
    global _finder
    if selection is None:
        selection = Selection.create(roots, include, exclude)
    with _lock:
        if _finder is not None and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        _finder = RewritingFinder(selection)
        sys.meta_path.insert(0, _finder)
    postimport.keep_first()  # its patches apply to rewritten modules too
    return _finder


def uninstall() -> None:
    """Remove the finder; modules already imported stay instrumented."""
    global _finder
    with _lock:
        if _finder is not None and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        _finder = None


def installed() -> RewritingFinder | None:
    return _finder
