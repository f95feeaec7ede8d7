"""The pure-Python happens-before race detector (FastTrack), racecheck's reference core.

Every access goes: thread state (a thread-local) -> ObjShadow (``dict.get(id(obj))``) ->
Cell (``dict.get(name)``) -> one int compare with the thread's current epoch.  Only when
that same-epoch fast path fails does the access take the object's stripe lock, record
its stack (interned, bounded) and apply FastTrack's rules; races are turned into
:class:`RaceFinding` objects after the lock is released, and callbacks run with no
engine lock held.

Threads: each live thread owns a *slot* (its index in vector clocks).  A finished thread's
slot is reused by a new thread only once the finished thread's final clock is ordered
before the new thread's start (the forking parent's clock covers it, typically after a
``join``); the new thread's own entry then starts above the old final value, so every
old epoch of that slot is correctly judged to happen before the new thread.  Vectors so
stay as long as the number of live threads (plus finished threads nobody joined).

Thread safety without the GIL: per-thread state is confined to its thread (a
``_thread._local``, which also makes ident reuse harmless); the shadow's cells are
mutated under 64 striped raw locks (by object id); the thread registry has its own
re-entrant raw lock; findings have theirs.  A thread re-entering the engine while inside
its slow path (a GC running a user ``__del__`` that is instrumented) is ignored for that
access instead of deadlocking on a non-reentrant stripe lock.
"""

from __future__ import annotations

import _thread
import fnmatch
import os
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from racecheck._rawsync import allocate_lock, get_ident
from racecheck.engine.clock import (
    SHIFT,
    SLOT_MASK,
    ForkToken,
    Token,
    vc_join,
    vc_join_into,
)
from racecheck.engine.shadow import (
    Cell,
    ObjShadow,
    ShadowTable,
    describe,
    item_key,
    key_repr,
)
from racecheck.engine.stacks import (
    DEFAULT_DEPTH,
    LOST_STACK,
    StackTable,
    capture,
    history_capacity,
    to_frames,
)
from racecheck.report.findings import Access, RaceFinding, Stack, ThreadInfo

READ, WRITE, MUTATE = 0, 1, 2
"""Access classes: READ covers read and iterate (never conflict with each other),
MUTATE never conflicts with MUTATE, WRITE conflicts with everything."""

_OP_CLASS = {"read": READ, "iterate": READ, "write": WRITE, "mutate": MUTATE}

_ATTR, _ITEM, _WHOLE, _AUDIT = 0, 1, 2, 3

_IGNORE_RE = re.compile(r"#\s*racecheck:\s*ignore\b")


class ThreadRecord:
    """What reports say about a thread; mutated only under the registry lock."""

    __slots__ = (
        "tid",
        "name",
        "ident",
        "daemon",
        "target",
        "created_at",
        "finished",
        "final_vc",
        "owner",
    )

    def __init__(
        self,
        tid: int,
        name: str,
        ident: int | None,
        daemon: bool,
        target: str,
        created_at: Stack,
        owner: object,
    ) -> None:
        self.tid = tid
        self.name = name
        self.ident = ident
        self.daemon = daemon
        self.target = target
        self.created_at = created_at
        self.finished = False
        self.final_vc: tuple[int, ...] | None = None
        self.owner = owner

    def info(self) -> ThreadInfo:
        return ThreadInfo(
            name=self.name,
            ident=self.ident,
            tid=self.tid,
            running=not self.finished,
            daemon=self.daemon,
            target=self.target,
            created_at=self.created_at,
        )


class _ThreadState:
    """One thread's clock; touched only by that thread."""

    __slots__ = ("vc", "slot", "epoch", "rec", "busy", "lease", "__weakref__")

    def __init__(self, vc: list[int], slot: int, rec: ThreadRecord) -> None:
        self.vc = vc
        self.slot = slot
        self.epoch = (vc[slot] << SHIFT) | slot
        self.rec = rec
        self.busy = False
        self.lease: _Lease | None = None


_METAS_MAX = 1 << 16
"""Interned metas kept at most (see ``_slow``)."""


