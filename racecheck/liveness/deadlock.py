"""``fatal error: all goroutines are asleep - deadlock!`` for Python threads.

A :class:`DeadlockDetector` listens to the blocking registry (``events.blocking``) and
runs a watchdog on a raw ``_thread`` helper thread, invisible to ``threading``.  It
declares a deadlock only when nothing can ever wake anyone:

* every live thread (the test runner's own threads aside) is blocked **without a
  timeout**, either in a racecheck primitive (registered in the blocking registry) or in
  a wait racecheck fully understands: an untimed ``Thread.join`` (of a thread that is
  itself counted, since every live thread must be blocked) or the interpreter's
  exit-time join of non-daemon threads;
* at least one of them is blocked on a racecheck primitive;
* no racecheck timer is pending (a timer or ticker firing can wake a receiver);
* and all of that held, unchanged, for a grace period: the same threads blocked on the
  same registrations, with no block or unblock event in between.  This rules out a
  wake-up in flight (a thread already released by a send whose receiver has not yet run
  to unregister) short of a thread being starved for the whole grace period.

Any thread in a sleep, I/O, a timed wait or any call racecheck does not understand counts
as able to make progress, so is enough to prevent a report.

Declared deadlocks go to ``on_deadlock`` and then, in mode ``"raise"``, a
:class:`~racecheck.errors.DeadlockError` is raised in each blocked thread (asynchronously,
and the thread is woken through the ``wake`` callable its primitive published in
``BlockInfo.extra``, if any); in mode ``"exit"`` the report goes to stderr and the process
exits with status 2, as Go's does.
"""

from __future__ import annotations

import _thread
import os
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Literal

from racecheck._rawsync import RawCondition, allocate_lock
from racecheck.errors import DeadlockError
from racecheck.liveness.leaks import dump_thread, is_infrastructure, render_thread
from racecheck.report.findings import DeadlockFinding
from racecheck.sync import events

__all__ = ["DeadlockDetector", "install_exit_check", "render_deadlock"]

Mode = Literal["raise", "exit"]
HEADER = "fatal error: all goroutines are asleep - deadlock!"
_THREADING_FILE = threading.__file__


def _understood_wait(frame: FrameType | None) -> tuple[str, int] | None:
    """If the thread whose innermost frame is ``frame`` sits in a wait racecheck
    understands, a short signature of it; else None (it may make progress).

    * ``threading._shutdown``: the interpreter's exit-time join of non-daemon threads;
    * ``Thread.join()`` without timeout (3.13: ``join`` calls into C directly; 3.11 and
      3.12: via ``_wait_for_tstate_lock``).  The joined thread must still be alive;
      whether it can progress is decided by the same check, since it is a live thread.
    """
    if frame is None or frame.f_code.co_filename != _THREADING_FILE:
        return None
    name = frame.f_code.co_name
    if name == "_shutdown":
        return ("exit join", 0)
    join = frame
    if name == "_wait_for_tstate_lock":
        join = frame.f_back  # type: ignore[assignment]
        if join is None or join.f_code.co_filename != _THREADING_FILE:
            return None
    if join.f_code.co_name != "join":
        return None
    local_vars = join.f_locals
    joined = local_vars.get("self")
    if local_vars.get("timeout", 0) is not None or not isinstance(joined, threading.Thread):
        return None
    if not joined.is_alive():
        return None  # the join is about to return
    return ("Thread.join", id(joined))


def _timers_pending() -> bool:
    module = sys.modules.get("racecheck.sync.timers")
    if module is None:
        return False
    for name in ("pending_timers", "live_timers"):
        fn = getattr(module, name, None)
        if callable(fn):
            try:
                pending = fn()  # a count (pending_timers) or records (live_timers)
                if (pending if isinstance(pending, int) else len(list(pending))) > 0:
                    return True
            except Exception:  # noqa: BLE001 - when in doubt, assume progress
                return True
    return False


class _Observation:
    """One look at every thread: the signature to compare and what to dump."""

    __slots__ = ("signature", "threads", "infos")

    def __init__(
        self,
        signature: frozenset[tuple[int, object]],
        threads: list[threading.Thread],
        infos: dict[int, events.BlockInfo],
    ) -> None:
        self.signature = signature
        self.threads = threads
        self.infos = infos


