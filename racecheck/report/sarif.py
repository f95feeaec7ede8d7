"""SARIF 2.1.0 output, shaped for GitHub code scanning.

One rule per finding kind (``race``, ``leak``, ``deadlock``, ``lock-order-inversion``).
A result's primary location is the innermost frame of the reporting access (the current
access of a race, the start site of a leaked thread, the second acquisition of an
inversion edge); the other side goes in ``relatedLocations``; every stack becomes a
``threadFlow`` (outermost frame first, which is SARIF's execution order) in one
``codeFlow``, so code scanning can show both stacks.  ``partialFingerprints`` carries the
finding's stable fingerprint so CI baselines survive line shifts.

File names under ``root`` (default: the current directory) become relative URIs with
``uriBaseId`` ``%SRCROOT%``, which is what code scanning maps onto the repository;
others become absolute ``file://`` URIs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from racecheck.report.findings import (
    DeadlockFinding,
    Finding,
    Frame,
    InversionFinding,
    LeakFinding,
    RaceFinding,
    Stack,
)
from racecheck.report.text import (
    access_header,
    display_path,
    dump_header,
    format_finding,
    source_line,
    thread_label,
)

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "racecheckFingerprint/v1"

RULES: dict[str, dict[str, Any]] = {
    "race": {
        "name": "DataRace",
        "short": "Data race",
        "full": "Two threads accessed the same location without synchronisation ordering "
        "the accesses, and at least one of them wrote it.",
        "level": "error",
    },
    "leak": {
        "name": "ThreadLeak",
        "short": "Thread leak",
        "full": "Threads (or executors, timers, contexts) outlived the scope that started them.",
        "level": "warning",
    },
    "deadlock": {
        "name": "Deadlock",
        "short": "Deadlock",
        "full": "Every live thread was blocked with nothing able to wake it: all goroutines "
        "are asleep.",
        "level": "error",
    },
    "lock-order-inversion": {
        "name": "LockOrderInversion",
        "short": "Potential deadlock (lock-order inversion)",
        "full": "Locks were acquired in inconsistent orders by different threads; a "
        "schedule exists in which they deadlock.",
        "level": "warning",
    },
}


def _version() -> str:
    from racecheck import __version__

    return __version__


class _Locator:
    def __init__(self, root: str | os.PathLike[str] | None, strip_path_prefix: str) -> None:
        self.root = Path(root if root is not None else os.getcwd()).resolve()
        self.strip = strip_path_prefix

    def artifact(self, filename: str) -> dict[str, Any]:
        path = Path(filename)
        if not path.is_absolute():
            shown = display_path(filename, self.strip)
            return {"uri": Path(shown).as_posix(), "uriBaseId": "%SRCROOT%"}
        try:
            relative = path.resolve().relative_to(self.root)
        except ValueError:
            return {"uri": path.as_uri()}
        return {"uri": relative.as_posix(), "uriBaseId": "%SRCROOT%"}

    def location(self, frame: Frame, message: str | None = None) -> dict[str, Any]:
        physical: dict[str, Any] = {"artifactLocation": self.artifact(frame.filename)}
        if frame.lineno >= 1:
            region: dict[str, Any] = {"startLine": frame.lineno}
            text = source_line(frame)
            if text:
                region["snippet"] = {"text": text}
            physical["region"] = region
        loc: dict[str, Any] = {"physicalLocation": physical}
        if frame.function:
            loc["logicalLocations"] = [{"name": frame.function, "kind": "function"}]
        if message:
            loc["message"] = {"text": message}
        return loc

    def thread_flow(self, stack: Stack, message: str) -> dict[str, Any]:
        frames = list(reversed(stack))  # SARIF: execution order, outermost first
        return {
            "message": {"text": message},
            "locations": [
                {"location": self.location(frame), "nestingLevel": depth}
                for depth, frame in enumerate(frames)
            ],
        }


def _flows_and_locations(
    finding: Finding, loc: _Locator
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(primary locations, related locations, thread flows) of a finding."""
    flows: list[tuple[Stack, str]] = []
    if isinstance(finding, RaceFinding):
        flows = [
            (finding.current.stack, access_header(finding.current, previous=False)),
            (finding.previous.stack, access_header(finding.previous, previous=True)),
        ]
    elif isinstance(finding, LeakFinding | DeadlockFinding):
        for dump in finding.threads:
            stack = dump.thread.created_at if isinstance(finding, LeakFinding) else ()
            flows.append((stack or dump.stack, dump_header(dump)))
            if isinstance(finding, LeakFinding) and dump.stack and dump.thread.created_at:
                flows.append((dump.stack, f"{dump_header(dump)} current stack"))
    elif isinstance(finding, InversionFinding):
        for edge in finding.cycle:
            flows.append(
                (
                    edge.second_acquired_at,
                    f"{edge.second} acquired while holding {edge.first} by thread "
                    f"{thread_label(edge.thread)}",
                )
            )
    flows = [(stack, msg) for stack, msg in flows if stack]
    locations = [loc.location(stack[0], msg) for stack, msg in flows]
    thread_flows = [loc.thread_flow(stack, msg) for stack, msg in flows]
    return locations[:1], locations[1:], thread_flows


