"""Which engine core runs.

The native core (racecheck/engine/_native.c, with the C hooks of _native_hooks.c) is the
default wherever the extension was built; the pure-Python reference core is the
fallback without a compiler, and ``RACECHECK_CORE=python`` forces it (and the
pure-Python hooks with it).  Both pass the same engine suite and the differential test
(tests/engine/test_engine_differential.py); ``RACECHECK_CORE=native`` fails clearly
when the extension is missing instead of falling back."""

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
    """The detector class ``RACECHECK_CORE`` (default: native when built) selects."""
    want = os.environ.get(_ENV, "").strip().lower() or "auto"
    if want == "python":
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
