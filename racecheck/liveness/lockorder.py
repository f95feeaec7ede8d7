"""Lock-order inversions: the potential deadlock found even in a run that did not hang.

A :class:`LockOrderChecker` is the ``events`` lock listener.  It keeps, per thread, the
stack of locks held, and a graph with an edge ``A -> B`` each time a thread takes B
(blocking) while holding A.  When a new edge closes a cycle the cycle is reported once,
ThreadSanitizer-style, with for each edge the thread and the two stacks (where the first
lock was taken, where the second was taken while holding it).

A cycle is reported only if it could deadlock:

* a ``try_lock`` (``blocking=False``) cannot wait, so it adds no edge into the lock it
  took (the lock is held afterwards, so edges *out of* it still count);
* re-acquiring a lock the thread already holds (an RLock) adds nothing;
* each edge of the cycle must be taken by a different thread (the edges can be assigned
  to distinct threads), so a cycle whose edges all come from one thread is never shown;
* no gate lock: if one lock was held, before the edge's first lock, on every
  observation of every edge of the cycle, the threads serialise on it and cannot
  deadlock.

Lock identity: each lock seen gets a fresh serial number, and the graph is keyed by
serial.  The lock is referenced weakly; when it dies its node and edges are dropped, so a
new lock at the same address starts clean.  (Weakref callbacks only queue the serial: they
may run inside our own critical section, during a garbage collection.)  Objects that do
not support weak references are keyed by id and type, best effort.
"""

from __future__ import annotations

import _thread
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from racecheck._frames import user_frames
from racecheck._rawsync import allocate_lock, get_ident
from racecheck.engine.stacks import line_of
from racecheck.instrument.stdlib_common import is_internal_file
from racecheck.liveness.leaks import stack_from_site
from racecheck.report.findings import InversionFinding, LockOrderEdge, ThreadInfo
from racecheck.sync import events

__all__ = ["LockOrderChecker"]

Site = tuple[events.SiteFrame, ...]
_PACKAGE_DIR = events._PACKAGE_DIR
_MAX_SAMPLES = 4  # per edge: one (thread, stacks) sample for each of the first threads


def _capture(depth: int, limit: int = 8) -> Site:
    """The user's stack ``depth`` frames above the caller, as reports show it: it starts
    past racecheck's frames and those of contract-modelled stdlib modules (a
    ``Condition``'s ``__enter__`` taking its lock), at the user's line."""
    try:
        frame: Any = sys._getframe(depth + 1)
    except ValueError:
        return ()
    while frame is not None and is_internal_file(frame.f_code.co_filename):
        frame = frame.f_back
    return tuple(
        (f.f_code.co_filename, f.f_lineno, f.f_code.co_name) for f in user_frames(frame, limit)
    )


class _LazySite:
    """Where a lock was taken while the thread held no other: the user's frame as
    ``(code, f_lasti)``, turned into a :data:`Site` only if a later acquisition makes an
    edge out of this lock (rare), so the common one-lock-at-a-time case computes no line
    number and walks no stack."""

    __slots__ = ("code", "lasti")

    def __init__(self, code: Any, lasti: int) -> None:
        self.code = code
        self.lasti = lasti

    def resolve(self) -> Site:
        code = self.code
        return ((code.co_filename, line_of(code, self.lasti), code.co_name),)


def _lazy_site(depth: int) -> Site | _LazySite:
    """The first user frame from ``depth`` frames above the caller (as :func:`_capture`
    finds it), unresolved."""
    try:
        frame: Any = sys._getframe(depth + 1)
    except ValueError:
        return ()
    while frame is not None and is_internal_file(frame.f_code.co_filename):
        frame = frame.f_back
    return () if frame is None else _LazySite(frame.f_code, frame.f_lasti)


def _resolved(site: Site | _LazySite) -> Site:
    return site.resolve() if isinstance(site, _LazySite) else site