class _Lease:
    """A live thread's hold on its slot.  Freed by ``end()``, or, for a thread that
    never reported its end, when its thread-local state dies with the thread (the
    weakref callback only appends to a list: no lock, see ShadowTable._dead)."""

    __slots__ = ("slot", "vc", "rec", "freed", "ref", "pending")

    def __init__(self, ts: _ThreadState, pending: list[_Lease]) -> None:
        self.slot = ts.slot
        self.vc = ts.vc
        self.rec = ts.rec
        self.freed = False
        self.pending = pending
        self.ref = weakref.ref(ts, self._on_dead)

    def _on_dead(self, _ref: object) -> None:
        self.pending.append(self)


def _thread_name(thread: Any, default: str) -> str:
    try:
        name = thread.name
    except Exception:
        return default
    return name if isinstance(name, str) else default


def _target_name(thread: Any) -> str:
    target = getattr(thread, "_target", None)
    if target is None:
        return ""
    qual = getattr(target, "__qualname__", None)
    return qual if isinstance(qual, str) else type(target).__qualname__


def parse_suppressions(patterns: Iterable[str]) -> list[str]:
    """TSan-style lines: ``race:pattern`` (other kinds ignored here), bare patterns are
    race patterns; blank lines and ``#`` comments skipped."""
    out = []
    for raw in patterns:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind, sep, pat = line.partition(":")
        if sep and kind.strip().isalpha() and "/" not in kind and "\\" not in kind:
            if kind.strip() != "race":
                continue
            line = pat.strip()
        if line:
            out.append(line)
    return out


