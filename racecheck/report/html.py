"""Self-contained HTML pages, one per finding (``racecheck report PATH --html OUT``).

Each page has no external resources (inline CSS, no scripts), so it can be attached to
a CI run or mailed.  A race shows its two stacks side by side; every frame carries a few
lines of source context (read through ``linecache`` when the file is available, else the
recorded source line alone).  ``index.html`` links the pages.
"""

from __future__ import annotations

import html
import linecache
import os
from collections.abc import Sequence
from pathlib import Path

from racecheck.report.findings import (
    DeadlockFinding,
    Finding,
    InversionFinding,
    LeakFinding,
    RaceFinding,
    Stack,
    ThreadDump,
)
from racecheck.report.text import (
    access_header,
    creation_header,
    display_path,
    dump_header,
    format_finding,
    source_line,
    summary_lines,
    thread_label,
)

CONTEXT_LINES = 3

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; color: #b00020; }
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5em; }
.column { min-width: 0; }
h2 { font-size: 1.05em; }
.frame { margin: 0 0 1em 0; }
.where { font-family: monospace; font-size: 0.9em; color: #444; }
pre { background: #f6f8fa; padding: 0.5em; overflow-x: auto; margin: 0.2em 0; }
.hit { background: #ffeb99; display: block; }
.lineno { color: #999; user-select: none; }
details { margin-top: 2em; }
"""


def _context(filename: str, lineno: int, recorded: str) -> str:
    """Source lines around ``lineno`` with the frame's own line highlighted."""
    lines = linecache.getlines(filename) if lineno > 0 else []
    if not lines:
        text = recorded or "(source not available)"
        return f'<pre><span class="hit">{html.escape(text)}</span></pre>'
    start = max(1, lineno - CONTEXT_LINES)
    end = min(len(lines), lineno + CONTEXT_LINES)
    out = []
    for number in range(start, end + 1):
        code = html.escape(lines[number - 1].rstrip("\n"))
        row = f'<span class="lineno">{number:>5} </span>{code}'
        out.append(f'<span class="hit">{row}</span>' if number == lineno else row)
    return "<pre>" + "\n".join(out) + "</pre>"


def _stack_html(title: str, stack: Stack, strip: str) -> str:
    parts = [f'<div class="column"><h2>{html.escape(title)}</h2>']
    if not stack:
        parts.append("<p><em>no stack recorded</em></p>")
    for frame in stack:
        where = f"{display_path(frame.filename, strip)}, line {frame.lineno}, in {frame.function}"
        parts.append(
            f'<div class="frame"><div class="where">{html.escape(where)}</div>'
            f"{_context(frame.filename, frame.lineno, source_line(frame))}</div>"
        )
    parts.append("</div>")
    return "".join(parts)


def _columns(*columns: str) -> str:
    return '<div class="columns">' + "".join(columns) + "</div>"


def _dump_columns(dump: ThreadDump, strip: str) -> str:
    columns = [_stack_html(dump_header(dump), dump.stack, strip)]
    if dump.thread.created_at:
        columns.append(_stack_html("created at", dump.thread.created_at, strip))
    return _columns(*columns)


def _body(finding: Finding, strip: str) -> tuple[str, str]:
    """(title, body HTML) of one finding."""
    if isinstance(finding, RaceFinding):
        body = _columns(
            _stack_html(access_header(finding.current, False), finding.current.stack, strip),
            _stack_html(access_header(finding.previous, True), finding.previous.stack, strip),
        )
        created = [
            _stack_html(creation_header(a.thread), a.thread.created_at, strip)
            for a in (finding.current, finding.previous)
            if a.thread.created_at
        ]
        if created:
            body += _columns(*created)
        return f"DATA RACE on {finding.current.location}", body
    if isinstance(finding, InversionFinding):
        body = "".join(
            _columns(
                _stack_html(
                    f"{e.second} acquired while holding {e.first} by thread "
                    f"{thread_label(e.thread)}",
                    e.second_acquired_at,
                    strip,
                ),
                _stack_html(f"{e.first} previously acquired here", e.first_acquired_at, strip),
            )
            for e in finding.cycle
        )
        return "POTENTIAL DEADLOCK (lock-order inversion)", body
    if isinstance(finding, DeadlockFinding):
        body = "".join(_dump_columns(d, strip) for d in finding.threads)
        return "all goroutines are asleep - deadlock!", body
    assert isinstance(finding, LeakFinding)
    body = "".join(_dump_columns(d, strip) for d in finding.threads)
    if finding.others:
        items = "".join(f"<li>{html.escape(o)}</li>" for o in finding.others)
        body += f"<ul>{items}</ul>"
    return "THREAD LEAK" + (f" after {finding.scope}" if finding.scope else ""), body


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>racecheck: {html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def render_html(finding: Finding, strip_path_prefix: str = "") -> str:
    """One finding as a complete, self-contained HTML document."""
    title, body = _body(finding, strip_path_prefix)
    text = html.escape(format_finding(finding, strip_path_prefix))
    body += f"<details><summary>Plain text report</summary><pre>{text}</pre></details>"
    body += f'<p class="where">fingerprint {html.escape(finding.fingerprint)}</p>'
    return _page(title, body)


def write_html(
    findings: Sequence[Finding], out_dir: str | os.PathLike[str], strip_path_prefix: str = ""
) -> list[Path]:
    """Write ``finding-NNN-KIND.html`` per finding and an ``index.html``; returns the
    finding pages' paths."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    pages: list[Path] = []
    links = []
    for number, finding in enumerate(findings, start=1):
        page = directory / f"finding-{number:03d}-{finding.kind}.html"
        page.write_text(render_html(finding, strip_path_prefix), encoding="utf-8")
        pages.append(page)
        title, _ = _body(finding, strip_path_prefix)
        links.append(f'<li><a href="{page.name}">{html.escape(title)}</a></li>')
    summary = "".join(f"<p>{html.escape(line)}</p>" for line in summary_lines(findings))
    index = _page("report", summary + ("<ol>" + "".join(links) + "</ol>" if links else ""))
    (directory / "index.html").write_text(index, encoding="utf-8")
    return pages
