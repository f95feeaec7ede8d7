"""Run a script or a ``-m`` module exactly as ``python`` would.

``racecheck run app.py`` must be indistinguishable, to ``app.py``, from ``python app.py``:
the same ``sys.argv``, ``__name__ == "__main__"``, an absolute ``__file__``, ``sys.path[0]``
set to the script's (symlink-resolved) directory or to the cwd for ``-m``, stdin/stdout
untouched, an uncaught exception printed through ``sys.excepthook`` with Python's usual
traceback (none of racecheck's frames) and exit status 1, ``SystemExit`` codes kept.
Checked against real ``python`` in tests/cli.

The one difference is the compiler: ``compile_code(source, filename)`` (default: the
builtin ``compile``) lets the runtime pass the instrumenting compiler, so the main module
is rewritten like every other instrumented module.

Nothing here calls ``sys.exit``: both entry points return the exit status, so the CLI can
still report findings and write reports after the program ended.
"""

from __future__ import annotations

import builtins
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Sequence
from types import CodeType, TracebackType

from racecheck._frames import register_entry

CompileCode = Callable[[str, str], CodeType]


class ProgramNotFound(Exception):
    """The script or module cannot be found or read.  ``str()`` is the one-line message;
    ``exit_code`` is what ``python`` would exit with (2 for a missing file, 1 for an
    unknown module)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def builtin_compile(source: str, filename: str) -> CodeType:
    """The default: exactly what ``python app.py`` compiles."""
    return compile(source, filename, "exec", dont_inherit=True)


def _fresh_main(file: str, loader: object, spec: object, cached: str | None) -> types.ModuleType:
    """A new ``__main__`` module with the attributes Python gives the real one."""
    main = types.ModuleType("__main__")
    main.__dict__.update(
        {
            "__file__": file,
            "__builtins__": builtins,
            "__loader__": loader,
            "__spec__": spec,
            "__cached__": cached,
            "__package__": getattr(spec, "parent", None) if spec is not None else None,
            "__annotations__": {},
        }
    )
    return main


def _user_traceback(tb: TracebackType | None) -> TracebackType | None:
    """Drop the leading frames of this module (the ``exec``), keep everything else."""
    here = __file__
    while tb is not None and tb.tb_frame.f_code.co_filename == here:
        tb = tb.tb_next
    return tb


def _exit_status(exc: SystemExit) -> int:
    """Python's own rule for ``SystemExit``: None -> 0, an int -> that int, anything
    else is printed to stderr and gives 1."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    try:
        sys.stderr.write(f"{code}\n")
        sys.stderr.flush()
    except Exception:  # stderr closed by the program: nothing more to say
        pass
    return 1


def _report_uncaught(exc: BaseException) -> None:
    tb = _user_traceback(exc.__traceback__)
    exc.__traceback__ = tb
    try:
        sys.excepthook(type(exc), exc, tb)
    except Exception:  # a broken user excepthook: Python falls back to the default
        sys.__excepthook__(type(exc), exc, tb)
    try:
        sys.stderr.flush()
    except Exception:
        pass


def _execute(code: CodeType, main: types.ModuleType) -> int:
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    except SystemExit as exc:
        return _exit_status(exc)
    except KeyboardInterrupt as exc:
        _report_uncaught(exc)
        return 130  # what a shell reports for SIGINT
    except BaseException as exc:
        _report_uncaught(exc)
        return 1
    return 0


register_entry(_execute)  # report stacks end at the user's __main__


def _compile_or_report(
    compile_code: CompileCode, source: str, filename: str
) -> tuple[CodeType | None, int]:
    try:
        return compile_code(source, filename), 0
    except SyntaxError as exc:  # Python's usual report: no traceback, just the caret
        exc.__traceback__ = None
        sys.excepthook(type(exc), exc, None)
        return None, 1