@dataclass
class _Node:
    serial: int
    name: str
    kind: type
    ref: weakref.ref[Any] | None


@dataclass(slots=True)
class _Held:
    serial: int
    site: Site | _LazySite
    count: int = 1


@dataclass
class _Sample:
    thread: ThreadInfo
    first_site: Site
    second_site: Site


@dataclass
class _Edge:
    first: int
    second: int
    gates: frozenset[int]
    """Locks held before ``first`` on every observation (intersection)."""
    samples: dict[int, _Sample] = field(default_factory=dict)
    """By thread serial: which threads took this edge, with where."""


class _PerThread(_thread._local):
    """Per-thread state (``_thread._local``: never patched, no threading lock)."""

    def __init__(self) -> None:
        self.held: list[_Held] = []
        self.serial = 0
        self.busy = False
        # Guards ``held``: its own thread changes it without the checker's lock (the
        # fast paths), another thread only to drop a Lock it released for this one.
        # Re-entrant: a signal handler run inside a section may take a lock too.
        self.mutex = _thread.RLock()


class LockOrderChecker:
    """The lock-order graph and its cycle reports.

    ``on_inversion`` is called once per new inversion, in the thread whose acquisition
    closed the cycle, outside racecheck's locks.
    """

    def __init__(
        self,
        on_inversion: Callable[[InversionFinding], object] | None = None,
        max_cycle: int = 8,
    ) -> None:
        self.on_inversion = on_inversion
        self.max_cycle = max_cycle
        self._lock = allocate_lock()
        self._local = _PerThread()
        self._states: dict[int, _PerThread] = {}  # by ident, to release from another thread
        self._nodes: dict[int, _Node] = {}  # by id(lock)
        self._edges: dict[int, dict[int, _Edge]] = {}  # first serial -> second serial -> edge
        self._dead: deque[tuple[int, int]] = deque()  # (id, serial) of collected locks
        self._serials = 0
        self._threads = 0
        self._reported: set[frozenset[Any]] = set()
        self._findings: list[InversionFinding] = []

    # -- control ------------------------------------------------------------------------

    def start(self) -> LockOrderChecker:
        events.set_lock_listener(self)
        return self

    def stop(self) -> None:
        if events._locks is self:
            events.set_lock_listener(None)

    @property
    def findings(self) -> list[InversionFinding]:
        with self._lock:
            return list(self._findings)

    # -- LockListener -------------------------------------------------------------------

    def lock_acquired(self, lock: object, blocking: bool, depth: int) -> None:
        state = self._local
        held = state.held
        if not held and state.serial and not state.busy and not self._dead:
            # Fast path: with no other lock held this acquisition makes no edge, so only
            # the held stack changes (thread-local); the node already exists.  A
            # lock-free dict read: nodes are immutable once published.  Nothing here
            # holds a lock while it allocates, so a finaliser re-entering is harmless.
            node = self._nodes.get(id(lock))
            if node is not None and node.ref is not None and node.ref() is lock:
                try:
                    frame = sys._getframe(depth + 1)
                except ValueError:  # called from C with no Python caller above
                    frame = None
                if frame is None or is_internal_file(frame.f_code.co_filename):
                    site: Site | _LazySite = _lazy_site(depth + 1)
                else:
                    site = _LazySite(frame.f_code, frame.f_lasti)
                del frame
                entry = _Held(node.serial, site)
                with state.mutex:
                    held.append(entry)
                return
        if state.busy:
            return  # re-entered (e.g. from a finaliser run by a collection inside ours)
        state.busy = True
        try:
            # The full stack matters when this acquisition can make an edge (another lock
            # is held); as the outer lock of a later edge, its innermost frame names the
            # place well enough, and the common case (one lock at a time) stays cheap.
            site = _capture(depth + 1, 8) if held else _lazy_site(depth + 1)
            with self._lock:
                cycles = self._acquired(state, lock, blocking, site)
            for cycle in cycles:
                self._report(cycle)
        finally:
            state.busy = False

    def lock_released(self, lock: object) -> None:
        state = self._local
        if state.busy:
            return
        node = self._nodes.get(id(lock))  # lock-free read, as above
        if node is None:
            return
        serial = node.serial
        held = state.held
        with state.mutex:  # no allocation inside: nothing can re-enter
            if held:
                top = held[-1]
                if top.serial == serial:  # released in LIFO order: the common case
                    top.count -= 1
                    if top.count == 0:
                        held.pop()
                    return
                if _drop(held, serial):
                    return
        state.busy = True
        try:
            with self._lock:
                # Released by another thread than the one that took it (a Lock used
                # as a signal): it is no longer held by its owner either.
                for other in self._states.values():
                    with other.mutex:
                        if _drop(other.held, serial):
                            break
        finally:
            state.busy = False

    # -- internals (called with self._lock held) ---------------------------------------

    def _thread_state(self, state: _PerThread) -> int:
        if state.serial == 0:
            self._threads += 1
            state.serial = self._threads
            self._states[get_ident()] = state
        return state.serial

    def _acquired(
        self, state: _PerThread, lock: object, blocking: bool, site: Site | _LazySite
    ) -> list[list[tuple[str, str, _Sample]]]:
        self._drain_dead()
        thread_serial = self._thread_state(state)
        node = self._node_for(lock)
        held = state.held
        for entry in held:
            if entry.serial == node.serial:
                entry.count += 1  # reentrant: no new ordering
                return []
        changed: list[_Edge] = []
        if blocking and held:
            info: ThreadInfo | None = None
            for index, entry in enumerate(held):
                gates = frozenset(h.serial for h in held[:index])
                out = self._edges.setdefault(entry.serial, {})
                edge = out.get(node.serial)
                if edge is None:
                    edge = out[node.serial] = _Edge(entry.serial, node.serial, gates)
                    is_new = True
                else:
                    narrowed = edge.gates & gates
                    is_new = narrowed != edge.gates or thread_serial not in edge.samples
                    edge.gates = narrowed
                if thread_serial not in edge.samples and len(edge.samples) < _MAX_SAMPLES:
                    if info is None:
                        info = _current_thread_info(thread_serial)
                    edge.samples[thread_serial] = _Sample(
                        info, _resolved(entry.site), _resolved(site)
                    )
                if is_new:
                    changed.append(edge)
        with state.mutex:
            held.append(_Held(node.serial, site))
        cycles: list[list[tuple[str, str, _Sample]]] = []
        for edge in changed:
            cycle = self._reportable_cycle(edge)
            if cycle is not None:
                cycles.append(cycle)
        return cycles

    def _node_for(self, lock: object) -> _Node:
        node = self._nodes.get(id(lock))
        if node is not None:
            if node.ref is not None and node.ref() is lock:
                return node
            if node.ref is None and node.kind is type(lock):
                return node  # not weakly referenceable: best effort by id and type
        self._serials += 1
        serial = self._serials
        dead = self._dead
        key = id(lock)

        def forget(_: object) -> None:
            dead.append((key, serial))  # only queue: we may be inside our own lock

        try:
            ref: weakref.ref[Any] | None = weakref.ref(lock, forget)
        except TypeError:
            ref = None
        node = _Node(serial, _lock_name(lock, serial), type(lock), ref)
        self._nodes[id(lock)] = node
        return node

    def _drain_dead(self) -> None:
        while self._dead:
            key, serial = self._dead.popleft()
            node = self._nodes.get(key)
            if node is not None and node.serial == serial:
                del self._nodes[key]
            self._edges.pop(serial, None)
            for out in self._edges.values():
                out.pop(serial, None)

    def _paths(self, start: int, goal: int) -> Iterator[list[_Edge]]:
        """Simple paths start -> ... -> goal of at most ``max_cycle - 1`` edges."""
        path: list[_Edge] = []
        visited = {start}

        def walk(at: int) -> Iterator[list[_Edge]]:
            for nxt, edge in list(self._edges.get(at, {}).items()):
                if nxt == goal:
                    yield [*path, edge]
                elif nxt not in visited and len(path) + 2 < self.max_cycle:
                    visited.add(nxt)
                    path.append(edge)
                    yield from walk(nxt)
                    path.pop()
                    visited.discard(nxt)

        yield from walk(start)

    def _reportable_cycle(self, new: _Edge) -> list[tuple[str, str, _Sample]] | None:
        for tried, path in enumerate(self._paths(new.second, new.first)):
            if tried >= 256:
                return None
            cycle = [new, *path]
            if frozenset.intersection(*(e.gates for e in cycle)):
                continue  # a gate lock serialises every edge
            assignment = _distinct_threads(cycle)
            if assignment is None:
                continue  # fewer threads than edges: cannot all wait at once
            samples = [e.samples[t] for e, t in zip(cycle, assignment, strict=True)]
            locks_key = frozenset((e.first, e.second) for e in cycle)
            sites_key = frozenset((s.first_site[:1], s.second_site[:1]) for s in samples)
            if locks_key in self._reported or sites_key in self._reported:
                continue
            self._reported.add(locks_key)
            self._reported.add(sites_key)
            return [
                (self._name(e.first), self._name(e.second), sample)
                for e, sample in zip(cycle, samples, strict=True)
            ]
        return None

    def _name(self, serial: int) -> str:
        for node in self._nodes.values():
            if node.serial == serial:
                return node.name
        return f"lock M{serial}"

    def _report(self, cycle: list[tuple[str, str, _Sample]]) -> None:
        """Build the finding (reads source lines: outside our lock) and hand it out."""
        finding = InversionFinding(
            cycle=tuple(
                LockOrderEdge(
                    first=first,
                    second=second,
                    thread=sample.thread,
                    first_acquired_at=stack_from_site(sample.first_site),
                    second_acquired_at=stack_from_site(sample.second_site),
                )
                for first, second, sample in cycle
            )
        )
        with self._lock:
            self._findings.append(finding)
        if self.on_inversion is not None:
            self.on_inversion(finding)


