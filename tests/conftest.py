"""Shared test configuration."""

from __future__ import annotations


def pytest_configure(config):  # type: ignore[no-untyped-def]
    config.addinivalue_line(
        "markers", "liveness: fixture runs for the leak/deadlock/lock-order checkers"
    )
