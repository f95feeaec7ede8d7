"""Every engine test runs on both cores: the pure-Python reference and the native one.

The test modules construct ``Detector`` by name; this autouse fixture rebinds that name
in the test's module to the class of the core under test, so the suite stays written
against the reference API.  The native variant is skipped (not silently passed) when the
extension is not built here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from racecheck.engine.core import native_class
from racecheck.engine.detector import Detector


@pytest.fixture(params=["python", "native"], autouse=True)
def core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "python":
        cls: type[Detector] = Detector
    else:
        found = native_class()
        if found is None:
            pytest.skip("native core not built")
        cls = found
    if hasattr(request.module, "Detector"):
        monkeypatch.setattr(request.module, "Detector", cls)
    yield request.param
