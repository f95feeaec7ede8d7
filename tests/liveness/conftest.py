"""Fixtures for the liveness tests."""

from __future__ import annotations

from liveness_fakes import threads  # noqa: F401  (fixture)