class Detector:
    """The Engine: AccessSink + ThreadLifecycle + HappensBefore (see racecheck._types).

    ``history_size``: Go-style 0..7; the number of distinct previous-access stacks kept is
    ``4096 << history_size``.  ``suppressions``: TSan-style ``race:pattern`` lines, matched
    with fnmatch against ``module.function``, ``function``, the file name and its base name
    of every frame of either stack.  ``stack_depth``: frames recorded per previous access.

    The class attributes below are the seams the native core (``engine.native``) plugs
    its C types into; everything else about threads, stacks and reports is shared.
    """

    _cell_class: Any = Cell
    _shadow_class: Any = ObjShadow
    _map_class: Any = dict
    """The ``id(obj) -> shadow`` mapping (the native core's is keyed by address in C)."""
    _state_class: Any = _ThreadState

    def __init__(
        self,
        history_size: int = 1,
        suppressions: Iterable[str] = (),
        *,
        stack_depth: int = DEFAULT_DEPTH,
        strong_cap: int = 1 << 20,
    ) -> None:
        self._tls = _thread._local()
        self._shadow = ShadowTable(strong_cap, self._shadow_class, self._map_class)
        self._objs = self._shadow.objs
        self._stripes = [allocate_lock() for _ in range(64)]
        self._stacks = self._make_stacks(history_capacity(history_size))
        self._metas: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._depth = max(1, stack_depth)
        self._reg = _thread.RLock()
        self._owner = object()
        self._nslots = 0
        self._free: list[tuple[int, int]] = []
        self._pending: list[_Lease] = []
        self._leases: dict[int, _Lease] = {}
        self._next_tid = 1
        self._records: dict[int, tuple[weakref.ref[Any], ThreadRecord]] = {}
        self._report_lock = allocate_lock()
        self._findings: list[RaceFinding] = []
        self._seen: set[frozenset[tuple[str, int]]] = set()
        self._callbacks: list[Callable[[RaceFinding], None]] = []
        self._suppressions = parse_suppressions(suppressions)
        self._module_files: dict[str, str] = {}
        self._bind_hot_paths()
        # The creation point: threads never seen forked start ordered after it.
        self._origin: tuple[int, ...] = ()
        creator = self._adopt()
        self._origin = tuple(creator.vc)
        self._tick(creator)

    @staticmethod
    def _make_stacks(capacity: int) -> Any:
        """The previous-access stack table (the native core has a C one)."""
        return StackTable(capacity)

    # ---- thread states -------------------------------------------------------------

    def _current(self) -> _ThreadState:
        try:
            ts: _ThreadState = self._tls.ts
        except AttributeError:
            ts = self._adopt()
        return ts

    def _drain_pending_locked(self) -> None:
        pending = self._pending
        while pending:
            lease = pending.pop()
            self._free_lease_locked(lease)

    def _free_lease_locked(self, lease: _Lease) -> None:
        if lease.freed:
            return
        lease.freed = True
        lease.rec.finished = True
        self._leases.pop(lease.slot, None)
        self._free.append((lease.slot, lease.vc[lease.slot]))

    def _take_slot_locked(self, vc: list[int] | tuple[int, ...]) -> int:
        """A free slot whose last owner's final clock is ordered before ``vc``, else a
        new slot."""
        self._drain_pending_locked()
        n = len(vc)
        for i, (slot, final) in enumerate(self._free):
            if slot < n and vc[slot] >= final:
                del self._free[i]
                return slot
        slot = self._nslots
        self._nslots = slot + 1
        return slot

    def _new_record(
        self, name: str, ident: int | None, daemon: bool, target: str, created_at: Stack
    ) -> ThreadRecord:
        tid = self._next_tid
        self._next_tid = tid + 1
        return ThreadRecord(tid, name, ident, daemon, target, created_at, self._owner)

    def _start_state(
        self, base: tuple[int, ...] | list[int], slot: int, rec: ThreadRecord
    ) -> _ThreadState:
        vc = list(base)
        if len(vc) <= slot:
            vc.extend([0] * (slot + 1 - len(vc)))
        vc[slot] += 1
        ts: _ThreadState = self._state_class(vc, slot, rec)
        return ts

    def _lease_locked(self, ts: _ThreadState) -> None:
        lease = _Lease(ts, self._pending)
        ts.lease = lease
        self._leases[ts.slot] = lease

    def _adopt(self) -> _ThreadState:
        """A thread the engine never saw forked: a slot on first use, ordered after the
        engine's creation point."""
        ident = get_ident()
        thread = threading._active.get(ident)  # type: ignore[attr-defined]
        name = _thread_name(thread, f"Thread-{ident}") if thread is not None else f"Thread-{ident}"
        daemon = bool(getattr(thread, "daemon", False)) if thread is not None else False
        with self._reg:
            slot = self._take_slot_locked(self._origin)
            rec = self._new_record(name, ident, daemon, "", ())
            ts = self._start_state(self._origin, slot, rec)
            self._lease_locked(ts)
        self._set_ts(ts)
        return ts

    # ---- ThreadLifecycle -----------------------------------------------------------

    def fork(self, thread: Any, created_at: Stack) -> object:
        parent = self._current()
        with self._reg:
            slot = self._take_slot_locked(parent.vc)
            rec = self._new_record(
                _thread_name(thread, "Thread-?"),
                None,
                bool(getattr(thread, "daemon", False)),
                _target_name(thread),
                tuple(created_at),
            )
            child = self._start_state(parent.vc, slot, rec)
            key = id(thread)
            records = self._records

            def forget(_ref: object, key: int = key) -> None:
                records.pop(key, None)  # lock-free: one atomic dict operation

            try:
                ref: weakref.ref[Any] | None = weakref.ref(thread, forget)
            except TypeError:
                ref = None
            if ref is not None:
                records[key] = (ref, rec)
        self._tick(parent)
        return ForkToken(tuple(child.vc), slot, rec)

    def begin(self, thread: Any, token: object) -> None:
        if (
            not isinstance(token, ForkToken)
            or not isinstance(token.record, ThreadRecord)
            or token.record.owner is not self._owner
        ):
            if getattr(self._tls, "ts", None) is None:
                self._adopt()
            return
        rec = token.record
        ts = self._state_class(list(token.vc), token.slot, rec)
        with self._reg:
            rec.ident = get_ident()
            rec.name = _thread_name(thread, rec.name)
            self._lease_locked(ts)
        old = getattr(self._tls, "ts", None)
        if old is not None:
            self._join(ts, old.vc)  # what this thread did before begin precedes it
        self._set_ts(ts)
        if old is not None:
            with self._reg:
                if old.lease is not None:
                    self._free_lease_locked(old.lease)

    def end(self, thread: Any) -> None:
        ts = getattr(self._tls, "ts", None)
        if ts is None:
            return
        with self._reg:
            ts.rec.final_vc = tuple(ts.vc)
            if ts.lease is not None:
                self._free_lease_locked(ts.lease)
            ts.rec.finished = True
        self._set_ts(None)

    def joined(self, thread: Any) -> None:
        entry = self._records.get(id(thread))
        if entry is None or entry[0]() is not thread:
            return
        with self._reg:
            final = entry[1].final_vc
        if final:
            self._join(self._current(), final)

    # ---- HappensBefore -------------------------------------------------------------

    def _set_ts(self, ts: Any) -> None:
        """Make ``ts`` the calling thread's state (None: forget it); the native core
        also caches it in C."""
        if ts is None:
            del self._tls.ts
        else:
            self._tls.ts = ts

    @staticmethod
    def _join(ts: Any, other: Any) -> None:
        """The thread's clock := its join with ``other`` (a sequence of ints)."""
        vc_join_into(ts.vc, other)

    def _tick(self, ts: _ThreadState) -> None:
        """Advance the thread's own clock after a release, so its later accesses are not
        covered by what it just released."""
        vc = ts.vc
        slot = ts.slot
        vc[slot] += 1
        ts.epoch = (vc[slot] << SHIFT) | slot

    def publish(self, into: object | None = None) -> object:
        ts = self._current()
        if isinstance(into, Token) and into.vc:
            token = Token(vc_join(ts.vc, into.vc))
        else:
            token = Token(tuple(ts.vc))
        self._tick(ts)
        return token

    def consume(self, token: object) -> None:
        if isinstance(token, Token) and token.vc:
            self._join(self._current(), token.vc)

    def audit(self, obj: object, op: str, what: str, depth: int = 1) -> None:
        cls = _OP_CLASS.get(op)
        if cls is None:
            raise ValueError(f"audit op must be read/write/mutate/iterate, not {op!r}")
        ts = self._current()
        sh = self._objs.get(id(obj))
        if sh is not None and sh.audit is not None:
            cell = sh.audit
            x = cell.w if cls == WRITE else cell.m if cls == MUTATE else cell.r
            if x == ts.epoch:
                return
        try:
            frame: FrameType | None = sys._getframe(depth + 1)
        except ValueError:
            frame = None
        self._slow(ts, obj, _AUDIT, None, cls, what, frame)

    # ---- AccessSink: the hot path --------------------------------------------------

    read_attr: Callable[[object, str, FrameType], None]
    write_attr: Callable[[object, str, FrameType], None]
    read_item: Callable[[object, object, FrameType], None]
    write_item: Callable[[object, object, FrameType], None]
    mutate: Callable[[object, FrameType], None]
    iterate: Callable[[object, FrameType], None]

    def _bind_hot_paths(self) -> None:
        """Install the six AccessSink methods as closures over this detector's tables.

        They are the hottest code in racecheck: a closure reads its tables from cells
        (``LOAD_DEREF``) instead of ``self`` attributes, which measurably shortens the
        same-epoch fast path: thread state, ``objs.get(id(obj))``, ``cells.get(name)``,
        one int compare.  Anything else goes to :meth:`_slow`.
        """
        tls = self._tls
        adopt = self._adopt
        objs_get = self._objs.get
        slow = self._slow

        def read_attr(obj: object, name: str, frame: FrameType) -> None:
            try:
                ts = tls.ts
            except AttributeError:
                ts = adopt()
            sh = objs_get(id(obj))
            if sh is not None:
                attrs = sh.attrs
                if attrs is not None:
                    cell = attrs.get(name)
                    if cell is not None:
                        r = cell.r
                        if r == ts.epoch:
                            return
                        if type(r) is dict and r.get(ts.slot) == ts.vc[ts.slot]:
                            return  # read-shared, same epoch
            slow(ts, obj, _ATTR, name, READ, "read", frame)

        def write_attr(obj: object, name: str, frame: FrameType) -> None:
            try:
                ts = tls.ts
            except AttributeError:
                ts = adopt()
            sh = objs_get(id(obj))
            if sh is not None:
                attrs = sh.attrs
                if attrs is not None:
                    cell = attrs.get(name)
                    if cell is not None and cell.w == ts.epoch:
                        return
            slow(ts, obj, _ATTR, name, WRITE, "write", frame)

        def read_item(container: object, key: object, frame: FrameType) -> None:
            try:
                ts = tls.ts
            except AttributeError:
                ts = adopt()
            sh = objs_get(id(container))
            if sh is not None:
                items = sh.items
                tp = type(key)
                if items is not None and (tp is int or tp is str):
                    cell = items.get(key)
                    if cell is not None:
                        r = cell.r
                        if r == ts.epoch:
                            return
                        if type(r) is dict and r.get(ts.slot) == ts.vc[ts.slot]:
                            return
            slow(ts, container, _ITEM, key, READ, "read", frame)

        def write_item(container: object, key: object, frame: FrameType) -> None:
            try:
                ts = tls.ts
            except AttributeError:
                ts = adopt()
            sh = objs_get(id(container))
            if sh is not None:
                items = sh.items
                tp = type(key)
                if items is not None and (tp is int or tp is str):
                    cell = items.get(key)
                    if cell is not None and cell.w == ts.epoch:
                        return
            slow(ts, container, _ITEM, key, WRITE, "write", frame)

        def mutate(container: object, frame: FrameType) -> None:
            try:
                ts = tls.ts
            except AttributeError:
                ts = adopt()
            sh = objs_get(id(container))
            if sh is not None:
                cell = sh.whole
                if cell is not None:
                    m = cell.m
                    if m == ts.epoch:
                        return
                    if type(m) is dict and m.get(ts.slot) == ts.vc[ts.slot]:
                        return  # concurrent mutators, same epoch
            slow(ts, container, _WHOLE, None, MUTATE, "mutate", frame)

        def iterate(container: object, frame: FrameType) -> None:
            try:
                ts = tls.ts
            except AttributeError:
                ts = adopt()
            sh = objs_get(id(container))
            if sh is not None:
                cell = sh.whole
                if cell is not None:
                    r = cell.r
                    if r == ts.epoch:
                        return
                    if type(r) is dict and r.get(ts.slot) == ts.vc[ts.slot]:
                        return
            slow(ts, container, _WHOLE, None, READ, "iterate", frame)

        self.read_attr = read_attr
        self.write_attr = write_attr
        self.read_item = read_item
        self.write_item = write_item
        self.mutate = mutate
        self.iterate = iterate

    # ---- the slow path -------------------------------------------------------------

    def _slow(
        self,
        ts: _ThreadState,
        obj: object,
        ns: int,
        key: object,
        cls: int,
        op: str,
        frame: FrameType | None,
    ) -> None:
        if ts.busy:
            return  # re-entered from inside the engine (GC, __del__): see module doc
        ts.busy = True
        prevs: list[Any] | None = None
        try:
            sh = self._objs.get(id(obj)) or self._shadow.get_or_create(obj)
            cell = _peek(sh, ns, key)
            if cell is not None and self._same_epoch_rule(cell, cls, ts):
                return  # e.g. tuple keys and audits, which the inline fast paths skip
            meta = (op, self._stacks.intern_frame(frame, self._depth), ts.rec)
            # One tuple per (op, stack, thread) however many locations store it: a
            # program touches many locations from few sites (64 bytes per stored access).
            metas = self._metas
            meta = metas.setdefault(meta, meta)
            if len(metas) > _METAS_MAX:
                metas.clear()  # only sharing is lost, never a meta
            prevs = self._update(obj, sh, ns, key, cell, cls, ts, meta)
        finally:
            ts.busy = False
        if prevs:
            self._report(ts, obj, ns, key, op, frame, prevs)

    _same_epoch_rule = staticmethod(lambda cell, cls, ts: _same_epoch(cell, cls, ts))
    """FastTrack's "nothing to do" test (the native core substitutes its C version)."""

    def _update(
        self,
        obj: object,
        sh: ObjShadow,
        ns: int,
        key: object,
        cell: Cell | None,
        cls: int,
        ts: _ThreadState,
        meta: Any,
    ) -> list[Any] | None:
        """Apply the FastTrack rule to the location, under its stripe lock; returns the
        racing previous accesses (the native core overrides: its apply locks itself)."""
        with self._stripes[(id(obj) >> 4) & 63]:
            return _apply(self._cell_locked(sh, ns, key), cls, ts, meta)

    def _cell_locked(self, sh: ObjShadow, ns: int, key: object) -> Cell:
        if ns == _ATTR:
            attrs = sh.attrs
            if attrs is None:
                attrs = sh.attrs = {}
            name = str(key)
            found = attrs.get(name)
            if found is None:
                found = attrs[name] = self._cell_class()
            return found
        if ns == _ITEM:
            items = sh.items
            if items is None:
                items = sh.items = {}
            k, by_id = item_key(key)
            cell = items.get(k)
            if cell is None:
                cell = items[k] = self._cell_class()
                if by_id:
                    if sh.keys is None:
                        sh.keys = []
                    sh.keys.append(key)
            return cell
        if ns == _WHOLE:
            if sh.whole is None:
                sh.whole = self._cell_class()
            return sh.whole
        if sh.audit is None:
            sh.audit = self._cell_class()
        return sh.audit

    # ---- reports -------------------------------------------------------------------

    @staticmethod
    def _location(prefix: str, ns: int, key: object, op: str) -> str:
        if ns == _ATTR:
            return f"{prefix}.{key}"
        if ns == _ITEM:
            return f"{prefix}[{key_repr(item_key(key)[0])}]"
        if ns == _WHOLE:
            return prefix
        return f"{prefix}.{op}"

    def _report(
        self,
        ts: _ThreadState,
        obj: object,
        ns: int,
        key: object,
        op: str,
        frame: FrameType | None,
        prevs: list[Any],
    ) -> None:
        cur_stack = to_frames(capture(frame))
        with self._reg:
            cur_thread = ts.rec.info()
            prev_threads = [p[2].info() for p in prevs]
        prefix, desc = describe(obj)
        current = Access(op, self._location(prefix, ns, key, op), desc, cur_thread, cur_stack)
        new: list[RaceFinding] = []
        for (pop, sid, _rec), pthread in zip(prevs, prev_threads, strict=True):
            flat = self._stacks.get(sid)
            pstack = to_frames(flat) if flat is not None else LOST_STACK
            previous = Access(pop, self._location(prefix, ns, key, pop), desc, pthread, pstack)
            finding = RaceFinding(current, previous)
            pair = finding.site_pair
            with self._report_lock:
                if pair in self._seen:
                    continue
                self._seen.add(pair)
            if self._silenced(finding):
                continue
            with self._report_lock:
                self._findings.append(finding)
            new.append(finding)
        if new:
            with self._report_lock:
                callbacks = list(self._callbacks)
            for finding in new:
                for cb in callbacks:
                    cb(finding)

    def _silenced(self, finding: RaceFinding) -> bool:
        for access in (finding.current, finding.previous):
            if access.stack and _IGNORE_RE.search(access.stack[0].line):
                return True
        if not self._suppressions:
            return False
        for access in (finding.current, finding.previous):
            for fr in access.stack:
                names = [fr.function, fr.filename, os.path.basename(fr.filename)]
                module = self._module_of(fr.filename)
                if module:
                    names.append(f"{module}.{fr.function}")
                for pat in self._suppressions:
                    for name in names:
                        if fnmatch.fnmatchcase(name, pat):
                            return True
        return False

    def _module_of(self, filename: str) -> str:
        module = self._module_files.get(filename)
        if module is None:
            self._module_files = mapping = {}
            for mname, mod in list(sys.modules.items()):
                f = getattr(mod, "__file__", None)
                if isinstance(f, str):
                    mapping[f] = mname
            module = mapping.get(filename, "")
            mapping.setdefault(filename, module)
        return module

    # ---- the Engine API ------------------------------------------------------------

    def races(self) -> list[RaceFinding]:
        with self._report_lock:
            return list(self._findings)

    def add_race_callback(self, callback: Callable[[RaceFinding], None]) -> None:
        with self._report_lock:
            self._callbacks.append(callback)

    def remove_race_callback(self, callback: Callable[[RaceFinding], None]) -> None:
        with self._report_lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def reset(self) -> None:
        """Forget the findings and the dedup set (the shadow state is kept)."""
        with self._report_lock:
            self._findings.clear()
            self._seen.clear()

    def clear_shadow(self) -> None:
        """Forget every location's history (e.g. between independent tests)."""
        self._shadow.clear()
        self._stacks.clear()

    def sweep(self) -> None:
        """Reclaim the shadow of non-weakrefable objects nothing else holds (automatic
        on growth; exposed for tests and long-running embedders)."""
        self._shadow.sweep()

    def stats(self) -> dict[str, int]:
        with self._reg:
            self._drain_pending_locked()
            slots = self._nslots
            live = len(self._leases)
            free = len(self._free)
        return {
            "shadow_objects": len(self._shadow),
            "shadow_strong": self._shadow.strong_count(),
            "shadow_reclaimed": self._shadow.reclaimed,
            "stacks": len(self._stacks),
            "slots": slots,
            "live_threads": live,
            "free_slots": free,
            "races": len(self.races()),
        }

    def vector_size(self) -> int:
        """Length of the calling thread's vector clock (tests: slot reuse)."""
        return len(self._current().vc)


