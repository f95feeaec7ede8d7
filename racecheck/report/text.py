"""Plain-text reports in Go's layout.

This is the format people paste into bug reports, so it is kept exactly like Go's race
detector output (with Python's ``File "...", line N, in f`` frame lines, innermost first
as Go prints stacks).  The rich console renderer and the HTML page are built from the
same pieces, so all outputs agree on wording.

Source lines come from ``Frame.line``; when a detector left it empty it is read through
``linecache`` at report time (never stored on the hot path).
"""

from __future__ import annotations

import linecache
from collections.abc import Iterable, Sequence

from racecheck.report.findings import (
    Access,
    BlockedOn,
    DeadlockFinding,
    Finding,
    Frame,
    InversionFinding,
    LeakFinding,
    RaceFinding,
    Stack,
    ThreadDump,
    ThreadInfo,
)

SEPARATOR = "=================="

_OP_NOUNS = {
    "read": "read",
    "write": "write",
    "mutate": "mutation",
    "iterate": "iteration",
}


def op_noun(op: str) -> str:
    """``write`` -> ``write``, ``mutate`` -> ``mutation``; primitives' operations
    (``send``, ``close``, ``add``...) are used as they are."""
    return _OP_NOUNS.get(op, op)


def source_line(frame: Frame) -> str:
    """The frame's stripped source line, from the finding or from ``linecache``."""
    if frame.line:
        return frame.line.strip()
    if frame.lineno <= 0:
        return ""
    return linecache.getline(frame.filename, frame.lineno).strip()


def display_path(filename: str, strip_path_prefix: str = "") -> str:
    if strip_path_prefix and filename.startswith(strip_path_prefix):
        return filename[len(strip_path_prefix) :]
    return filename


def format_stack(stack: Stack, strip_path_prefix: str = "", indent: str = "  ") -> list[str]:
    """Python traceback-style frame lines, innermost first."""
    lines: list[str] = []
    for frame in stack:
        path = display_path(frame.filename, strip_path_prefix)
        lines.append(f'{indent}File "{path}", line {frame.lineno}, in {frame.function}')
        text = source_line(frame)
        if text:
            lines.append(f"{indent}  {text}")
    if not stack:
        lines.append(f"{indent}<no stack recorded>")
    return lines


def _short_target(target: str) -> str:
    return target.rsplit(".", 1)[-1]


def thread_label(thread: ThreadInfo) -> str:
    """``Thread-2 (worker)``: the thread's name, with its target when the name does not
    already say it (Python's default names do)."""
    name = thread.name
    if thread.target:
        short = _short_target(thread.target)
        if not name.endswith(f"({short})"):
            name = f"{name} ({short})"
    return name


def thread_base_name(thread: ThreadInfo) -> str:
    """``Thread-2`` for ``Thread-2 (worker)``: Go's creation line shows the state in
    parentheses instead of the target."""
    name = thread.name
    if thread.target:
        suffix = f" ({_short_target(thread.target)})"
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def access_header(access: Access, previous: bool) -> str:
    noun = op_noun(access.op)
    head = f"Previous {noun}" if previous else noun[:1].upper() + noun[1:]
    what = access.location
    if access.object_repr:
        what = f"{what} ({access.object_repr})"
    return f"{head} at {what} by thread {thread_label(access.thread)}:"


def creation_header(thread: ThreadInfo) -> str:
    return f"Thread {thread_base_name(thread)} ({thread.state}) created at:"


def _creation_sections(threads: Iterable[ThreadInfo], strip: str) -> list[str]:
    """Creation stacks of the distinct threads involved (the main thread has none)."""
    lines: list[str] = []
    seen: set[tuple[str, int | None, int]] = set()
    for thread in threads:
        key = (thread.name, thread.ident, thread.tid)
        if key in seen or not thread.created_at:
            continue
        seen.add(key)
        lines.append(creation_header(thread))
        lines.extend(format_stack(thread.created_at, strip))
    return lines


def format_race(finding: RaceFinding, strip_path_prefix: str = "") -> str:
    strip = strip_path_prefix
    lines = [SEPARATOR, "WARNING: DATA RACE"]
    lines.append(access_header(finding.current, previous=False))
    lines.extend(format_stack(finding.current.stack, strip))
    lines.append("")
    lines.append(access_header(finding.previous, previous=True))
    lines.extend(format_stack(finding.previous.stack, strip))
    creation = _creation_sections([finding.current.thread, finding.previous.thread], strip)
    if creation:
        lines.append("")
        lines.extend(creation)
    lines.append(SEPARATOR)
    return "\n".join(lines) + "\n"


