"""Which engine core runs.

The pure-Python reference core is the default.  The native core
(``RACECHECK_CORE=native``, which requires the extension and fails clearly without it)
passes the same engine suite and the differential test, but it is opt-in for now: it
is not yet faster on whole programs (the Python hooks and the Python slow path dominate,
bench/README.md), and it crashed when a program's own profiler re-entered the engine
during a thread's teardown (see the issue 6 notes).  ``RACECHECK_CORE=auto`` picks the
native core when it is built."""

from __future__ import annotations

import os
from typing import Any

from racecheck.engine.detector import Detector

_ENV = "RACECHECK_CORE"


class CoreUnavailableError(RuntimeError):
    """``RACECHECK_CORE`` names a core that cannot run here."""


def native_class() -> type[Detector] | None:
    """The native detector class, or None when the extension is not built here."""
    try:
        from racecheck.engine.native import NativeDetector
    except ImportError:
        return None
    return NativeDetector


def detector_class() -> type[Detector]:
    """The detector class ``RACECHECK_CORE`` (default: python) selects."""
    want = os.environ.get(_ENV, "").strip().lower()
    if want in ("", "python"):
        return Detector
    if want not in ("native", "auto"):
        raise CoreUnavailableError(f"{_ENV} must be 'native' or 'python', not {want!r}")
    cls = native_class()
    if cls is None:
        if want == "native":
            raise CoreUnavailableError(
                f"{_ENV}=native but the native core (racecheck.engine._native) is not "
                "built; reinstall racecheck with a C compiler, or use RACECHECK_CORE=python"
            )
        return Detector
    return cls


def core_name() -> str:
    """``native`` or ``python``: the core :func:`make_detector` would create now."""
    return "python" if detector_class() is Detector else "native"


def make_detector(**kw: Any) -> Detector:
    """A new engine of the selected core (keyword arguments as :class:`Detector`)."""
    return detector_class()(**kw)
