"""Raw-lock capture on 3.11 with ``sys.setprofile`` (c_call / c_return events).

``sys.settrace`` is never touched, so coverage.py keeps working.  An existing profile
function (this thread's, or ``threading``'s hook for new threads) is chained: it is
called first with every event, exactly as before.  ``sys.setprofile`` only reaches the
calling thread and threads started afterwards (``threading.setprofile``); threads
already running are not covered on 3.11.  After ``stop()`` the function uninstalls
itself from every other thread the next time that thread reports an event.
"""

from __future__ import annotations

import sys
import threading
from types import FrameType
from typing import Any

from racecheck.instrument.backends.base import after_return, before_call, lock_call
from racecheck.instrument.stdlib_common import is_internal_file

ProfileFunc = Any


class SetProfileBackend:
    name = "setprofile"

    def __init__(self) -> None:
        self._active = False
        self._prev: ProfileFunc = None
        self._prev_threading: ProfileFunc = None
        self._func: ProfileFunc = None

    def start(self) -> None:
        if self._active:
            return
        self._prev = sys.getprofile()
        self._prev_threading = threading.getprofile()
        self._func = self._make(self._prev)
        self._active = True
        sys.setprofile(self._func)
        threading.setprofile(
            self._func if self._prev_threading is self._prev else self._make(self._prev_threading)
        )

    def stop(self) -> None:
        if not self._active:
            return
        self._active = False
        if sys.getprofile() is self._func:
            sys.setprofile(self._prev)
        threading.setprofile(self._prev_threading)

    def _make(self, chained: ProfileFunc) -> ProfileFunc:
        """The profile function; without a chained one it is the leanest possible, as it
        runs for every call and return in the thread."""
        backend = self
        c_call, c_return = "c_call", "c_return"
        # Captured, not looked up as globals: at interpreter shutdown the modules' globals
        # turn to None while this function may still be installed.
        is_finalizing, setprofile = sys.is_finalizing, sys.setprofile
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

        if chained is None:
            return profile

        def chaining(frame: FrameType, event: str, arg: Any) -> None:
            chained(frame, event, arg)
            profile(frame, event, arg)

        return chaining