def _peek(sh: ObjShadow, ns: int, key: object) -> Cell | None:
    """The cell of a location if it exists, without the lock (built-in dict reads are
    atomic with or without the GIL; a cell is published fully built)."""
    if ns == _ATTR:
        return sh.attrs.get(key) if sh.attrs is not None else None  # type: ignore[call-overload]
    if ns == _ITEM:
        return sh.items.get(item_key(key)[0]) if sh.items is not None else None
    return sh.whole if ns == _WHOLE else sh.audit


def _same_epoch(cell: Cell, cls: int, ts: _ThreadState) -> bool:
    """FastTrack's same-epoch rules: this thread already made an access of this class
    (or, for reads, of any class covering it) in its current epoch."""
    epoch = ts.epoch
    if cls == WRITE:
        return cell.w == epoch
    x = cell.m if cls == MUTATE else cell.r
    if x == epoch:
        return True
    return type(x) is dict and x.get(ts.slot) == ts.vc[ts.slot]


def _check(x: Any, xm: Any, vc: list[int], out: list[Any]) -> None:
    """Append the meta of every access in ``x`` (an epoch or a slot->clock dict) that is
    not ordered before ``vc``."""
    if type(x) is int:
        if x:
            slot = x & SLOT_MASK
            if slot >= len(vc) or vc[slot] < x >> SHIFT:
                out.append(xm)
        return
    n = len(vc)
    for slot, c in x.items():
        if slot >= n or vc[slot] < c:
            out.append(xm[slot])


