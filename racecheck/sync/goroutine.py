"""``go(fn, *args)``: Go's ``go`` statement for Python threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["go"]


def go(
    fn: Callable[..., object], /, *args: Any, name: str | None = None, **kwargs: Any
) -> threading.Thread:
    """Start ``fn(*args, **kwargs)`` in a new thread and return the (started) thread.

    The thread is never a daemon, whatever the caller is: like a goroutine the program
    does not silently drop it, and the leak checker can see it.  It is a plain
    ``threading.Thread`` on purpose: the detector's patch of ``Thread.start``/``join``
    gives ``go`` the same fork/join happens-before edges as any thread.  ``name`` is the
    thread's name (so ``fn`` cannot take a keyword argument called ``name`` through here).
    """
    thread = threading.Thread(target=fn, args=args, kwargs=kwargs, name=name, daemon=False)
    thread.start()
    return thread
