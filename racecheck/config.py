"""racecheck's options and where they come from.

One :class:`Options` value describes a run.  It is built from four layers, highest
precedence first, exactly as the issue asks (and as Go users know from ``GORACE``):

1. command-line flags (``racecheck run --exitcode 1 ...``, or the pytest plugin's flags);
2. the ``RACECHECK_OPTIONS`` environment variable, GORACE style:
   ``RACECHECK_OPTIONS="exitcode=1 halt_on_error=1 log_path=/tmp/x"`` (values may be
   shell-quoted; list values are comma separated: ``include=app.*,lib.*``);
3. ``[tool.racecheck]`` in the nearest ``pyproject.toml`` (searched upwards from the
   current directory); relative paths there are relative to that file's directory;
4. the defaults below.

A higher layer *replaces* a lower one key by key (lists are not concatenated: a CLI
``--include`` means "exactly these").  Unknown keys and bad values raise
:class:`OptionsError` with a one-line message naming the layer, so a typo in CI config
fails loudly instead of silently running without the option.

Key names are the field names; ``-`` and ``_`` are interchangeable, and ``report`` is an
alias of ``reports`` (it is the CLI flag's name).
"""

from __future__ import annotations

import os
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_VAR = "RACECHECK_OPTIONS"
REPORT_FORMATS = ("json", "sarif")
COLOR_CHOICES = ("auto", "yes", "no")


class OptionsError(ValueError):
    """A bad option: unknown key or bad value.  The message is one line, ready for the
    user (the CLI turns it into a usage error, exit status 2)."""


@dataclass
class Options:
    exitcode: int = 66
    """Exit status when findings exist and the program itself would have exited 0
    (Go's ``exitcode``)."""
    halt_on_error: bool = False
    """Exit after the first report (Go's ``halt_on_error``)."""
    log_path: str | None = None
    """Write reports to this file (appended) instead of stderr; never to stdout."""
    strip_path_prefix: str = ""
    """Removed from the front of file names in reports (Go's ``strip_path_prefix``)."""
    history_size: int = 1
    """Bound on the per-thread access history the engine keeps for the previous access's
    stack (Go's ``history_size``: larger remembers more, costs more memory).  Its exact
    unit is the engine's; any integer >= 0."""
    suppressions: str | None = None
    """TSan-style suppressions file (``race:module.function`` lines)."""
    reports: list[tuple[str, str]] = field(default_factory=list)
    """Machine-readable reports to write at exit: ``(format, path)``, format json/sarif."""
    include: list[str] = field(default_factory=list)
    """Module globs to instrument in addition to the defaults."""
    exclude: list[str] = field(default_factory=list)
    """Module globs never to instrument."""
    leaks: bool = False
    """Report threads still running when the program ends (``racecheck run --leaks``)."""
    max_wait: float = 1.0
    """Seconds the leak check waits for threads that are finishing."""
    color: str = "auto"
    """``auto`` (rich on a TTY), ``yes`` or ``no``."""
    detect: bool = True
    """Run the race detector (off: only the leak/deadlock checks, or nothing)."""


_FIELDS = {f.name for f in fields(Options)}
_ALIASES = {"report": "reports"}


def _normalise_key(key: str, where: str) -> str:
    name = key.strip().replace("-", "_")
    name = _ALIASES.get(name, name)
    if name not in _FIELDS:
        valid = ", ".join(sorted(_FIELDS))
        raise OptionsError(f"{where}: unknown option {key!r} (valid options: {valid})")
    return name


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    raise OptionsError(f"{where}: expected a boolean (1/0, true/false), got {value!r}")


def _as_int(value: Any, where: str, low: int, high: int | None) -> int:
    if isinstance(value, bool):
        raise OptionsError(f"{where}: expected an integer, got {value!r}")
    try:
        number = int(value) if isinstance(value, int | str) else None
    except ValueError:
        number = None
    if number is None:
        raise OptionsError(f"{where}: expected an integer, got {value!r}")
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise OptionsError(f"{where}: must be {bound}, got {number}")
    return number


def _as_float(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise OptionsError(f"{where}: expected a number of seconds, got {value!r}")
    try:
        number = float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        number = None
    if number is None or number != number or number < 0:
        raise OptionsError(f"{where}: expected a number of seconds >= 0, got {value!r}")
    return number


def _as_str_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple):
        items = []
        for item in value:
            if not isinstance(item, str):
                raise OptionsError(f"{where}: expected strings, got {item!r}")
            items.append(item.strip())
    else:
        raise OptionsError(f"{where}: expected a list of strings, got {value!r}")
    return [item for item in items if item]


def parse_report_spec(spec: str, where: str = "--report") -> tuple[str, str]:
    """``json:out/report.json`` -> ``("json", "out/report.json")``."""
    fmt, sep, path = spec.partition(":")
    fmt = fmt.strip().lower()
    if not sep or not path:
        raise OptionsError(
            f"{where}: expected FORMAT:PATH (e.g. json:racecheck.json), got {spec!r}"
        )
    if fmt not in REPORT_FORMATS:
        raise OptionsError(
            f"{where}: unknown report format {fmt!r} (choose from {', '.join(REPORT_FORMATS)})"
        )
    _check_writable(path, where)
    return fmt, path


