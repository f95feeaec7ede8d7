"""Thread lifecycle edges and thread/executor bookkeeping for the leak checker.

Two independent users share one patch of ``Thread.start``:

* the race detector (``install_lifecycle``): start -> fork in the parent, begin in the
  child before ``run``, end after it; ``join``/``is_alive`` seeing the thread dead ->
  joined; the interpreter's exit-time join of non-daemon threads -> before ``atexit``;
* the leak checker (``track_threads``, refcounted, works with detection off): where each
  thread was started, its target's name, and which ``ThreadPoolExecutor`` owns it.

Nothing here keeps a thread or an executor alive: per-thread data lives in
``WeakKeyDictionary``s, records hold weak references and plain tuples.
"""

from __future__ import annotations

import _thread
import itertools
import sys
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from racecheck._frames import user_frames
from racecheck._rawsync import allocate_lock
from racecheck._types import ThreadLifecycle
from racecheck.instrument.stdlib_common import Patcher, is_internal_file
from racecheck.report.findings import Frame, Stack
from racecheck.sync import events

_lock = allocate_lock()
_patcher = Patcher()
_lifecycle: ThreadLifecycle | None = None
_tracking = 0

# Per-thread state, weakly keyed: the fork token (until the child begins), whether the
# thread ran to its end under racecheck, creation stack and target name.
_fork_tokens: WeakKeyDictionary[threading.Thread, object] = WeakKeyDictionary()
_ended: WeakKeyDictionary[threading.Thread, bool] = WeakKeyDictionary()
_created_at: WeakKeyDictionary[threading.Thread, Stack] = WeakKeyDictionary()
_targets: WeakKeyDictionary[threading.Thread, str] = WeakKeyDictionary()
_exit_token: object | None = None
"""Every non-daemon thread's final clock, joined: what the exit-time join observes."""


def capture_stack(depth: int = 1, limit: int = 32) -> Stack:
    """The caller's stack ``depth`` frames up, innermost first, as reports show it
    (``racecheck._frames.user_frames``)."""
    try:
        frame: Any = sys._getframe(depth + 1)
    except ValueError:
        return ()
    return tuple(
        Frame(f.f_code.co_filename, f.f_lineno, f.f_code.co_name) for f in user_frames(frame, limit)
    )


def _qualname(func: Any) -> str:
    func = getattr(func, "func", func)  # functools.partial
    module = getattr(func, "__module__", None) or "?"
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return f"{module}.{name}" if name else repr(func)


def target_name(thread: threading.Thread) -> str:
    target = getattr(thread, "_target", None)
    if target is not None:
        return _qualname(target)
    run = type(thread).run
    if run is not threading.Thread.run:
        return _qualname(run)
    return ""


# --- the patches --------------------------------------------------------------------------

_orig_start = threading.Thread.start
_orig_bootstrap_inner = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]
_orig_join = threading.Thread.join
_orig_is_alive = threading.Thread.is_alive
_orig_shutdown = threading._shutdown  # type: ignore[attr-defined]
_orig_executor_init = ThreadPoolExecutor.__init__
_orig_executor_shutdown = ThreadPoolExecutor.shutdown


def _start(self: threading.Thread) -> None:
    lifecycle = _lifecycle
    if _tracking or lifecycle is not None:
        if self._started.is_set():  # type: ignore[attr-defined]
            return _orig_start(self)  # raises "threads can only be started once"
        stack = capture_stack(1)
        with _lock:
            _created_at[self] = stack
            _targets[self] = target_name(self)
        if lifecycle is not None:
            token = lifecycle.fork(self, stack)
            with _lock:
                _fork_tokens[self] = token
    return _orig_start(self)


def _bootstrap_inner(self: threading.Thread) -> None:
    with _lock:
        token = _fork_tokens.pop(self, _MISSING)
    lifecycle = _lifecycle
    if token is _MISSING or lifecycle is None:
        return _orig_bootstrap_inner(self)  # type: ignore[no-any-return]
    lifecycle.begin(self, token)
    try:
        _orig_bootstrap_inner(self)
    finally:
        # The thread's own work is over.  A profile or trace function the program set
        # for its threads (threading.setprofile/settrace) would otherwise run on the
        # bookkeeping below and on the interpreter's teardown of the thread, after the
        # thread's end was published: its accesses would belong to no thread.
        sys.setprofile(None)
        sys.settrace(None)
        # Still before the C-level thread state goes away, hence before any join returns.
        # The exit token first: after ``end`` the engine may hand this thread's clock
        # slot to another thread, so a publish from here would no longer carry our past.
        global _exit_token
        with _lock:
            if not self.daemon:
                token = events.publish(_exit_token)
                if token is not None:
                    _exit_token = token
        lifecycle.end(self)
        with _lock:
            _ended[self] = True


_MISSING = object()


def _observed_dead(thread: threading.Thread) -> None:
    lifecycle = _lifecycle
    if lifecycle is None:
        return
    with _lock:
        ended = _ended.get(thread, False)
    if ended:
        lifecycle.joined(thread)


def _join(self: threading.Thread, timeout: float | None = None) -> None:
    _orig_join(self, timeout)
    if not _orig_is_alive(self):
        _observed_dead(self)


def _is_alive(self: threading.Thread) -> bool:
    alive = _orig_is_alive(self)
    if not alive:
        _observed_dead(self)
    return alive


def _shutdown() -> None:
    """The interpreter's exit-time join of non-daemon threads: atexit handlers run next,
    so everything those threads did is ordered before them."""
    _orig_shutdown()
    with _lock:
        token = _exit_token
    events.consume(token)