def format_duration(seconds: float) -> str:
    """Go prints ``2 minutes``; short waits (typical in tests) get seconds."""
    if seconds < 60:
        return f"{seconds:.1f} seconds"
    minutes = int(seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def dump_header(dump: ThreadDump) -> str:
    """``thread 7 "Thread-2 (worker)" [chan receive, 2 minutes]:``"""
    thread = dump.thread
    number = thread.tid or thread.ident or 0
    state = "running"
    if dump.blocked_on is not None:
        state = dump.blocked_on.what
        if dump.blocked_on.seconds is not None:
            state += f", {format_duration(dump.blocked_on.seconds)}"
    return f'thread {number} "{thread_label(thread)}" [{state}]:'


def _blocked_section(blocked: BlockedOn, strip: str) -> list[str]:
    if not blocked.object_repr and not blocked.created_at:
        return []
    what = blocked.object_repr or "the primitive"
    if not blocked.created_at:
        return [f"waiting on {what}"]
    return [f"waiting on {what} created at:", *format_stack(blocked.created_at, strip)]


def format_dump(dump: ThreadDump, strip_path_prefix: str = "") -> list[str]:
    """One thread of a goroutine-dump style report."""
    strip = strip_path_prefix
    thread = dump.thread
    lines = [dump_header(dump)]
    lines.extend(format_stack(dump.stack, strip))
    if dump.blocked_on is not None:
        lines.extend(_blocked_section(dump.blocked_on, strip))
    details = []
    if thread.target:
        details.append(f"target {thread.target}")
    if thread.daemon:
        details.append("daemon")
    suffix = f" ({', '.join(details)})" if details else ""
    if thread.created_at:
        lines.append(f"created at{suffix}:")
        lines.extend(format_stack(thread.created_at, strip))
    elif details:
        lines.append(f"created at an unknown site{suffix}")
    return lines


def format_leak(finding: LeakFinding, strip_path_prefix: str = "") -> str:
    count = len(finding.threads)
    lines = [SEPARATOR, "WARNING: THREAD LEAK"]
    scope = f" after {finding.scope}" if finding.scope else ""
    if count:
        lines.append(f"{count} thread{'s' if count != 1 else ''} still running{scope}:")
    for dump in finding.threads:
        lines.append("")
        lines.extend(format_dump(dump, strip_path_prefix))
    if finding.others:
        lines.append("")
        lines.extend(finding.others)
    lines.append(SEPARATOR)
    return "\n".join(lines) + "\n"


def format_deadlock(finding: DeadlockFinding, strip_path_prefix: str = "") -> str:
    lines = ["fatal error: all goroutines are asleep - deadlock!"]
    for dump in finding.threads:
        lines.append("")
        lines.extend(format_dump(dump, strip_path_prefix))
    return "\n".join(lines) + "\n"


def format_inversion(finding: InversionFinding, strip_path_prefix: str = "") -> str:
    """ThreadSanitizer's lock-order-inversion layout."""
    strip = strip_path_prefix
    lines = [SEPARATOR, "WARNING: POTENTIAL DEADLOCK (lock-order inversion)"]
    if finding.cycle:
        names = [edge.first for edge in finding.cycle] + [finding.cycle[0].first]
        lines.append("Cycle in lock order graph: " + " => ".join(names))
    for edge in finding.cycle:
        lines.append("")
        lines.append(
            f"{edge.second} acquired while holding {edge.first} "
            f"by thread {thread_label(edge.thread)}:"
        )
        lines.extend(format_stack(edge.second_acquired_at, strip))
        lines.append(f"{edge.first} previously acquired by the same thread here:")
        lines.extend(format_stack(edge.first_acquired_at, strip))
    creation = _creation_sections((edge.thread for edge in finding.cycle), strip)
    if creation:
        lines.append("")
        lines.extend(creation)
    lines.append(SEPARATOR)
    return "\n".join(lines) + "\n"


def format_finding(finding: Finding, strip_path_prefix: str = "") -> str:
    """Any finding, in its Go/TSan layout, ending with a newline."""
    if isinstance(finding, RaceFinding):
        return format_race(finding, strip_path_prefix)
    if isinstance(finding, LeakFinding):
        return format_leak(finding, strip_path_prefix)
    if isinstance(finding, DeadlockFinding):
        return format_deadlock(finding, strip_path_prefix)
    return format_inversion(finding, strip_path_prefix)


def summary_lines(findings: Sequence[Finding]) -> list[str]:
    """``racecheck: Found N data race(s)`` (Go's wording) and the same for the other
    kinds; nothing when nothing was found."""
    counts = {"race": 0, "leak": 0, "deadlock": 0, "lock-order-inversion": 0}
    for finding in findings:
        counts[finding.kind] += 1
    lines = []
    if counts["race"]:
        lines.append(f"racecheck: Found {counts['race']} data race(s)")
    if counts["lock-order-inversion"]:
        lines.append(
            f"racecheck: Found {counts['lock-order-inversion']} potential deadlock(s) "
            "(lock-order inversion)"
        )
    if counts["leak"]:
        lines.append(f"racecheck: Found {counts['leak']} thread leak report(s)")
    if counts["deadlock"]:
        lines.append(f"racecheck: Found {counts['deadlock']} deadlock(s)")
    return lines