def observe() -> _Observation | None:
    """None if some thread can make progress; else who is blocked on what."""
    registry = events.blocked_threads()
    if not registry or _timers_pending():
        return None
    main = threading.main_thread()
    frames = sys._current_frames()
    try:
        states: set[tuple[int, object]] = set()
        considered: list[threading.Thread] = []
        infos: dict[int, events.BlockInfo] = {}
        for thread in threading.enumerate():
            ident = thread.ident
            if ident is None or is_infrastructure(thread):
                continue
            frame = frames.get(ident)
            if thread is main:
                if frame is None:
                    continue  # main has finished: the interpreter is finalizing
            elif not thread.is_alive():
                continue
            info = registry.get(ident)
            if info is not None:
                if info.timeout is not None:
                    return None
                states.add((ident, id(info)))
                infos[ident] = info
            else:
                wait = _understood_wait(frame)
                if wait is None:
                    return None
                states.add((ident, wait))
            considered.append(thread)
        if not infos:
            return None
        return _Observation(frozenset(states), considered, infos)
    finally:
        del frames


def render_deadlock(finding: DeadlockFinding) -> str:
    """Go's fatal error text; ``racecheck.report.text`` renders it when present."""
    try:
        from racecheck.report import text as text_module

        render = getattr(text_module, "render", None) or getattr(
            text_module, "format_finding", None
        )
        if callable(render):
            return str(render(finding))
    except Exception:  # noqa: BLE001 - fall back rather than lose the report
        pass
    return "\n\n".join([HEADER, *(render_thread(d) for d in finding.threads)]) + "\n"


def _error_type(text: str) -> type[DeadlockError]:
    """A DeadlockError subclass whose no-argument construction carries the report: an
    asynchronous exception is raised by instantiating its class without arguments."""

    def __init__(self: DeadlockError, *args: object) -> None:
        DeadlockError.__init__(self, *(args or (text,)))

    return type(
        "DeadlockError", (DeadlockError,), {"__init__": __init__, "__module__": "racecheck.errors"}
    )


def _raise_in(ident: int, exc_type: type[BaseException]) -> bool:
    import ctypes  # only when a deadlock is raised in-process: ~3 ms at start otherwise

    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    count = set_async_exc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))
    if count > 1:  # cannot happen for a valid ident; undo as the C API asks
        set_async_exc(ctypes.c_ulong(ident), None)
        return False
    return bool(count == 1)


def _wake(info: events.BlockInfo) -> None:
    """Wake a thread blocked in a primitive so its pending DeadlockError can fire.

    Uses the ``wake`` callable the primitive published in ``BlockInfo.extra`` when there
    is one.  Otherwise, best effort: notify every RawCondition the primitive (or each
    primitive of a select) holds, a spurious wake-up its wait loop must tolerate anyway.
    """
    wake = info.wake or info.extra.get("wake")
    if callable(wake):
        wake()
        return
    objs = info.obj if isinstance(info.obj, tuple) else (info.obj,)
    for obj in objs:
        for cond in _raw_conditions(obj):
            with cond:
                cond.notify_all()


def _raw_conditions(obj: object) -> list[RawCondition]:
    names: list[str] = list(getattr(obj, "__dict__", {}))
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    found: list[RawCondition] = []
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, RawCondition) and all(value is not c for c in found):
            found.append(value)
    return found


