"""Where reports go while a program runs: stderr (or ``log_path``), rich or plain.

:class:`Reporter` is what the runtime calls as findings appear and what ``racecheck run``
calls at exit.  On a terminal it renders with rich (source lines syntax-highlighted,
each thread name in its own colour, the same colour everywhere in the run); piped, or
with ``color=no``, it writes the exact Go-layout text of :mod:`racecheck.report.text`, so
logs and bug reports stay greppable.  It never writes to stdout: the program's stdout is
the program's.
"""

from __future__ import annotations

import io
import os
import sys
import zlib
from collections.abc import Sequence
from typing import TextIO

from racecheck._rawsync import allocate_lock
from racecheck.config import Options
from racecheck.report.findings import (
    DeadlockFinding,
    Finding,
    InversionFinding,
    LeakFinding,
    RaceFinding,
    Stack,
    ThreadDump,
    ThreadInfo,
)
from racecheck.report.text import (
    SEPARATOR,
    access_header,
    creation_header,
    display_path,
    dump_header,
    format_finding,
    source_line,
    summary_lines,
    thread_base_name,
    thread_label,
)

_THREAD_COLOURS = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "bright_cyan",
    "bright_magenta",
    "bright_green",
    "bright_blue",
    "orange3",
)


def thread_colour(thread: ThreadInfo) -> str:
    """A colour chosen from the thread's name alone, so the same thread has the same
    colour in every report of the run (and of the next run)."""
    return _THREAD_COLOURS[zlib.crc32(thread_label(thread).encode()) % len(_THREAD_COLOURS)]


def wants_colour(color: str, stream: TextIO) -> bool:
    """``yes``/``no`` decide; ``auto`` means rich only on a terminal (and not when the
    user asked for no colour via ``NO_COLOR`` or a dumb terminal)."""
    if color == "yes":
        return True
    if color == "no":
        return False
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # closed or odd stream
        return False


def render_rich(finding: Finding, stream: TextIO, strip_path_prefix: str = "") -> None:
    """Write one finding to ``stream`` with rich markup (ANSI colour codes)."""
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.text import Text

    console = Console(
        file=stream, force_terminal=True, highlight=False, soft_wrap=True, emoji=False
    )
    highlighter = Syntax("", "python", theme="ansi_dark", background_color="default")

    def header(text: str, thread: ThreadInfo | None, style: str = "bold") -> None:
        line = Text()
        if thread is not None:
            head, sep, tail = text.rpartition(thread_label(thread))
            if not sep:
                head, sep, tail = text.rpartition(f" {thread_base_name(thread)} ")
                head, tail = head + " ", " " + tail
            if sep:
                line.append(head, style=style)
                line.append(sep.strip(), style=f"bold {thread_colour(thread)}")
                line.append(tail, style=style)
                console.print(line)
                return
        line.append(text, style=style)
        console.print(line)

    def stack(frames: Stack) -> None:
        if not frames:
            console.print(Text("  <no stack recorded>", style="dim"))
        for frame in frames:
            path = display_path(frame.filename, strip_path_prefix)
            location = Text("  File ")
            location.append(f'"{path}"', style="underline")
            location.append(f", line {frame.lineno}, in ")
            location.append(frame.function, style="bold")
            console.print(location)
            code = source_line(frame)
            if code:
                highlighted = highlighter.highlight(code)
                highlighted.rstrip()
                console.print(Text("    ").append_text(highlighted))

    def creation(threads: Sequence[ThreadInfo]) -> None:
        seen: set[tuple[str, int | None, int]] = set()
        for thread in threads:
            key = (thread.name, thread.ident, thread.tid)
            if key in seen or not thread.created_at:
                continue
            seen.add(key)
            header(creation_header(thread), thread, style="")
            stack(thread.created_at)

    def dump(d: ThreadDump) -> None:
        header(dump_header(d), d.thread, style="bold")
        stack(d.stack)
        if d.blocked_on is not None and d.blocked_on.created_at:
            console.print(f"waiting on {d.blocked_on.object_repr or 'the primitive'} created at:")
            stack(d.blocked_on.created_at)
        if d.thread.created_at:
            console.print("created at:")
            stack(d.thread.created_at)

    if isinstance(finding, RaceFinding):
        console.print(SEPARATOR, style="red")
        console.print("WARNING: DATA RACE", style="bold red")
        header(access_header(finding.current, previous=False), finding.current.thread)
        stack(finding.current.stack)
        console.print()
        header(access_header(finding.previous, previous=True), finding.previous.thread)
        stack(finding.previous.stack)
        threads = [finding.current.thread, finding.previous.thread]
        if any(t.created_at for t in threads):
            console.print()
            creation(threads)
        console.print(SEPARATOR, style="red")
    elif isinstance(finding, InversionFinding):
        console.print(SEPARATOR, style="red")
        console.print("WARNING: POTENTIAL DEADLOCK (lock-order inversion)", style="bold red")
        for edge in finding.cycle:
            console.print()
            header(
                f"{edge.second} acquired while holding {edge.first} by thread "
                f"{thread_label(edge.thread)}:",
                edge.thread,
            )
            stack(edge.second_acquired_at)
            console.print(f"{edge.first} previously acquired by the same thread here:")
            stack(edge.first_acquired_at)
        console.print(SEPARATOR, style="red")
    elif isinstance(finding, DeadlockFinding):
        console.print("fatal error: all goroutines are asleep - deadlock!", style="bold red")
        for d in finding.threads:
            console.print()
            dump(d)
    elif isinstance(finding, LeakFinding):
        console.print(SEPARATOR, style="yellow")
        console.print("WARNING: THREAD LEAK", style="bold yellow")
        for d in finding.threads:
            console.print()
            dump(d)
        for other in finding.others:
            console.print(other)
        console.print(SEPARATOR, style="yellow")