def _check_writable(path: str, where: str) -> None:
    """Fail at start-up, not after the program ran, when a report cannot be written:
    the path is a directory, or its nearest existing ancestor is not a writable
    directory (missing parent directories are created when the report is written)."""
    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise OptionsError(f"{where}: cannot write report {path!r}: it is a directory")
    ancestor = os.path.dirname(target)
    while not os.path.exists(ancestor):
        parent = os.path.dirname(ancestor)
        if parent == ancestor:
            break
        ancestor = parent
    if not os.path.isdir(ancestor):
        raise OptionsError(
            f"{where}: cannot write report {path!r}: {ancestor!r} is not a directory"
        )
    if not os.access(ancestor, os.W_OK):
        raise OptionsError(f"{where}: cannot write report {path!r}: {ancestor!r} is not writable")


def _as_reports(value: Any, where: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(value, str):
        value = _as_str_list(value, where)
    if not isinstance(value, list | tuple):
        raise OptionsError(f"{where}: expected FORMAT:PATH strings, got {value!r}")
    for item in value:
        if isinstance(item, tuple | list) and len(item) == 2:
            out.append(parse_report_spec(f"{item[0]}:{item[1]}", where))
        elif isinstance(item, str):
            out.append(parse_report_spec(item, where))
        else:
            raise OptionsError(f"{where}: expected FORMAT:PATH, got {item!r}")
    return out


def _as_optional_path(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise OptionsError(f"{where}: expected a path, got {value!r}")
    return value or None


def convert(name: str, value: Any, where: str) -> Any:
    """Check and convert one raw value (a string from the environment, a TOML value, a
    CLI value) to the type of field ``name``."""
    label = f"{where}: {name}"
    if name == "exitcode":
        return _as_int(value, label, 0, 255)
    if name == "history_size":
        return _as_int(value, label, 0, None)
    if name in ("halt_on_error", "leaks", "detect"):
        return _as_bool(value, label)
    if name == "max_wait":
        return _as_float(value, label)
    if name in ("log_path", "suppressions"):
        return _as_optional_path(value, label)
    if name == "strip_path_prefix":
        if not isinstance(value, str):
            raise OptionsError(f"{label}: expected a string, got {value!r}")
        return value
    if name in ("include", "exclude"):
        return _as_str_list(value, label)
    if name == "reports":
        return _as_reports(value, label)
    if name == "color":
        text = str(value).strip().lower() if isinstance(value, str) else value
        if text not in COLOR_CHOICES:
            raise OptionsError(f"{label}: expected one of auto, yes, no, got {value!r}")
        return text
    raise OptionsError(f"{where}: unknown option {name!r}")  # pragma: no cover


def parse_env(text: str, where: str = ENV_VAR) -> dict[str, Any]:
    """Parse GORACE-style ``key=value key2=value2`` into converted values."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise OptionsError(f"{where}: cannot parse {text!r}: {exc}") from None
    out: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise OptionsError(f"{where}: expected key=value, got {word!r}")
        name = _normalise_key(key, where)
        out[name] = convert(name, value, where)
    return out


def find_pyproject(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start`` (default: the cwd)."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


_PATH_KEYS = ("log_path", "suppressions")


def parse_pyproject(path: Path) -> dict[str, Any]:
    """``[tool.racecheck]`` of ``path``, converted; relative paths made relative to the
    file's directory so the config means the same from any working directory."""
    where = f"{path} [tool.racecheck]"
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise OptionsError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise OptionsError(f"{path}: cannot read: {exc.strerror}") from None
    table = data.get("tool", {}).get("racecheck", {})
    if not isinstance(table, dict):
        raise OptionsError(f"{where}: expected a table")
    base = path.parent
    out: dict[str, Any] = {}
    for key, raw in table.items():
        name = _normalise_key(key, where)
        value = convert(name, raw, where)
        if name in _PATH_KEYS and value is not None:
            value = str(base / value)
        elif name == "reports":
            value = [(fmt, str(base / p)) for fmt, p in value]
        out[name] = value
    return out


def load_options(
    cli: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    start: str | os.PathLike[str] | None = None,
    pyproject: Path | None | bool = True,
) -> Options:
    """Build the run's :class:`Options` from all layers.

    ``cli`` holds only the flags the user actually gave (``None`` values are ignored, so a
    click callback can pass its parameters straight through).  ``env`` defaults to
    ``os.environ``; ``start`` is where the pyproject search begins; ``pyproject=False``
    skips that layer, a Path uses that file.
    """
    merged: dict[str, Any] = {}
    if pyproject is True:
        found = find_pyproject(start)
        if found is not None:
            merged.update(parse_pyproject(found))
    elif isinstance(pyproject, Path):
        merged.update(parse_pyproject(pyproject))
    environ = os.environ if env is None else env
    text = environ.get(ENV_VAR, "")
    if text.strip():
        merged.update(parse_env(text))
    for key, value in (cli or {}).items():
        if value is None:
            continue
        name = _normalise_key(key, "command line")
        if name in ("include", "exclude", "reports") and isinstance(value, list | tuple):
            if not value:
                continue  # a repeatable flag not given at all
        merged[name] = convert(name, value, "command line")
    return replace(Options(), **merged)
