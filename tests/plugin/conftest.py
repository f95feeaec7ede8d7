"""Helpers for the plugin tests: run a real pytest (in a subprocess, so the outer test
process is never instrumented) on a small suite and read back each test's verdict."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import pytest

_SHORT_SUMMARY = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)")

# A tiny "project under test": racy and synchronised twins of the same code.
APP = textwrap.dedent(
    """\
    import threading


    class Counter:
        def __init__(self):
            self.value = 0


    def bump(counter):
        counter.value += 1


    def racy():
        counter = Counter()
        worker = threading.Thread(target=bump, args=(counter,))
        worker.start()
        counter.value += 1
        worker.join()
        return counter.value


    def synchronised():
        counter = Counter()
        worker = threading.Thread(target=bump, args=(counter,))
        worker.start()
        worker.join()
        counter.value += 1
        return counter.value
    """
)


@dataclass
class Run:
    """One finished inner pytest run."""

    result: pytest.RunResult

    @property
    def ret(self) -> int:
        return int(self.result.ret)

    @property
    def out(self) -> str:
        return self.result.stdout.str()

    def verdicts(self) -> dict[str, set[str]]:
        """nodeid -> {"PASSED", "FAILED", "ERROR", ...} from the ``-rA`` summary (a test
        that passed and then errored at teardown has both)."""
        found: dict[str, set[str]] = {}
        for line in self.result.outlines:
            match = _SHORT_SUMMARY.match(line)
            if match:
                found.setdefault(match.group(2), set()).add(match.group(1))
        return found

    def verdict(self, name: str) -> set[str]:
        """The verdicts of the one test whose nodeid ends with ``name``."""
        matches = [v for k, v in self.verdicts().items() if k.endswith(name)]
        assert len(matches) == 1, (name, self.verdicts(), self.out)
        return matches[0]

    def section(self, title: str) -> str:
        """The text of the failure/error section headed ``title`` (up to the next one)."""
        lines = self.result.outlines
        start = next(
            (i for i, line in enumerate(lines) if line.startswith("_") and f" {title} " in line),
            None,
        )
        assert start is not None, (title, self.out)
        end = next(
            (i for i in range(start + 1, len(lines)) if re.match(r"^(_{3,}|={3,}) ", lines[i])),
            len(lines),
        )
        return "\n".join(lines[start + 1 : end])

    def summary(self) -> str:
        """The racecheck section of the terminal summary."""
        lines = self.result.outlines
        start = next(i for i, line in enumerate(lines) if re.match(r"^=+ racecheck =+$", line))
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("====")),
            len(lines),
        )
        return "\n".join(lines[start + 1 : end])


RunPytest = Callable[..., Run]


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester directory holding ``app.py`` and a ``pyproject.toml`` (the rootdir),
    with an environment that does not leak the outer run's settings inward."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "RACECHECK_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
    pytester.makepyfile(app=APP)
    return pytester


@pytest.fixture
def run(suite: pytest.Pytester) -> RunPytest:
    """``run("--racecheck", ...)``: the suite in a subprocess with ``-rA``."""

    def runner(*args: str) -> Run:
        return Run(suite.runpytest_subprocess("-rA", "-p", "no:cacheprovider", *args, timeout=60))

    return runner
