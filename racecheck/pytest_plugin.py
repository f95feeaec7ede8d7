"""The pytest11 entry point: ``pytest --racecheck`` / ``--racecheck-leaks``.

Inactive (no import hooks, no patches) unless enabled by a flag or an ini option.
"""

from __future__ import annotations

from typing import Any


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("racecheck", "racecheck: data races and thread leaks")
    group.addoption("--racecheck", action="store_true", default=None,
                    help="fail tests during which a data race is detected")
    group.addoption("--racecheck-leaks", action="store_true", default=None,
                    help="fail tests that leave threads running")
    parser.addini("racecheck", "enable race detection (true/false)", type="bool", default=False)
    parser.addini("racecheck_leaks", "enable the leak checker (true/false)", type="bool",
                  default=False)
