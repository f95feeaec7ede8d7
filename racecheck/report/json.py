"""The JSON report: one document per run, and its loader.

Schema (documented in docs/report-schema.md)::

    {"version": 1, "tool": "racecheck", "racecheck_version": "0.1.0",
     "findings": [to_dict(finding), ...]}

The module is named ``json`` after the format, as the architecture map says; it lives
inside the ``racecheck.report`` package and uses absolute imports, so it never shadows
the standard library's ``json`` (which it imports itself).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from racecheck.report.findings import (
    Access,
    BlockedOn,
    DeadlockFinding,
    Finding,
    Frame,
    InversionFinding,
    LeakFinding,
    LockOrderEdge,
    RaceFinding,
    Stack,
    ThreadDump,
    ThreadInfo,
    to_dict,
)

SCHEMA_VERSION = 1


class ReportFormatError(ValueError):
    """A file that is not a racecheck JSON report (or of a newer schema version)."""


def _version() -> str:
    from racecheck import __version__

    return __version__


def report_document(findings: Iterable[Finding]) -> dict[str, Any]:
    return {
        "version": SCHEMA_VERSION,
        "tool": "racecheck",
        "racecheck_version": _version(),
        "findings": [to_dict(f) for f in findings],
    }


def dumps_report(findings: Iterable[Finding]) -> str:
    return json.dumps(report_document(findings), indent=2, sort_keys=False) + "\n"


def write_report(findings: Iterable[Finding], path: str | os.PathLike[str]) -> None:
    """Write the document atomically (a reader never sees half a report)."""
    text = dumps_report(findings)
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{target}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, target)


# -- loading ---------------------------------------------------------------------------


def _frame(d: Mapping[str, Any]) -> Frame:
    return Frame(
        filename=str(d["filename"]),
        lineno=int(d["lineno"]),
        function=str(d["function"]),
        line=str(d.get("line", "")),
    )


def _stack(items: Sequence[Mapping[str, Any]] | None) -> Stack:
    return tuple(_frame(f) for f in items or ())


def _thread(d: Mapping[str, Any]) -> ThreadInfo:
    return ThreadInfo(
        name=str(d["name"]),
        ident=d.get("ident"),
        tid=int(d.get("tid", 0)),
        running=bool(d.get("running", True)),
        daemon=bool(d.get("daemon", False)),
        target=str(d.get("target", "")),
        created_at=_stack(d.get("created_at")),
    )


def _access(d: Mapping[str, Any]) -> Access:
    return Access(
        op=str(d["op"]),
        location=str(d["location"]),
        object_repr=str(d.get("object_repr", "")),
        thread=_thread(d["thread"]),
        stack=_stack(d.get("stack")),
    )


def _dump(d: Mapping[str, Any]) -> ThreadDump:
    blocked = d.get("blocked_on")
    return ThreadDump(
        thread=_thread(d["thread"]),
        stack=_stack(d.get("stack")),
        blocked_on=None
        if blocked is None
        else BlockedOn(
            what=str(blocked["what"]),
            object_repr=str(blocked.get("object_repr", "")),
            created_at=_stack(blocked.get("created_at")),
            seconds=blocked.get("seconds"),
        ),
    )


def finding_from_dict(d: Mapping[str, Any]) -> Finding:
    """The inverse of ``findings.to_dict`` (the ``fingerprint`` key is recomputed)."""
    kind = d.get("kind")
    timestamp = float(d.get("timestamp", 0.0))
    if kind == "race":
        return RaceFinding(
            current=_access(d["current"]), previous=_access(d["previous"]), timestamp=timestamp
        )
    if kind == "leak":
        return LeakFinding(
            threads=tuple(_dump(t) for t in d.get("threads", ())),
            others=tuple(str(o) for o in d.get("others", ())),
            scope=str(d.get("scope", "")),
            timestamp=timestamp,
        )
    if kind == "deadlock":
        return DeadlockFinding(
            threads=tuple(_dump(t) for t in d.get("threads", ())), timestamp=timestamp
        )
    if kind == "lock-order-inversion":
        return InversionFinding(
            cycle=tuple(
                LockOrderEdge(
                    first=str(e["first"]),
                    second=str(e["second"]),
                    thread=_thread(e["thread"]),
                    first_acquired_at=_stack(e.get("first_acquired_at")),
                    second_acquired_at=_stack(e.get("second_acquired_at")),
                )
                for e in d.get("cycle", ())
            ),
            timestamp=timestamp,
        )
    raise ReportFormatError(f"unknown finding kind {kind!r}")


def parse_report(document: Any, source: str = "report") -> list[Finding]:
    if not isinstance(document, dict) or document.get("tool") != "racecheck":
        raise ReportFormatError(f"{source}: not a racecheck JSON report")
    version = document.get("version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ReportFormatError(
            f"{source}: unsupported report version {version!r} (this racecheck reads "
            f"up to {SCHEMA_VERSION})"
        )
    try:
        return [finding_from_dict(f) for f in document.get("findings", [])]
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ReportFormatError):
            raise ReportFormatError(f"{source}: {exc}") from None
        raise ReportFormatError(f"{source}: malformed finding ({exc!r})") from None


def load_report(path: str | os.PathLike[str]) -> list[Finding]:
    """Read a report written by :func:`write_report` back into findings."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as fh:
            document = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ReportFormatError(f"{source}: not JSON ({exc})") from None
    return parse_report(document, source)