class DeadlockDetector:
    """Watches the blocking registry and declares ``all goroutines are asleep``.

    ``grace``: how long the all-blocked state must hold unchanged before it is declared;
    ``poll``: how often the watchdog looks while some thread is blocked.
    """

    def __init__(
        self,
        on_deadlock: Callable[[DeadlockFinding], object] | None = None,
        mode: Mode = "raise",
        grace: float = 0.2,
        poll: float = 0.05,
    ) -> None:
        if mode not in ("raise", "exit"):
            raise ValueError(f"mode must be 'raise' or 'exit', not {mode!r}")
        self.on_deadlock = on_deadlock
        self.mode: Mode = mode
        self.grace = grace
        self.poll = poll
        self._cond = RawCondition()
        self._epoch = 0  # bumped on every block/unblock: "nothing changed" is cheap
        self._running = False
        self._stopped = allocate_lock()  # held while the watchdog runs
        self._watching = False  # the watchdog thread was started
        self._findings: list[DeadlockFinding] = []
        self._declared: frozenset[tuple[int, object]] | None = None

    # -- BlockListener ------------------------------------------------------------------

    def blocked(self, info: events.BlockInfo) -> None:
        with self._cond:
            self._epoch += 1
            if self._running and not self._watching:
                # The watchdog thread starts with the first blocked operation, not at
                # start(): a program that never blocks stays single-threaded (os.fork()
                # in it must not warn about threads racecheck started).
                self._watching = True
                self._stopped.acquire()
                _thread.start_new_thread(self._watch, ())
            self._cond.notify()

    def unblocked(self, info: events.BlockInfo) -> None:
        with self._cond:
            self._epoch += 1

    # -- control ------------------------------------------------------------------------

    def start(self) -> DeadlockDetector:
        with self._cond:
            if self._running:
                return self
            self._running = True
        events.set_block_listener(self)
        for info in events.blocked_threads().values():  # blocked before we listened
            self.blocked(info)
            break
        return self

    def stop(self) -> None:
        """Stop watching; returns once the watchdog has finished."""
        with self._cond:
            if not self._running:
                return
            self._running = False
            self._cond.notify_all()
        if events._blocks is self:
            events.set_block_listener(None)
        with self._cond:
            watching, self._watching = self._watching, False
        if watching:
            self._stopped.acquire()
            self._stopped.release()

    def __enter__(self) -> DeadlockDetector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def findings(self) -> list[DeadlockFinding]:
        with self._cond:
            return list(self._findings)

    # -- the watchdog -------------------------------------------------------------------

    def _watch(self) -> None:
        candidate: tuple[int, frozenset[tuple[int, object]], float] | None = None
        try:
            while True:
                with self._cond:
                    if not self._running:
                        return
                    if candidate is None and not events.blocked_threads():
                        self._cond.wait(1.0)  # woken by the next blocked()
                    else:
                        self._cond.wait(self.poll)
                    if not self._running:
                        return
                    epoch = self._epoch
                candidate = self._step(candidate, epoch)
        finally:
            self._stopped.release()

    def _step(
        self, candidate: tuple[int, frozenset[tuple[int, object]], float] | None, epoch: int
    ) -> tuple[int, frozenset[tuple[int, object]], float] | None:
        seen = observe()
        now = time.monotonic()
        if seen is None:
            self._declared = None
            return None
        if candidate is None or candidate[0] != epoch or candidate[1] != seen.signature:
            return (epoch, seen.signature, now)
        if now - candidate[2] < self.grace or self._declared == seen.signature:
            return candidate
        with self._cond:
            if self._epoch != epoch:
                return None  # something moved while we looked
        self._declared = seen.signature
        self._declare(seen)
        return candidate

    def _declare(self, seen: _Observation) -> None:
        frames = sys._current_frames()
        try:
            now = time.monotonic()
            dumps = tuple(dump_thread(t, frames, seen.infos, now) for t in seen.threads)
        finally:
            del frames
        finding = DeadlockFinding(threads=dumps)
        with self._cond:
            self._findings.append(finding)
        text = render_deadlock(finding)
        if self.on_deadlock is not None:
            try:
                self.on_deadlock(finding)
            except Exception as error:  # noqa: BLE001 - report it; the watchdog must live on
                sys.stderr.write(f"racecheck: on_deadlock callback raised {error!r}\n")
        if self.mode == "exit":
            sys.stderr.write(text)
            sys.stderr.flush()
            os._exit(2)
        error_type = _error_type(text)
        for thread in seen.threads:
            if thread.ident is not None:
                _raise_in(thread.ident, error_type)
        for info in seen.infos.values():
            try:
                _wake(info)
            except Exception as error:  # noqa: BLE001
                sys.stderr.write(f"racecheck: waking a deadlocked thread failed: {error!r}\n")


_exit_lock = allocate_lock()
_exit_detector: list[DeadlockDetector] = []


def install_exit_check(
    on_deadlock: Callable[[DeadlockFinding], object] | None = None,
    mode: Mode = "exit",
    grace: float = 0.2,
) -> DeadlockDetector:
    """Turn the classic hang at interpreter exit (main finished, a non-daemon thread
    blocked forever on a racecheck primitive) into the deadlock report.

    The watchdog recognises the main thread inside ``threading._shutdown`` as an
    understood, untimed wait, so the same all-blocked rule applies.  Idempotent: returns
    the one exit detector.
    """
    with _exit_lock:
        if _exit_detector:
            return _exit_detector[0]
        detector = DeadlockDetector(on_deadlock=on_deadlock, mode=mode, grace=grace)
        _exit_detector.append(detector)
    return detector.start()
