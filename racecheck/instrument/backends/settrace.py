"""Raw-lock capture on 3.11 with ``sys.setprofile`` (c_call / c_return events).

``sys.settrace`` is never touched, so coverage.py keeps working.  An existing profile
function (this thread's, or ``threading``'s hook for new threads) is chained: it is
called first with every event, exactly as before.  ``sys.setprofile`` only reaches the
calling thread and threads started afterwards (``threading.setprofile``); threads
already running are not covered on 3.11.  After ``stop()`` the function uninstalls
itself from every other thread the next time that thread reports an event.

A program that installs its own profiler while we run (``sys.setprofile(f)``,
``threading.setprofile(f)``, the ``profile`` module) would silently replace ours, and
every explicit ``lock.acquire()``/``release()`` would then be invisible (false races).
So while started, ``sys.setprofile``/``threading.setprofile`` are wrapped: the user's
function is *chained* with ours (it receives every event, as before), and
``sys.getprofile()``/``threading.getprofile()`` return the user's function.  A C-level
profiler (``cProfile``) bypasses ``sys.setprofile`` and still replaces ours: a known
blind spot, covered for locks made after install by the observed lock wrappers.
"""

from __future__ import annotations

import sys
import threading
from types import CodeType, FrameType, FunctionType
from typing import Any

from racecheck.instrument.backends.base import after_return, before_call, lock_call
from racecheck.instrument.stdlib_common import is_internal_file

ProfileFunc = Any

_USER_ATTR = "_racecheck_chained"
"""Attribute of our profile functions naming the user's function they chain (or None)."""


class SetProfileBackend:
    name = "setprofile"

    def __init__(self) -> None:
        self._active = False
        self._prev: ProfileFunc = None
        self._prev_threading: ProfileFunc = None
        self._func: ProfileFunc = None
        # The originals, saved at start() and put back at stop().
        self._sys_setprofile: Any = None
        self._sys_getprofile: Any = None
        self._threading_setprofile: Any = None
        self._threading_getprofile: Any = None

    def start(self) -> None:
        if self._active:
            return
        self._sys_setprofile, self._sys_getprofile = sys.setprofile, sys.getprofile
        self._threading_setprofile = threading.setprofile
        self._threading_getprofile = threading.getprofile
        self._prev = self._user_of(sys.getprofile())
        self._prev_threading = self._user_of(threading.getprofile())
        self._func = self._make(self._prev)
        self._active = True
        self._sys_setprofile(self._func)
        self._threading_setprofile(
            self._func if self._prev_threading is self._prev else self._make(self._prev_threading)
        )
        self._wrap_setters()

    def stop(self) -> None:
        if not self._active:
            return
        self._active = False
        self._unwrap_setters()
        current = sys.getprofile()
        if self._is_ours(current):
            sys.setprofile(self._user_of(current))
        threading.setprofile(self._user_of(threading.getprofile()))

    # -- chaining the user's profilers ---------------------------------------------------

    def _is_ours(self, func: ProfileFunc) -> bool:
        return type(func) is FunctionType and func.__code__ in _OUR_CODES

    def _user_of(self, func: ProfileFunc) -> ProfileFunc:
        """The user's function behind one of ours (itself when it is not ours)."""
        return getattr(func, _USER_ATTR) if self._is_ours(func) else func

    def _wrap_setters(self) -> None:
        backend = self
        sys_set, sys_get = self._sys_setprofile, self._sys_getprofile
        th_set, th_get = self._threading_setprofile, self._threading_getprofile

        # Unwrapping first matters: threading's bootstrap calls ``sys.setprofile`` with
        # the hook, which is already one of ours; wrapping it again would run our
        # profile twice per event.
        def setprofile(function: ProfileFunc, /) -> None:
            function = backend._user_of(function)
            sys_set(backend._make(function) if backend._active else function)

        def getprofile() -> ProfileFunc:
            return backend._user_of(sys_get())

        def threading_setprofile(func: ProfileFunc) -> None:
            func = backend._user_of(func)
            th_set(backend._make(func) if backend._active else func)

        def threading_getprofile() -> ProfileFunc:
            return backend._user_of(th_get())

        for ours, original in (
            (setprofile, sys_set),
            (getprofile, sys_get),
            (threading_setprofile, th_set),
            (threading_getprofile, th_get),
        ):
            ours.__name__ = original.__name__
            ours.__qualname__ = original.__qualname__
            ours.__doc__ = original.__doc__
        sys.setprofile, sys.getprofile = setprofile, getprofile
        threading.setprofile, threading.getprofile = threading_setprofile, threading_getprofile

    def _unwrap_setters(self) -> None:
        sys.setprofile, sys.getprofile = self._sys_setprofile, self._sys_getprofile
        threading.setprofile = self._threading_setprofile
        threading.getprofile = self._threading_getprofile

    # -- the profile function --------------------------------------------------------------

    def _make(self, chained: ProfileFunc) -> ProfileFunc:
        """The profile function; without a chained one it is the leanest possible, as it
        runs for every call and return in the thread."""
        if chained is None and self._func is not None:
            return self._func
        backend = self
        c_call, c_return = "c_call", "c_return"
        # Captured, not looked up as globals: at interpreter shutdown the modules' globals
        # turn to None while this function may still be installed.  The original
        # setprofile: the self-uninstall must put the user's function back as it is.
        is_finalizing, setprofile = sys.is_finalizing, self._sys_setprofile or sys.setprofile
        classify, internal = lock_call, is_internal_file
        before, after = before_call, after_return

        def profile(frame: FrameType, event: str, arg: Any) -> None:
            try:
                if event == c_call:
                    if not backend._active:
                        setprofile(chained)
                        return
                    found = classify(arg, None)
                    if found is not None and not internal(frame.f_code.co_filename):
                        before(*found)
                elif event == c_return:
                    found = classify(arg, None)
                    if found is not None and not internal(frame.f_code.co_filename):
                        after(found[0], found[1], 1)
            except Exception:
                if not is_finalizing():
                    raise

        setattr(profile, _USER_ATTR, None)
        if chained is None:
            return profile

        def chaining(frame: FrameType, event: str, arg: Any) -> None:
            chained(frame, event, arg)
            profile(frame, event, arg)

        setattr(chaining, _USER_ATTR, chained)
        return chaining


_OUR_CODES: frozenset[CodeType] = frozenset(
    const for const in SetProfileBackend._make.__code__.co_consts if isinstance(const, CodeType)
)
"""The code of every profile function ``_make`` builds (closures share their code), so
one of ours is recognised, from any backend instance, without a registry."""