class Reporter:
    """Renders findings for people as they happen, and writes the machine reports.

    Thread-safe (the runtime calls it from whichever thread found the race): one raw lock
    serialises whole reports, so two races never interleave their lines.
    """

    def __init__(self, options: Options, stream: TextIO | None = None) -> None:
        self.options = options
        self._stream = stream
        self._lock = allocate_lock()

    def _write(self, render: str | Finding) -> None:
        """Write text, or a finding rendered for the destination, under the lock."""
        with self._lock:
            if self.options.log_path:
                with open(self.options.log_path, "a", encoding="utf-8") as fh:
                    self._emit(render, fh)
            else:
                stream = self._stream if self._stream is not None else sys.stderr
                if stream is None:  # pythonw: nowhere to report to
                    return
                self._emit(render, stream)

    def _emit(self, render: str | Finding, stream: TextIO) -> None:
        if isinstance(render, str):
            stream.write(render)
        elif wants_colour(self.options.color, stream):
            buffer = io.StringIO()
            render_rich(render, buffer, self.options.strip_path_prefix)
            stream.write(buffer.getvalue())
        else:
            stream.write(format_finding(render, self.options.strip_path_prefix))
        stream.flush()

    def race(self, finding: RaceFinding) -> None:
        """Report a race the moment it is found (Go prints them as they happen)."""
        self._write(finding)

    def finding(self, finding: Finding) -> None:
        """Report any kind of finding."""
        self._write(finding)

    def summary(self, findings: Sequence[Finding]) -> None:
        """``racecheck: Found N data race(s)`` (and the other kinds), if any."""
        lines = summary_lines(findings)
        if lines:
            self._write("\n".join(lines) + "\n")

    def write_reports(self, findings: Sequence[Finding]) -> None:
        """Write every ``--report FORMAT:PATH`` file (the writers are imported only when
        a report is asked for: they cost start-up or exit time otherwise)."""
        for fmt, path in self.options.reports:
            try:
                if fmt == "json":
                    from racecheck.report.json import write_report

                    write_report(findings, path)
                elif fmt == "sarif":
                    from racecheck.report.sarif import write_sarif

                    write_sarif(findings, path, strip_path_prefix=self.options.strip_path_prefix)
            except OSError as exc:  # checked at start-up; the disk can still fill up
                self._write(f"racecheck: cannot write {fmt} report {path}: {exc.strerror or exc}\n")
