"""Which frames of a stack belong in a report: the one rule every stack capture uses.

A report shows the user's story, innermost first, and nothing else:

* racecheck's own frames are skipped (a hook, a patched ``Thread.start``, a primitive's
  method), but the walk goes on past them, so a user callback run by ``Once.do`` still
  shows the user code that called ``do``;
* the walk stops at an *entry* frame: the frame in which racecheck's runner executes the
  user's ``__main__`` (everything older is the CLI and click, which the user never wrote);
* the frames every thread starts with (``threading``'s ``_bootstrap``, ``_bootstrap_inner``
  and ``run``) are dropped from the outer end.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from types import CodeType, FrameType
from typing import Any

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
THREADING_FILE = threading.__file__
_BOOTSTRAP_NAMES = frozenset({"_bootstrap", "_bootstrap_inner", "run"})

_entry_codes: frozenset[CodeType] = frozenset()


def register_entry(func: Callable[..., Any]) -> None:
    """Declare ``func`` as an entry point: stacks end at the user frame it runs."""
    global _entry_codes
    _entry_codes = _entry_codes | {func.__code__}


def is_racecheck_file(filename: str) -> bool:
    return filename.startswith(PACKAGE_DIR)


def user_frames(frame: FrameType | None, limit: int = 32) -> Iterator[FrameType]:
    """The frames of the user's stack from ``frame`` outwards (see the module doc).

    The frames are yielded, not stored: callers take what they need (file, line, name)
    and drop the frame, which would keep the user's locals alive.
    """
    entries = _entry_codes
    pending: list[FrameType] = []  # threading bootstrap frames, held back until we know
    count = 0
    while frame is not None and count < limit:
        code = frame.f_code
        if code in entries:
            break
        filename = code.co_filename
        if filename.startswith(PACKAGE_DIR):
            pass
        elif filename == THREADING_FILE and code.co_name in _BOOTSTRAP_NAMES:
            pending.append(frame)
        else:
            for held in pending:
                yield held
                count += 1
            pending.clear()
            yield frame
            count += 1
        frame = frame.f_back