def _drop(held: list[_Held], serial: int) -> bool:
    for index in range(len(held) - 1, -1, -1):
        entry = held[index]
        if entry.serial == serial:
            entry.count -= 1
            if entry.count == 0:
                del held[index]
            return True
    return False


def _distinct_threads(cycle: list[_Edge]) -> list[int] | None:
    """Assign each edge a different thread that took it (bipartite matching), or None."""
    owner: dict[int, int] = {}  # thread serial -> index of the edge it is assigned to

    def place(index: int, seen: set[int]) -> bool:
        for thread in cycle[index].samples:
            if thread in seen:
                continue
            seen.add(thread)
            if thread not in owner or place(owner[thread], seen):
                owner[thread] = index
                return True
        return False

    for index in range(len(cycle)):
        if not place(index, set()):
            return None
    by_edge = {index: thread for thread, index in owner.items()}
    return [by_edge[i] for i in range(len(cycle))]


def _current_thread_info(serial: int) -> ThreadInfo:
    ident = get_ident()
    # threading._active read directly: current_thread() could create a _DummyThread,
    # which takes threading's own (possibly patched) lock from inside a lock hook.
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    if thread is None:
        return ThreadInfo(name=f"thread {ident}", ident=ident, tid=serial)
    return ThreadInfo(name=thread.name, ident=ident, tid=serial, daemon=thread.daemon)


def _lock_name(lock: object, serial: int) -> str:
    name = f"{type(lock).__name__} M{serial} ({id(lock):#x})"
    site = getattr(lock, "_created_at", None)
    if site:
        try:
            filename, lineno, function = site[0]
            name += f" created at {filename}:{lineno} in {function}"
        except (TypeError, ValueError):
            pass
    return name
