"""The public cache API of the import hook (used by the pytest plugin for test modules)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from racecheck.instrument import importhook
from racecheck.instrument.rewrite import compile_instrumented


def test_written_code_reads_back_only_for_the_same_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    source = b"x = 1\n"
    code = compile_instrumented(source, "m.py")
    path = str(tmp_path / "__pycache__" / "m.racecheck.pyc")
    digest = importlib.util.source_hash(source)
    assert importhook.read_cached_code(path, digest) is None  # nothing written yet
    importhook.write_cached_code(path, code, digest)
    assert importhook.read_cached_code(path, digest) == code
    assert importhook.read_cached_code(path, importlib.util.source_hash(b"x = 2\n")) is None


def test_corrupt_cache_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "m.pyc"
    path.write_bytes(importlib.util.MAGIC_NUMBER + b"\x03\x00\x00\x00" + b"0" * 8 + b"junk")
    assert importhook.read_cached_code(str(path), b"0" * 8) is None


def test_old_private_names_still_work() -> None:
    assert importhook._read_cache is importhook.read_cached_code
    assert importhook._write_cache is importhook.write_cached_code


def test_nothing_written_when_bytecode_is_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    path = tmp_path / "m.pyc"
    importhook.write_cached_code(str(path), compile_instrumented(b"", "m.py"), b"0" * 8)
    assert not path.exists()
