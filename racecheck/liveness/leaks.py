"""goleak for Python threads: threads (and executors, timers, contexts) that outlive a scope.

``verify_none()`` is a context manager and a decorator.  On exit every thread started
inside the scope must have finished; like goleak it retries with backoff first, because a
thread that has returned from its target but was not joined yet is not a leak.  Then it
raises :class:`racecheck.errors.LeakError` with a goroutine-dump-like report: for each
thread its name, ident, daemon flag, target, where it was started, its current stack and
what it is blocked on.

Scoping is by snapshot: the threads alive when the scope was entered are never checked,
so threads the test runner started earlier are invisible.  Threads that the test runner
itself starts during the scope (pytest-timeout's timer, xdist/execnet I/O threads) are
recognised by the module that started them and never reported.  racecheck's own helper
threads are started with ``_thread.start_new_thread`` and so never appear in
``threading.enumerate()``.

The helpers that turn a live thread into a :class:`ThreadDump` live here too and are
shared with the deadlock detector, so both reports describe a thread the same way.
"""

from __future__ import annotations

import contextlib
import dis
import fnmatch
import functools
import gc
import importlib
import linecache
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any, ParamSpec, TypeVar, overload

from racecheck._frames import user_frames
from racecheck._rawsync import allocate_lock
from racecheck.errors import LeakError
from racecheck.report.findings import BlockedOn, Frame, LeakFinding, Stack, ThreadDump, ThreadInfo
from racecheck.sync import events

