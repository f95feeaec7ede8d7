"""Detection on and off: the one place that wires racecheck's parts together.

``enable(options)`` creates the happens-before engine and connects it to everything
that produces events — the primitives' hook points (``sync.events``), the rewritten
code's hooks (``instrument.hooks``), the stdlib patches (``instrument.stdlib``), the
raw-lock backend chosen for this interpreter (``instrument.backends``) and the import
hook that rewrites the user's modules — plus the lock-order and deadlock checkers.
``disable()`` undoes all of it in reverse order.  The CLI and the pytest plugin are
both built on these few functions, which are also the public embedding API
(``racecheck.enable()``, ``racecheck.races()``...).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from racecheck._rawsync import allocate_lock
from racecheck.config import Options
from racecheck.report.findings import Finding, RaceFinding
from racecheck.sync import events

FindingCallback = Callable[[Finding], object]


@dataclass
class _Session:
    options: Options
    engine: Any
    backend: Any
    import_hook: Any
    lockorder: Any
    deadlock: Any
    callbacks: list[FindingCallback]
    other: list[Finding] = field(default_factory=list)
    """Findings that are not races (lock-order inversions, deadlocks), in order."""


_switch = allocate_lock()
_session: _Session | None = None
_annotations_lock = allocate_lock()
_annotations: dict[Hashable, object] = {}


def core_name() -> str:
    """Which engine core is active: ``native`` (the C hot path) or ``python``."""
    from racecheck.engine.core import core_name as selected

    return selected()


def _wants_backend() -> bool:
    """Whether to run the raw-lock capture backend (``instrument/backends``).

    Locks created after racecheck starts are observed wrappers and ``lock.acquire()`` in
    rewritten code is captured at its call site, so the backend only adds raw locks made
    *before* racecheck started and called from uninstrumented code.  On 3.12+ it is
    nearly free (``sys.monitoring`` disables every call site that is not a lock call).
    On 3.11 it is ``sys.setprofile``, a Python call on every call of the program (measured
    ~6x CPU on attribute-heavy code), so there it is opt-in: ``RACECHECK_SETPROFILE=1``.
    """
    if sys.version_info >= (3, 12):
        return True
    return os.environ.get("RACECHECK_SETPROFILE", "") == "1"


def _load_suppressions(path: str | None) -> list[str]:
    if not path:
        return []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        from racecheck.config import OptionsError

        raise OptionsError(f"cannot read suppressions file {path!r}: {exc.strerror}") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def enable(
    options: Options | None = None,
    *,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    deadlock: Literal["raise", "exit", "off"] = "raise",
    on_finding: FindingCallback | None = None,
    instrument_imports: bool = True,
) -> None:
    """Start detecting races (and lock-order inversions, and deadlocks).

    ``roots``: directories whose modules are instrumented when imported (default: the
    project root of the current directory).  ``deadlock``: ``"raise"`` raises
    ``DeadlockError`` in the blocked threads (in-process use: tests fail instead of
    hanging), ``"exit"`` reports and exits with status 2 like Go (``racecheck run``).
    ``on_finding`` is called once for each new finding as it is found.  Idempotent:
    enabling twice keeps the first session.
    """
    global _session
    options = options or Options()
    with _switch:
        if _session is not None:
            return
        from racecheck.engine.core import make_detector
        from racecheck.instrument import hooks, importhook, stdlib
        from racecheck.instrument.backends.base import choose_backend
        from racecheck.liveness.lockorder import LockOrderChecker

        engine = make_detector(
            history_size=options.history_size,
            suppressions=_load_suppressions(options.suppressions),
        )
        session = _Session(options, engine, None, None, None, None, [])
        if on_finding is not None:
            session.callbacks.append(on_finding)
        engine.add_race_callback(lambda f: _found(session, f))

        events.set_happens_before(engine)
        hooks.install(engine)
        stdlib.install(engine)
        if _wants_backend():
            backend = choose_backend()
            try:
                backend.start()
            except RuntimeError as exc:  # e.g. every free sys.monitoring tool id is taken
                sys.stderr.write(
                    f"racecheck: warning: raw-lock capture unavailable ({exc}); locks used "
                    "outside instrumented code are invisible to the detector\n"
                )
            else:
                session.backend = backend
        session.lockorder = LockOrderChecker(on_inversion=lambda f: _found(session, f, True))
        events.set_lock_listener(session.lockorder)
        if deadlock != "off":
            from racecheck.liveness.deadlock import DeadlockDetector

            on_deadlock = _deadlock_exit if deadlock == "exit" else _found
            session.deadlock = DeadlockDetector(
                on_deadlock=lambda f: on_deadlock(session, f, True), mode=deadlock
            ).start()
        if instrument_imports:
            dirs = [str(Path(r).resolve()) for r in (roots or [importhook.project_root()])]
            session.import_hook = importhook.install(
                roots=dirs, include=options.include, exclude=options.exclude
            )
        _session = session


def disable() -> None:
    """Stop detecting; findings so far stay readable until the next ``enable``."""
    global _session, _last
    with _switch:
        session = _session
        if session is None:
            return
        from racecheck.instrument import hooks, importhook, stdlib

        if session.import_hook is not None:
            importhook.uninstall()
        if session.deadlock is not None:
            session.deadlock.stop()
        events.set_lock_listener(None)
        if session.backend is not None:
            session.backend.stop()
        stdlib.uninstall()
        hooks.uninstall()
        events.set_happens_before(None)
        _session = None
        _last = session
    with _annotations_lock:
        _annotations.clear()


_last: _Session | None = None


def is_enabled() -> bool:
    """True between ``enable()`` and ``disable()``."""
    return _session is not None


def _current() -> _Session | None:
    return _session or _last


def _found(session: _Session, finding: Finding, other: bool = False) -> None:
    if other:
        with _annotations_lock:
            session.other.append(finding)
    for callback in list(session.callbacks):
        callback(finding)
    if session.options.halt_on_error:
        _halt(session, finding)


def _deadlock_exit(session: _Session, finding: Finding, other: bool = True) -> None:
    """In ``exit`` mode the deadlock checker prints the report and exits with status 2
    itself; all that is left to do here is record it and write the ``--report`` files,
    which the normal end of the run will never reach."""
    from racecheck.report.console import Reporter

    with _annotations_lock:
        session.other.append(finding)
    Reporter(session.options).write_reports(findings())


def _halt(session: _Session, finding: Finding) -> None:
    """Go's ``halt_on_error``: report and exit at the first finding."""
    from racecheck.report.console import Reporter

    reporter = Reporter(session.options)
    if not session.callbacks:
        reporter.finding(finding)
    found = findings()
    reporter.summary(found)
    reporter.write_reports(found)
    sys.stderr.flush()
    os._exit(session.options.exitcode)