# --- executors ------------------------------------------------------------------------------


@dataclass
class ExecutorRecord:
    """A ``ThreadPoolExecutor`` as the leak checker sees it."""

    created_at: Stack
    ref: weakref.ReferenceType[ThreadPoolExecutor]
    shutdown: bool = False
    kind: str = "ThreadPoolExecutor"
    _extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def threads(self) -> set[threading.Thread]:
        """Its worker threads (a snapshot)."""
        executor = self.ref()
        if executor is None:
            return set()
        return set(getattr(executor, "_threads", ()))


_executors: WeakKeyDictionary[ThreadPoolExecutor, ExecutorRecord] = WeakKeyDictionary()


def _executor_init(self: ThreadPoolExecutor, *args: Any, **kwargs: Any) -> None:
    _orig_executor_init(self, *args, **kwargs)
    record = ExecutorRecord(capture_stack(1), weakref.ref(self))
    with _lock:
        _executors[self] = record


_shutdown_hook: Any = None
"""Set by the futures patches: called after ``shutdown(wait=True)`` returned."""


def _executor_shutdown(
    self: ThreadPoolExecutor, wait: bool = True, *args: Any, **kwargs: Any
) -> None:
    with _lock:
        record = _executors.get(self)
        if record is not None:
            record.shutdown = True
    _orig_executor_shutdown(self, wait, *args, **kwargs)
    hook = _shutdown_hook
    if wait and hook is not None and _lifecycle is not None:
        hook(self)


def set_executor_shutdown_hook(hook: Any) -> None:
    global _shutdown_hook
    _shutdown_hook = hook


def live_executors() -> list[ExecutorRecord]:
    """Every tracked executor still alive, shut down or not."""
    with _lock:
        return [r for r in _executors.values() if r.ref() is not None]


def executor_of(thread: threading.Thread) -> ExecutorRecord | None:
    """The record of the executor whose worker ``thread`` is, or None."""
    for record in live_executors():
        if thread in record.threads:
            return record
    return None


def thread_created_at(thread: threading.Thread) -> Stack:
    """Stack of the ``start()`` call (innermost first); () if not started while tracked."""
    with _lock:
        return _created_at.get(thread, ())


def thread_target(thread: threading.Thread) -> str:
    """Qualified name of the thread's target (or overridden ``run``) recorded at start."""
    with _lock:
        name = _targets.get(thread)
    return name if name is not None else target_name(thread)


# --- switching on and off ----------------------------------------------------------------


# --- low-level threads ---------------------------------------------------------------------

_orig_start_new_thread = _thread.start_new_thread
_raw_numbers = itertools.count(1)


class RawThread:
    """Stands for a thread started with ``_thread.start_new_thread`` in the detector's
    bookkeeping (which wants an object with a name, weakly referenceable)."""

    __slots__ = ("__weakref__", "name", "_target", "daemon", "ident")

    def __init__(self, target: Any) -> None:
        self.name = f"_thread-{next(_raw_numbers)}"
        self._target = target
        self.daemon = True
        self.ident: int | None = None


def _start_new_thread(function: Any, args: Any, kwargs: Any = None) -> int:
    """``_thread.start_new_thread`` with the start edge (parent's past -> the function)
    and an end token; racecheck's own helper threads (started from racecheck's files)
    stay invisible."""
    lifecycle = _lifecycle
    caller = sys._getframe(1).f_code.co_filename
    if lifecycle is None or is_internal_file(caller):
        if kwargs is None:
            return _orig_start_new_thread(function, args)
        return _orig_start_new_thread(function, args, kwargs)
    standin = RawThread(function)
    token = lifecycle.fork(standin, capture_stack(1))

    def run(*a: Any, **kw: Any) -> Any:
        standin.ident = _thread.get_ident()
        lifecycle.begin(standin, token)
        try:
            return function(*a, **kw)
        finally:
            lifecycle.end(standin)

    return _orig_start_new_thread(run, args, kwargs if kwargs is not None else {})


def _sync_patches() -> None:
    """Apply or remove the patches so they are present exactly while someone needs them.
    Called with ``_lock`` NOT held (patching takes no racecheck lock)."""
    need = _tracking > 0 or _lifecycle is not None
    if need and not _patcher:
        T = threading.Thread
        _patcher.patch(T, "start", _start)
        _patcher.patch(T, "_bootstrap_inner", _bootstrap_inner)
        _patcher.patch(T, "join", _join)
        _patcher.patch(T, "is_alive", _is_alive)
        _patcher.patch(threading, "_shutdown", _shutdown)
        _patcher.patch(ThreadPoolExecutor, "__init__", _executor_init)
        _patcher.patch(ThreadPoolExecutor, "shutdown", _executor_shutdown)
        _patcher.patch(_thread, "start_new_thread", _start_new_thread)
    elif not need and _patcher:
        _patcher.restore()


_switch_lock = allocate_lock()


def install_lifecycle(lifecycle: ThreadLifecycle) -> None:
    global _lifecycle
    with _switch_lock:
        _lifecycle = lifecycle
        _sync_patches()


def uninstall_lifecycle() -> None:
    global _lifecycle, _exit_token
    with _switch_lock:
        _lifecycle = None
        with _lock:
            _fork_tokens.clear()
            _exit_token = None
        _sync_patches()


def track_threads() -> None:
    """Start recording thread creation sites and executors (refcounted)."""
    global _tracking
    with _switch_lock:
        _tracking += 1
        _sync_patches()


def untrack_threads() -> None:
    global _tracking
    with _switch_lock:
        if _tracking > 0:
            _tracking -= 1
        _sync_patches()