__all__ = [
    "LeakOption",
    "LeakScope",
    "begin_recording",
    "end_recording",
    "Snapshot",
    "find",
    "ignore_any_function",
    "ignore_created_by",
    "ignore_current",
    "ignore_name",
    "ignore_top_function",
    "render_leak",
    "snapshot",
    "verify_none",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_PACKAGE_DIR = events._PACKAGE_DIR
"""Frames in racecheck's own files are left out of stacks: they are not the user's code."""

_THREADING_FILE = threading.__file__

_INFRASTRUCTURE_MODULES = ("_pytest", "pytest", "pytest_timeout", "xdist", "execnet", "pluggy")
"""Packages whose threads are the test runner's own business, never the user's leak."""

# ---------------------------------------------------------------------------------------
# Stacks and thread descriptions (shared with deadlock.py)
# ---------------------------------------------------------------------------------------


def _in_racecheck(filename: str) -> bool:
    return filename.startswith(_PACKAGE_DIR)


def _frame(filename: str, lineno: int, function: str) -> Frame:
    return Frame(filename, lineno, function, linecache.getline(filename, lineno).strip())


def stack_of(frame: FrameType | None, limit: int = 32) -> Stack:
    """The stack from ``frame`` outwards, innermost first, as plain data, as reports show
    it (``racecheck._frames.user_frames``).  The frame itself is not kept."""
    return tuple(
        _frame(f.f_code.co_filename, f.f_lineno or 0, _qualname(f.f_code))
        for f in user_frames(frame, limit)
    )


_BOOTSTRAP = frozenset({"Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run"})


def stack_from_site(site: Iterable[Any]) -> Stack:
    """Convert a creation site (``events.creation_site`` tuples, or Frames already) into a
    report Stack with source lines."""
    out: list[Frame] = []
    for entry in site:
        if isinstance(entry, Frame):
            out.append(
                entry if entry.line else _frame(entry.filename, entry.lineno, entry.function)
            )
        else:
            filename, lineno, function = entry
            out.append(_frame(str(filename), int(lineno), str(function)))
    return tuple(out)


def _qualname(code: Any) -> str:
    return str(getattr(code, "co_qualname", code.co_name))


def _callable_name(fn: Any) -> str:
    module = getattr(fn, "__module__", None) or ""
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{qual}" if module else str(qual)


def thread_target(thread: threading.Thread) -> str:
    """The qualified name of what the thread runs: its ``target``, the function of a
    ``threading.Timer``, or ``Subclass.run``.  Empty once the thread has finished
    (``Thread.run`` drops its target then)."""
    stdlib = _stdlib_function("thread_target")
    if stdlib is not None:
        try:
            name = stdlib(thread)
            if name:
                return str(name)
        except Exception:  # noqa: BLE001 - a bookkeeping gap must not hide the report
            pass
    target = getattr(thread, "_target", None)
    if target is None and isinstance(thread, threading.Timer):
        target = getattr(thread, "function", None)
    if target is not None:
        return _callable_name(target)
    run = type(thread).run
    if run is not threading.Thread.run:
        return _callable_name(run)
    return ""


def _stdlib_function(name: str) -> Callable[..., Any] | None:
    """A function of racecheck's thread bookkeeping (``racecheck.instrument.stdlib``),
    or None while that module is not there: then leaks.py records what it needs itself."""
    fn = getattr(_stdlib(), name, None)
    return fn if callable(fn) else None


_record_lock = allocate_lock()
_STDLIB_API = ("track_threads", "untrack_threads", "thread_created_at", "live_executors")
_stdlib_resolved: list[Any] = []  # written once: [the module or None]


def _stdlib() -> Any:
    if _stdlib_resolved:
        return _stdlib_resolved[0]
    found: Any = None
    for name in ("racecheck.instrument.stdlib", "racecheck.instrument.stdlib_threads"):
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - absent or broken: use our own recording
            continue
        if all(callable(getattr(module, attr, None)) for attr in _STDLIB_API):
            found = module
            break
    with _record_lock:
        if not _stdlib_resolved:
            _stdlib_resolved.append(found)
        return _stdlib_resolved[0]


# What a thread waits on, read from the stdlib frames at the top of its stack.  The
# outermost matching stdlib frame wins: ``queue.get`` says more than the
# ``Condition.wait`` it is implemented with.
_STDLIB_WAITS: dict[tuple[str, str], str] = {
    ("threading", "Event.wait"): "Event.wait",
    ("threading", "Condition.wait"): "Condition.wait",
    ("threading", "Condition.wait_for"): "Condition.wait",
    ("threading", "Thread.join"): "Thread.join",
    ("threading", "Thread._wait_for_tstate_lock"): "Thread.join",
    ("threading", "Semaphore.acquire"): "Semaphore.acquire",
    ("threading", "BoundedSemaphore.acquire"): "Semaphore.acquire",
    ("threading", "Barrier.wait"): "Barrier.wait",
    ("threading", "_shutdown"): "interpreter exit: joining non-daemon threads",
    ("queue", "Queue.get"): "queue.get",
    ("queue", "Queue.put"): "queue.put",
    ("queue", "Queue.join"): "queue.join",
    ("concurrent.futures._base", "Future.result"): "Future.result",
    ("concurrent.futures._base", "Future.exception"): "Future.exception",
    ("concurrent.futures._base", "wait"): "concurrent.futures.wait",
    ("concurrent.futures._base", "as_completed"): "concurrent.futures.as_completed",
    ("concurrent.futures.thread", "_worker"): "ThreadPoolExecutor worker idle",
    # racecheck's stand-ins for those (patched in while detection is on)
    ("racecheck.instrument.stdlib_sync", "_cond_wait"): "Condition.wait",
    ("racecheck.instrument.stdlib_sync", "_event_wait"): "Event.wait",
    ("racecheck.instrument.stdlib_sync", "_sem_acquire"): "Semaphore.acquire",
    ("racecheck.instrument.stdlib_sync", "_sem_enter"): "Semaphore.acquire",
    ("racecheck.instrument.stdlib_sync", "_bar_wait"): "Barrier.wait",
    ("racecheck.instrument.stdlib_sync", "_LockedRegion.__enter__"): "Lock.acquire",
    ("racecheck.instrument.stdlib_queue", "_get"): "queue.get",
    ("racecheck.instrument.stdlib_queue", "_join"): "queue.join",
    ("racecheck.instrument.stdlib_threads", "_join"): "Thread.join",
    ("racecheck.instrument.stdlib_locks", "ObservedLock.acquire"): "Lock.acquire",
    ("racecheck.instrument.stdlib_locks", "ObservedLock.__enter__"): "Lock.acquire",
    ("racecheck.instrument.stdlib_locks", "ObservedRLock.acquire"): "Lock.acquire",
    ("racecheck.instrument.stdlib_locks", "ObservedRLock.__enter__"): "Lock.acquire",
    ("racecheck.instrument.stdlib_locks", "ObservedRLock._acquire_restore"): "Condition.wait",
}

# Calls into C that block, recognised by the attribute or global name the user's code
# loaded just before the call it is stopped at.
_C_WAITS: dict[str, str] = {
    "acquire": "Lock.acquire",
    "sleep": "time.sleep",
    "get": "get",
    "put": "put",
    "wait": "wait",
    "join": "join",
    "recv": "socket.recv",
    "recv_into": "socket.recv",
    "recvfrom": "socket.recv",
    "accept": "socket.accept",
    "connect": "socket.connect",
    "select": "select",
    "poll": "poll",
    "read": "read",
    "readline": "read",
    "input": "input",
    "result": "Future.result",
}

_CALL_OPS = frozenset({"CALL", "PRECALL", "CALL_FUNCTION_EX", "CALL_KW"})
_LOAD_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL", "LOAD_NAME"})


def _wait_from_frames(frame: FrameType | None) -> str | None:
    """Name the blocking call a thread is in, from its innermost Python frames."""
    found: str | None = None
    innermost = frame
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module not in (
            "threading",
            "queue",
            "concurrent.futures._base",
            "concurrent.futures.thread",
        ) and not module.startswith("racecheck.instrument.stdlib"):
            break
        found = _STDLIB_WAITS.get((module, _qualname(frame.f_code)), found)
        frame = frame.f_back
    if found is not None:
        return found
    if innermost is None or _in_racecheck(innermost.f_code.co_filename):
        return None
    return _wait_from_instruction(innermost)


def _wait_from_instruction(frame: FrameType) -> str | None:
    """The user's frame is stopped at a call into C: look at the name it loaded for
    the callee (``time.sleep(1)`` loads ``sleep``; ``with lock:`` is BEFORE_WITH)."""
    try:
        instructions = list(dis.get_instructions(frame.f_code))
    except Exception:  # noqa: BLE001 - purely descriptive
        return None
    lasti = frame.f_lasti
    index = next((i for i, ins in enumerate(instructions) if ins.offset >= lasti), None)
    if index is None:
        return None
    current = instructions[index]
    if current.opname == "BEFORE_WITH":
        return "with-statement enter (Lock.acquire?)"
    if current.opname not in _CALL_OPS:
        return None
    for ins in reversed(instructions[max(0, index - 12) : index]):
        if ins.opname in _LOAD_OPS and isinstance(ins.argval, str) and ins.argval in _C_WAITS:
            return _C_WAITS[ins.argval]
    return None


def _object_repr(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__} object at {id(obj):#x}"


def blocked_on(
    ident: int | None,
    frame: FrameType | None,
    registry: dict[int, events.BlockInfo],
    now: float,
) -> BlockedOn | None:
    """What thread ``ident`` waits on: a racecheck primitive from the blocking registry
    (with its creation site and for how long), else what its top frames show."""
    info = registry.get(ident) if ident is not None else None
    if info is not None:
        what = info.what if info.timeout is None else f"{info.what}, timeout {info.timeout:g}s"
        return BlockedOn(
            what,
            _object_repr(info.obj),
            stack_from_site(info.created_at),
            max(0.0, now - info.since),
        )
    seen = _wait_from_frames(frame)
    return BlockedOn(seen) if seen else None


def thread_info(thread: threading.Thread, created_at: Stack = ()) -> ThreadInfo:
    return ThreadInfo(
        name=thread.name,
        ident=thread.ident,
        running=thread.is_alive(),
        daemon=thread.daemon,
        target=thread_target(thread),
        created_at=created_at,
    )


def dump_thread(
    thread: threading.Thread,
    frames: dict[int, FrameType],
    registry: dict[int, events.BlockInfo],
    now: float,
    created_at: Stack = (),
) -> ThreadDump:
    """Go's goroutine-dump entry for one live thread."""
    frame = frames.get(thread.ident) if thread.ident is not None else None
    return ThreadDump(
        thread=thread_info(thread, created_at),
        stack=stack_of(frame),
        blocked_on=blocked_on(thread.ident, frame, registry, now),
    )


def is_infrastructure(thread: threading.Thread, created_at: Stack = ()) -> bool:
    """True for threads the interpreter or the test runner start for themselves."""
    if isinstance(thread, threading._DummyThread):
        return True  # not started by threading: a foreign or racecheck helper thread
    modules = [type(thread).__module__]
    target = getattr(thread, "_target", None)
    if target is None and isinstance(thread, threading.Timer):
        target = getattr(thread, "function", None)
    if target is not None:
        modules.append(getattr(target, "__module__", "") or "")
    for module in modules:
        if module.split(".", 1)[0] in _INFRASTRUCTURE_MODULES:
            return True
    starter = next((f for f in created_at if f.filename != _THREADING_FILE), None)
    return starter is not None and _is_infrastructure_file(starter.filename)


@functools.lru_cache(maxsize=512)
def _is_infrastructure_file(filename: str) -> bool:
    parts = re.split(r"[\\/]", filename)
    return "site-packages" in parts and any(p in _INFRASTRUCTURE_MODULES for p in parts)


# ---------------------------------------------------------------------------------------
# Recording where threads and executors were created: racecheck.instrument.stdlib's
# bookkeeping when it is there, else a minimal recording of our own
# ---------------------------------------------------------------------------------------

_recording = 0  # number of open scopes; our own patches record only while > 0
_thread_sites: weakref.WeakKeyDictionary[threading.Thread, tuple[events.SiteFrame, ...]] = (
    weakref.WeakKeyDictionary()
)
_executor_sites: weakref.WeakKeyDictionary[Any, tuple[events.SiteFrame, ...]] = (
    weakref.WeakKeyDictionary()
)
_patched = False


def _install_patches() -> None:
    """Wrap ``Thread.start`` and ``ThreadPoolExecutor.__init__`` to record creation sites
    (only used when racecheck.instrument.stdlib is missing).

    Installed once and never removed: removing could undo a patch stacked on top of
    ours.  When no scope is open the wrappers only read one counter.
    """
    global _patched
    from concurrent.futures import ThreadPoolExecutor

    with _record_lock:
        if _patched:
            return
        _patched = True
    original_start = threading.Thread.start
    original_init = ThreadPoolExecutor.__init__

    @functools.wraps(original_start)
    def start(self: threading.Thread) -> None:
        if _recording:
            site = events.creation_site(1, limit=16)
            with _record_lock:
                _thread_sites[self] = site
        original_start(self)

    @functools.wraps(original_init)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if _recording:
            site = events.creation_site(1, limit=16)
            with _record_lock:
                _executor_sites[self] = site

    threading.Thread.start = start  # type: ignore[method-assign]
    ThreadPoolExecutor.__init__ = init  # type: ignore[method-assign]


def _begin_recording() -> None:
    global _recording
    track = _stdlib_function("track_threads")
    if track is not None:
        track()
    else:
        _install_patches()
    with _record_lock:
        _recording += 1


def _end_recording() -> None:
    global _recording
    with _record_lock:
        _recording -= 1
    untrack = _stdlib_function("untrack_threads")
    if untrack is not None:
        untrack()


def begin_recording() -> None:
    """Record where threads and executors are created from now on (refcounted; pair
    with :func:`end_recording`).  ``verify_none`` does this itself; ``racecheck run
    --leaks`` calls it before the program starts so its report says where threads began."""
    _begin_recording()


def end_recording() -> None:
    _end_recording()


def _thread_created_at(thread: threading.Thread) -> Stack:
    stdlib = _stdlib_function("thread_created_at")
    if stdlib is not None:
        try:
            return stack_from_site(stdlib(thread) or ())
        except Exception:  # noqa: BLE001 - a bookkeeping gap must not hide the report
            return ()
    with _record_lock:
        site = _thread_sites.get(thread, ())
    return stack_from_site(site)


@dataclass(frozen=True)
class _ExecutorView:
    executor: Any
    created_at: Stack | None
    """None when it was not created under tracking (so not inside any scope)."""
    shutdown: bool


def _executor_of(thread: threading.Thread) -> _ExecutorView | None:
    """The ThreadPoolExecutor a worker thread belongs to, or None.  A worker's target is
    ``concurrent.futures.thread._worker`` whose first argument is a weakref to it."""
    from concurrent.futures import thread as futures_thread

    if getattr(thread, "_target", None) is not futures_thread._worker:
        return None
    args = getattr(thread, "_args", ())
    ref = args[0] if args else None
    executor = ref() if isinstance(ref, weakref.ref) else None
    if executor is None:
        return None
    shutdown = bool(getattr(executor, "_shutdown", False))
    live = _stdlib_function("live_executors")
    if live is None:
        with _record_lock:
            site = _executor_sites.get(executor)
        return _ExecutorView(executor, None if site is None else stack_from_site(site), shutdown)
    for record in live():
        if record.ref() is executor:
            created = stack_from_site(getattr(record, "created_at", ()) or ())
            return _ExecutorView(executor, created, shutdown or bool(record.shutdown))
    return _ExecutorView(executor, None, shutdown)


def _recorded_executors() -> dict[int, weakref.ref[Any]]:
    live = _stdlib_function("live_executors")
    if live is not None:
        refs = [record.ref for record in live()]
        return {id(r()): r for r in refs if r() is not None}
    with _record_lock:
        executors = list(_executor_sites.keys())
    return {id(e): weakref.ref(e) for e in executors}


# ---------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    """A thread that may be leaked, as the options see it."""

    thread: threading.Thread
    stack: Stack
    created_at: Stack


def _names(frame: Frame) -> tuple[str, ...]:
    module = _module_of(frame.filename)
    qual = frame.function
    short = qual.rsplit(".", 1)[-1]
    return (qual, short, f"{module}.{qual}" if module else qual)


@functools.lru_cache(maxsize=1024)
def _module_of(filename: str) -> str:
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            return name
    return ""


@dataclass(frozen=True)
class LeakOption:
    """One of goleak's ``Ignore...`` options; build them with the ``ignore_*`` functions."""

    kind: str
    value: Any

    def ignores(self, candidate: _Candidate) -> bool:
        if self.kind == "top":
            return bool(candidate.stack) and self.value in _names(candidate.stack[0])
        if self.kind == "any":
            return any(self.value in _names(f) for f in candidate.stack)
        if self.kind == "created_by":
            starter = next((f for f in candidate.created_at if f.filename != _THREADING_FILE), None)
            return starter is not None and self.value in _names(starter)
        if self.kind == "name":
            pattern = self.value
            if isinstance(pattern, re.Pattern):
                return pattern.search(candidate.thread.name) is not None
            return fnmatch.fnmatchcase(candidate.thread.name, str(pattern))
        if self.kind == "current":
            return _same_thread_in(candidate.thread, self.value)
        return False


def ignore_top_function(name: str) -> LeakOption:
    """Ignore threads whose innermost (non-racecheck) frame is function ``name``
    (``func``, ``Class.method`` or ``module.Class.method``)."""
    return LeakOption("top", name)


def ignore_any_function(name: str) -> LeakOption:
    """Ignore threads with function ``name`` anywhere on their current stack."""
    return LeakOption("any", name)


def ignore_created_by(name: str) -> LeakOption:
    """Ignore threads started (``Thread.start()`` called) from function ``name``."""
    return LeakOption("created_by", name)


def ignore_name(pattern: str | re.Pattern[str]) -> LeakOption:
    """Ignore threads whose name matches a glob (``"worker-*"``) or a compiled regex."""
    return LeakOption("name", pattern)


def ignore_current() -> LeakOption:
    """Ignore every thread alive now (goleak's ``IgnoreCurrent``)."""
    return LeakOption("current", snapshot())


# ---------------------------------------------------------------------------------------
# Snapshots and the check
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Threads (weakly), timers and lost cancels present at one moment."""

    threads: dict[int, weakref.ref[threading.Thread]]
    timers: tuple[Any, ...]
    """Timer records alive at the snapshot: plain data (``live_timers()`` returns the
    same record object for a timer on every call), held so identity stays meaningful."""
    lost_cancels: int
    executors: dict[int, weakref.ref[Any]]
    """Executors known (recorded) at the snapshot: their lazily started workers belong to
    them, not to the scope."""


def _known_at(obj: object, refs: dict[int, weakref.ref[Any]]) -> bool:
    ref = refs.get(id(obj))
    return ref is not None and ref() is obj


def _same_thread_in(thread: threading.Thread, snap: Snapshot) -> bool:
    ref = snap.threads.get(id(thread))
    # While the weakref is alive the id cannot have been reused by another object.
    return ref is not None and ref() is thread


def _live_timers() -> list[Any]:
    """Records of pending Timers and running Tickers (``racecheck.sync.timers``)."""
    module = sys.modules.get("racecheck.sync.timers")
    fn = getattr(module, "live_timers", None) if module is not None else None
    if not callable(fn):
        return []
    try:
        return list(fn())
    except Exception:  # noqa: BLE001 - a neighbour's bug must not hide thread leaks
        return []


def _timer_key(timer: Any) -> tuple[str, Any]:
    site: Any = getattr(timer, "created_at", None) or getattr(timer, "_created_at", ())
    return (str(getattr(timer, "kind", type(timer).__name__)), tuple(site))


def _lost_cancels() -> list[Any]:
    module = sys.modules.get("racecheck.sync.context")
    fn = getattr(module, "lost_cancels", None) if module is not None else None
    if not callable(fn):
        return []
    try:
        return list(fn())
    except Exception:  # noqa: BLE001
        return []


def snapshot() -> Snapshot:
    """Record what is alive now; a later :func:`find` with ``baseline=`` ignores it."""
    if "racecheck.sync.context" in sys.modules:
        gc.collect()  # contexts dropped before the scope report their lost cancel now
    return Snapshot(
        threads={id(t): weakref.ref(t) for t in threading.enumerate()},
        timers=tuple(_live_timers()),
        lost_cancels=len(_lost_cancels()),
        executors=_recorded_executors(),
    )


def _site_text(site: Iterable[Any]) -> str:
    stack = stack_from_site(site)
    if not stack:
        return "an unknown site"
    top = stack[0]
    return f"{top.filename}:{top.lineno} (in {top.function})"


def _timer_line(timer: Any) -> str:
    kind, site = _timer_key(timer)
    state = "still running (never stopped)" if "tick" in kind.lower() else "still pending"
    return f"{kind} created at {_site_text(site)} {state}"


def _lost_cancel_line(record: Any) -> str:
    if isinstance(record, str):
        return record
    site: Any = getattr(record, "created_at", None) or getattr(record, "_created_at", ())
    kind = getattr(record, "kind", "")
    what = f"{kind} context" if kind else "context"
    return f"{what} created at {_site_text(site)}: cancel was never called (lost cancel)"


def _collect(
    options: tuple[LeakOption, ...], baseline: Snapshot | None, scope: str, final: bool
) -> LeakFinding | None:
    """One look at what leaked.  Executor threads are folded into executor lines;
    timers and lost cancels are only looked at on the final attempt (waiting cannot
    fix them, and lost cancels need a garbage collection)."""
    me = threading.current_thread()
    candidates: list[tuple[threading.Thread, Stack]] = []
    executors: dict[int, tuple[_ExecutorView, int]] = {}
    for thread in threading.enumerate():
        if thread is me or thread is threading.main_thread() or not thread.is_alive():
            continue
        if baseline is not None and _same_thread_in(thread, baseline):
            continue
        created_at = _thread_created_at(thread)
        if is_infrastructure(thread, created_at):
            continue
        view = _executor_of(thread)
        if view is not None:
            if baseline is not None and (
                view.created_at is None or _known_at(view.executor, baseline.executors)
            ):
                continue  # an executor from outside the scope started it lazily
            if not view.shutdown:
                prev = executors.get(id(view.executor), (view, 0))
                executors[id(view.executor)] = (view, prev[1] + 1)
                continue
        candidates.append((thread, created_at))

    others: list[str] = []
    for view, workers in executors.values():
        others.append(
            f"{type(view.executor).__name__} created at {_site_text(view.created_at or ())} "
            f"was not shut down ({workers} worker thread{'s' if workers != 1 else ''} alive)"
        )
    if not candidates and not others and not final:
        return None

    dumps: list[ThreadDump] = []
    if candidates:
        frames = sys._current_frames()
        try:
            registry = events.blocked_threads()
            now = time.monotonic()
            for thread, created_at in candidates:
                frame = frames.get(thread.ident) if thread.ident is not None else None
                candidate = _Candidate(thread, stack_of(frame), created_at)
                if any(option.ignores(candidate) for option in options):
                    continue
                dumps.append(dump_thread(thread, frames, registry, now, created_at))
        finally:
            del frames
    if final:
        before = {id(t) for t in baseline.timers} if baseline is not None else set()
        others.extend(_timer_line(t) for t in _live_timers() if id(t) not in before)
        if "racecheck.sync.context" in sys.modules:
            gc.collect()
            start = baseline.lost_cancels if baseline is not None else 0
            others.extend(_lost_cancel_line(r) for r in _lost_cancels()[start:])
    if not dumps and not others:
        return None
    return LeakFinding(threads=tuple(dumps), others=tuple(others), scope=scope)


def find(
    *options: LeakOption,
    max_wait: float = 1.0,
    baseline: Snapshot | None = None,
    scope: str = "",
) -> LeakFinding | None:
    """The leaked threads as data, or None.

    Without ``baseline`` every thread but the main and the calling one is a candidate
    (goleak's ``Find``); with it, only what appeared since.  Retries with backoff for up
    to ``max_wait`` seconds so threads that are finishing are not reported.
    """
    deadline = time.monotonic() + max(0.0, max_wait)
    delay = 0.001
    while True:
        if _collect(options, baseline, scope, final=False) is None:
            return _collect(options, baseline, scope, final=True)
        left = deadline - time.monotonic()
        if left <= 0:
            return _collect(options, baseline, scope, final=True)
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.05)


# ---------------------------------------------------------------------------------------
# verify_none
# ---------------------------------------------------------------------------------------


class LeakScope(contextlib.ContextDecorator):
    """One ``verify_none`` scope (see :func:`verify_none`).  As a decorator it opens a
    fresh scope per call, so a decorated function can run concurrently or recursively."""

    def __init__(self, *options: LeakOption, max_wait: float = 1.0) -> None:
        self._options: tuple[LeakOption, ...] = tuple(options)
        self._max_wait = max_wait
        self._baseline: Snapshot | None = None

    def _recreate_cm(self) -> LeakScope:
        return LeakScope(*self._options, max_wait=self._max_wait)

    def __enter__(self) -> LeakScope:
        _begin_recording()
        self._baseline = snapshot()
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            finding = find(*self._options, max_wait=self._max_wait, baseline=self._baseline)
        finally:
            _end_recording()
        if finding is None:
            return
        text = _render(finding)
        if exc is not None:
            exc.add_note(text)
            return
        error = LeakError(text)
        error.finding = finding  # type: ignore[attr-defined]
        raise error


@overload
def verify_none(func: Callable[_P, _R], /) -> Callable[_P, _R]: ...
@overload
def verify_none(*options: LeakOption, max_wait: float = 1.0) -> LeakScope: ...
def verify_none(*options: Any, max_wait: float = 1.0) -> Any:
    """Fail if a thread started inside the scope is still running when it ends.

    As a context manager::

        with racecheck.leaks.verify_none():
            run_server_once()

    or as a decorator, ``@verify_none(...)`` or bare ``@verify_none``.  Raises
    :class:`LeakError` (an ``AssertionError``) with the report, its ``finding``
    attribute holding the data; if the body itself raised, the body's exception propagates
    unchanged with the leak report attached as a note.
    """
    if len(options) == 1 and callable(options[0]) and not isinstance(options[0], LeakOption):
        return LeakScope(max_wait=max_wait)(options[0])  # bare @verify_none
    return LeakScope(*options, max_wait=max_wait)


# ---------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------


def _render(finding: LeakFinding) -> str:
    text_module: Any = None
    try:
        from racecheck.report import text as text_module
    except ImportError:
        pass
    render = getattr(text_module, "render", None) or getattr(text_module, "format_finding", None)
    if callable(render):
        try:
            return str(render(finding))
        except Exception:  # noqa: BLE001 - fall back rather than lose the report
            pass
    return render_leak(finding)


def _format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f", {seconds:.1f} seconds"
    return f", {seconds / 60:.0f} minutes"


def _stack_lines(stack: Stack, indent: str = "  ") -> Iterator[str]:
    for f in stack:
        yield f"{indent}{f.function}()"
        yield f"{indent}    {f.filename}:{f.lineno}" + (f"  # {f.line}" if f.line else "")


def render_thread(dump: ThreadDump) -> str:
    """One Go-style dump entry: ``thread 1234 "worker" [chan receive, 2.0 seconds]:``."""
    t = dump.thread
    state = dump.blocked_on.what if dump.blocked_on else "running"
    if dump.blocked_on:
        state += _format_duration(dump.blocked_on.seconds)
    flags = "daemon" if t.daemon else "non-daemon"
    lines = [f'thread {t.ident} "{t.name}" [{state}] ({flags}):']
    if t.target:
        lines.append(f"  target: {t.target}")
    if dump.blocked_on and dump.blocked_on.object_repr:
        where = ""
        if dump.blocked_on.created_at:
            top = dump.blocked_on.created_at[0]
            where = f", created at {top.filename}:{top.lineno} (in {top.function})"
        lines.append(f"  blocked on: {dump.blocked_on.object_repr}{where}")
    lines.extend(_stack_lines(dump.stack))
    if t.created_at:
        lines.append("started at:")
        lines.extend(_stack_lines(t.created_at))
    return "\n".join(lines)


def render_leak(finding: LeakFinding) -> str:
    """The plain-text leak report (used when ``racecheck.report.text`` is absent)."""
    where = f" in {finding.scope}" if finding.scope else ""
    parts = [f"racecheck: found unexpected threads{where}:"]
    parts.extend(render_thread(d) + "\n" for d in finding.threads)
    if finding.others:
        parts.append("other leaks:")
        parts.extend(f"  {line}" for line in finding.others)
    return "\n".join(parts)