def add_finding_callback(callback: FindingCallback) -> None:
    """Call ``callback(finding)`` for every new finding of the current session."""
    session = _session
    if session is not None:
        session.callbacks.append(callback)


def races() -> list[RaceFinding]:
    """The data races found so far (deduplicated by pair of source locations)."""
    session = _current()
    return list(session.engine.races()) if session is not None else []


def findings() -> list[Finding]:
    """Every finding so far: races, then lock-order inversions and deadlocks."""
    session = _current()
    if session is None:
        return []
    with _annotations_lock:
        other = list(session.other)
    return [*session.engine.races(), *other]


def reset() -> None:
    """Forget the findings so far (the pytest plugin does this between tests)."""
    session = _current()
    if session is None:
        return
    session.engine.reset()
    with _annotations_lock:
        session.other.clear()


def happens_before(key: Hashable) -> None:
    """Annotate synchronisation racecheck cannot see (TSan's AnnotateHappensBefore):
    everything the calling thread did so far happens before whatever another thread
    does after a later ``happens_after(key)``.  ``key`` is any hashable (a string, an
    id); it is kept until ``disable()``, so prefer small keys."""
    if _session is None:
        return
    with _annotations_lock:
        _annotations[key] = events.publish(_annotations.get(key))


def happens_after(key: Hashable) -> None:
    """The acquire side of :func:`happens_before`."""
    if _session is None:
        return
    with _annotations_lock:
        token = _annotations.get(key)
        events.consume(token)