def _message(finding: Finding, strip: str) -> str:
    if isinstance(finding, RaceFinding):
        cur, prev = finding.current, finding.previous
        return (
            f"Data race on {cur.location}: {access_header(cur, False)[:-1]}; "
            f"{access_header(prev, True)[:-1]}."
        )
    if isinstance(finding, LeakFinding):
        names = ", ".join(thread_label(d.thread) for d in finding.threads)
        parts = []
        if names:
            parts.append(f"Threads still running: {names}")
        parts.extend(finding.others)
        return (
            "Thread leak"
            + (f" after {finding.scope}" if finding.scope else "")
            + (": " + "; ".join(parts) if parts else "")
        )
    if isinstance(finding, DeadlockFinding):
        return "all goroutines are asleep - deadlock! " + "; ".join(
            dump_header(d)[:-1] for d in finding.threads
        )
    locks = [edge.first for edge in finding.cycle]
    return "Potential deadlock (lock-order inversion): " + " => ".join(
        [*locks, locks[0]] if locks else []
    )


def _rule(kind: str, index: int) -> dict[str, Any]:
    meta = RULES[kind]
    return {
        "id": kind,
        "name": meta["name"],
        "shortDescription": {"text": meta["short"]},
        "fullDescription": {"text": meta["full"]},
        "help": {"text": meta["full"]},
        "defaultConfiguration": {"level": meta["level"]},
        "properties": {"tags": ["concurrency", "reliability"], "precision": "high"},
    }


def to_sarif(
    findings: Iterable[Finding],
    *,
    root: str | os.PathLike[str] | None = None,
    strip_path_prefix: str = "",
) -> dict[str, Any]:
    """The SARIF 2.1.0 log (a dict ready for ``json.dump``)."""
    locator = _Locator(root, strip_path_prefix)
    kinds = list(RULES)
    results = []
    for finding in findings:
        primary, related, thread_flows = _flows_and_locations(finding, locator)
        result: dict[str, Any] = {
            "ruleId": finding.kind,
            "ruleIndex": kinds.index(finding.kind),
            "level": RULES[finding.kind]["level"],
            "message": {"text": _message(finding, strip_path_prefix)},
            "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
            "properties": {"report": format_finding(finding, strip_path_prefix)},
        }
        if primary:
            result["locations"] = primary
        if related:
            result["relatedLocations"] = [
                {**loc, "id": i} for i, loc in enumerate(related, start=1)
            ]
        if thread_flows:
            result["codeFlows"] = [{"threadFlows": thread_flows}]
        results.append(result)
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "racecheck",
                "version": _version(),
                "semanticVersion": _version(),
                "rules": [_rule(kind, i) for i, kind in enumerate(kinds)],
            }
        },
        "originalUriBaseIds": {"%SRCROOT%": {"uri": locator.root.as_uri() + "/"}},
        "columnKind": "unicodeCodePoints",
        "results": results,
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def write_sarif(
    findings: Sequence[Finding],
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    strip_path_prefix: str = "",
) -> None:
    document = to_sarif(findings, root=root, strip_path_prefix=strip_path_prefix)
    target = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    tmp = f"{target}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, target)
