"""The one model of what racecheck found.

Detectors (the race engine, the leak checker, the deadlock and lock-order checkers)
produce these plain dataclasses; every renderer (Go-layout text, rich console, JSON,
SARIF, HTML) and the pytest plugin consume them.  They hold only strings and numbers,
never user objects, so a finding can outlive the program state it describes and can be
pickled across pytest-xdist workers.

Stacks are innermost frame first, as Go prints them.
"""

from __future__ import annotations

import hashlib
import linecache
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FindingKind = Literal["race", "leak", "deadlock", "lock-order-inversion"]


@dataclass(frozen=True)
class Frame:
    filename: str
    lineno: int
    function: str
    line: str = ""
    """The stripped source line, filled in at report time (empty when unavailable)."""


Stack = tuple[Frame, ...]


@dataclass(frozen=True)
class ThreadInfo:
    """A thread as reports name it: ``Thread-2 (worker)``."""

    name: str
    ident: int | None = None
    tid: int = 0
    """racecheck's own small thread number (stable across a run, never reused)."""
    running: bool = True
    daemon: bool = False
    target: str = ""
    created_at: Stack = ()
    """Stack of the ``start()`` call; empty for the main thread."""

    @property
    def state(self) -> str:
        return "running" if self.running else "finished"


@dataclass(frozen=True)
class Access:
    """One side of a race: what was done, to what, by whom, from where."""

    op: str
    """``read``, ``write``, ``mutate``, ``iterate``, or a primitive's operation
    (``send``, ``close``, ``add``, ``wait``)."""
    location: str
    """Human name of the location: ``Counter.value``, ``app.total``, ``list[3]``."""
    object_repr: str
    """``app.Counter object at 0x7f...``: which object the location belongs to."""
    thread: ThreadInfo
    stack: Stack


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _site(stack: Stack) -> str:
    top = stack[0] if stack else Frame("?", 0, "?")
    return f"{top.filename}:{top.function}:{top.line or top.lineno}"


@dataclass(frozen=True)
class RaceFinding:
    current: Access
    previous: Access
    timestamp: float = field(default_factory=time.time)
    kind: Literal["race"] = "race"

    @property
    def fingerprint(self) -> str:
        """Stable across runs and machines: the two racing sites (file, function, source
        text) in a canonical order, not addresses or line numbers."""
        a, b = sorted([_site(self.current.stack), _site(self.previous.stack)])
        return _fingerprint("race", a, b, self.current.location.split("[")[0])

    @property
    def site_pair(self) -> frozenset[tuple[str, int]]:
        """The pair of racing source locations, Go's unit of dedup."""
        def top(s: Stack) -> tuple[str, int]:
            return (s[0].filename, s[0].lineno) if s else ("?", 0)

        return frozenset({top(self.current.stack), top(self.previous.stack)})


@dataclass(frozen=True)
class BlockedOn:
    """What a thread waits on, in Go's words (``chan receive``) with the primitive."""

    what: str
    object_repr: str = ""
    created_at: Stack = ()
    seconds: float | None = None


@dataclass(frozen=True)
class ThreadDump:
    """One thread in a leak or deadlock report (Go's goroutine dump entry)."""

    thread: ThreadInfo
    stack: Stack
    blocked_on: BlockedOn | None = None


@dataclass(frozen=True)
class LeakFinding:
    """Threads, executors, timers or contexts that outlived their scope."""

    threads: tuple[ThreadDump, ...] = ()
    others: tuple[str, ...] = ()
    """One line each: ``ThreadPoolExecutor created at app.py:12 was not shut down``,
    ``Timer created at ... still pending``, ``context ... cancel never called``."""
    scope: str = ""
    timestamp: float = field(default_factory=time.time)
    kind: Literal["leak"] = "leak"

    @property
    def fingerprint(self) -> str:
        sites = sorted(_site(d.thread.created_at) for d in self.threads)
        return _fingerprint("leak", self.scope, *sites, *sorted(self.others))


@dataclass(frozen=True)
class DeadlockFinding:
    """``all goroutines are asleep - deadlock!`` with every thread's dump."""

    threads: tuple[ThreadDump, ...]
    timestamp: float = field(default_factory=time.time)
    kind: Literal["deadlock"] = "deadlock"

    @property
    def fingerprint(self) -> str:
        return _fingerprint("deadlock", *sorted(_site(d.stack) for d in self.threads))


@dataclass(frozen=True)
class LockOrderEdge:
    """Thread ``thread`` took ``second`` while holding ``first``."""

    first: str
    second: str
    thread: ThreadInfo
    first_acquired_at: Stack
    second_acquired_at: Stack


@dataclass(frozen=True)
class InversionFinding:
    """``WARNING: POTENTIAL DEADLOCK (lock-order inversion)``: a cycle in the lock-order
    graph, one edge per lock of the cycle."""

    cycle: tuple[LockOrderEdge, ...]
    timestamp: float = field(default_factory=time.time)
    kind: Literal["lock-order-inversion"] = "lock-order-inversion"

    @property
    def fingerprint(self) -> str:
        return _fingerprint(
            "inversion", *sorted(_site(e.second_acquired_at) for e in self.cycle)
        )


Finding = RaceFinding | LeakFinding | DeadlockFinding | InversionFinding


def to_dict(finding: Finding) -> dict[str, Any]:
    """The JSON shape of a finding (docs/report-schema.md).  Frames whose source line
    was not filled in when they were recorded get it here, as the text report does."""
    d = asdict(finding)
    d["fingerprint"] = finding.fingerprint
    _fill_lines(d)
    return d


def _fill_lines(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("line") == "" and "filename" in node and "lineno" in node:
            node["line"] = linecache.getline(node["filename"], node["lineno"]).strip()
        for value in node.values():
            _fill_lines(value)
    elif isinstance(node, list | tuple):
        for value in node:
            _fill_lines(value)
