"""Which core runs: native by default where built, RACECHECK_CORE to choose, and a guard
so that a native core that silently failed to compile cannot pass as "tested"."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from racecheck.engine import core
from racecheck.engine.detector import Detector


def test_python_forces_the_reference_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACECHECK_CORE", "python")
    assert core.detector_class() is Detector
    assert core.core_name() == "python"


def test_default_is_native_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RACECHECK_CORE", raising=False)
    native = core.native_class()
    expected = native if native is not None else Detector
    assert core.detector_class() is expected


def test_unknown_core_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACECHECK_CORE", "turbo")
    with pytest.raises(core.CoreUnavailableError, match="RACECHECK_CORE"):
        core.detector_class()


def test_hooks_follow_the_core_choice() -> None:
    """The rewritten code's ``__rc__`` class is chosen at import from the same variable."""
    code = (
        "from racecheck.instrument import hooks;"
        "print(hooks.ModuleHooks.__name__)"
    )
    env = dict(os.environ, RACECHECK_CORE="python")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "PyModuleHooks"
    env["RACECHECK_CORE"] = "native"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    want = "NativeModuleHooks" if core.native_class() is not None else "PyModuleHooks"
    assert out.stdout.strip() == want


def _can_compile() -> bool:
    """A C compiler and this Python's headers: what building the extension needs."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return shutil.which(cc) is not None and headers.exists()


@pytest.mark.skipif(not _can_compile(), reason="no C compiler or Python headers here")
def test_native_core_was_built_where_it_can_be() -> None:
    """The extension is optional (no compiler: pure Python), which would also hide a
    compile error; wherever it could have been built, it must have been."""
    from racecheck.instrument import hooks

    assert core.native_class() is not None, "racecheck.engine._native failed to build"
    if os.environ.get("RACECHECK_CORE", "").strip().lower() != "python":
        assert hooks.ModuleHooks.__name__ == "NativeModuleHooks"