def _add(cell: Cell, is_m: bool, ts: _ThreadState, meta: Any) -> None:
    """Record a read-like access (read/iterate into ``r``, mutate into ``m``): an epoch
    while accesses are totally ordered, a slot->clock dict once they are concurrent."""
    x = cell.m if is_m else cell.r
    vc = ts.vc
    slot = ts.slot
    if type(x) is int:
        if x == 0 or ((x & SLOT_MASK) < len(vc) and vc[x & SLOT_MASK] >= x >> SHIFT):
            new_x: Any = ts.epoch
            new_m: Any = meta
        else:
            old_m = cell.mm if is_m else cell.rm
            new_x = {x & SLOT_MASK: x >> SHIFT, slot: vc[slot]}
            new_m = {x & SLOT_MASK: old_m, slot: meta}
    else:
        x[slot] = vc[slot]
        (cell.mm if is_m else cell.rm)[slot] = meta
        return
    if is_m:
        cell.m = new_x
        cell.mm = new_m
    else:
        cell.r = new_x
        cell.rm = new_m


def _apply(cell: Cell, cls: int, ts: _ThreadState, meta: Any) -> list[Any] | None:
    """FastTrack's rules for one access (called under the stripe lock).  Returns the
    metas of the earlier accesses it races with (None when there are none).

    The common cases (no earlier access, or an exclusive epoch ordered before us) are
    tested inline; sets of concurrent accesses go through ``_check``.
    """
    races: list[Any] | None = None
    epoch = ts.epoch
    vc = ts.vc
    n = len(vc)
    w = cell.w
    if cls == WRITE:
        if w == epoch:
            return None
        if w and ((w & SLOT_MASK) >= n or vc[w & SLOT_MASK] < w >> SHIFT):
            races = [cell.wm]
        r = cell.r
        if r != 0 and (
            type(r) is not int or (r & SLOT_MASK) >= n or vc[r & SLOT_MASK] < r >> SHIFT
        ):
            if races is None:
                races = []
            _check(r, cell.rm, vc, races)
        m = cell.m
        if m != 0 and (
            type(m) is not int or (m & SLOT_MASK) >= n or vc[m & SLOT_MASK] < m >> SHIFT
        ):
            if races is None:
                races = []
            _check(m, cell.mm, vc, races)
        cell.w = epoch
        cell.wm = meta
        cell.r = 0
        cell.rm = None
        cell.m = 0
        cell.mm = None
        return races
    is_m = cls == MUTATE
    if is_m:
        x, other, other_m = cell.m, cell.r, cell.rm
    else:
        x, other, other_m = cell.r, cell.m, cell.mm
    if x == epoch:
        return None
    if type(x) is dict and x.get(ts.slot) == vc[ts.slot]:
        return None
    if w and ((w & SLOT_MASK) >= n or vc[w & SLOT_MASK] < w >> SHIFT):
        races = [cell.wm]
    if other != 0:
        if races is None:
            races = []
        _check(other, other_m, vc, races)
    _add(cell, is_m, ts, meta)
    return races