def run_script(
    path: str, argv: Sequence[str] = (), *, compile_code: CompileCode | None = None
) -> int:
    """Run ``path`` as ``python path *argv`` would; return the exit status.

    Raises :class:`ProgramNotFound` (before touching any interpreter state) when the
    file cannot be read.
    """
    compile_code = compile_code or builtin_compile
    filename = os.path.abspath(path)
    if os.path.isdir(filename):
        raise ProgramNotFound(
            f"can't run directory '{path}': give a .py file, or -m for a package", 2
        )
    try:
        with open(filename, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ProgramNotFound(
            f"can't open file '{filename}': [Errno {exc.errno}] {exc.strerror}", 2
        ) from None
    try:
        source = importlib.util.decode_source(raw)
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        raise ProgramNotFound(f"can't decode file '{filename}': {exc}", 1) from None

    sys.argv[:] = [path, *argv]
    script_dir = os.path.dirname(os.path.realpath(filename))
    if sys.path:
        sys.path[0] = script_dir
    else:
        sys.path.append(script_dir)
    code, status = _compile_or_report(compile_code, source, filename)
    if code is None:
        return status
    loader = importlib.machinery.SourceFileLoader("__main__", filename)
    return _execute(code, _fresh_main(filename, loader, None, None))


def _find_main_spec(name: str) -> importlib.machinery.ModuleSpec:
    """``python -m``'s lookup: the module, or a package's ``__main__``."""
    if name.startswith("."):
        raise ProgramNotFound("Relative module names not supported", 1)
    try:
        spec = importlib.util.find_spec(name)
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name and name.startswith(exc.name):
            raise ProgramNotFound(f"No module named {name}", 1) from None
        raise ProgramNotFound(
            f"Error while finding module specification for {name!r} ({type(exc).__name__}: {exc})",
            1,
        ) from None
    except Exception as exc:  # the parent package's __init__ raised
        raise ProgramNotFound(
            f"Error while finding module specification for {name!r} ({type(exc).__name__}: {exc})",
            1,
        ) from None
    if spec is None:
        raise ProgramNotFound(f"No module named {name}", 1)
    if spec.submodule_search_locations is not None:
        if name == "__main__" or name.endswith(".__main__"):
            raise ProgramNotFound(f"Cannot use package as __main__ module ({name})", 1)
        try:
            return _find_main_spec(f"{name}.__main__")
        except ProgramNotFound as exc:
            raise ProgramNotFound(
                f"{exc}; '{name}' is a package and cannot be directly executed", 1
            ) from None
    return spec


def run_module(
    name: str, argv: Sequence[str] = (), *, compile_code: CompileCode | None = None
) -> int:
    """Run module ``name`` as ``python -m name *argv`` would; return the exit status.

    Raises :class:`ProgramNotFound` when the module cannot be found.
    """
    compile_code = compile_code or builtin_compile
    cwd = os.getcwd()
    if sys.path:
        sys.path[0] = cwd
    else:
        sys.path.append(cwd)
    spec = _find_main_spec(name)
    loader = spec.loader
    if loader is None:
        raise ProgramNotFound(f"No module named {name} (namespace package)", 1)
    origin = spec.origin or name
    code: CodeType | None
    source = None
    get_source = getattr(loader, "get_source", None)
    try:
        if get_source is not None:
            source = get_source(spec.name)
        if source is None:
            get_code = getattr(loader, "get_code", None)
            code = get_code(spec.name) if get_code is not None else None
            if code is None:
                raise ProgramNotFound(f"No code object available for {spec.name}", 1)
    except ImportError as exc:
        raise ProgramNotFound(f"{type(exc).__name__}: {exc}", 1) from None
    sys.argv[:] = [origin, *argv]
    if source is not None:
        code, status = _compile_or_report(compile_code, source, origin)
        if code is None:
            return status
    assert code is not None
    main = _fresh_main(origin, loader, spec, spec.cached)
    return _execute(code, main)
