"""The pytest11 entry point: ``pytest --racecheck`` does for a test suite what
``go test -race`` does for Go's.

Inactive unless asked for: without ``--racecheck`` / ``--racecheck-leaks`` (or the ini
options ``racecheck = true`` / ``racecheck_leaks = true``) this module only declares its
options, the ``racecheck`` marker and the ``racecheck`` fixture; it imports nothing of
racecheck, installs no import hook and patches nothing.

When enabled, a :class:`RacecheckSession` is registered as a second plugin.  It turns
the detector on in ``pytest_load_initial_conftests`` (before the root ``conftest.py`` and
the test modules are imported, so they and the project's code they import are
instrumented), and attributes every finding to the test that is running when it is
*detected*: findings are queued by whichever thread finds them and drained at the end of
each phase (setup, call, teardown).  Findings of the setup phase are reported with the
call phase, so a racy fixture fails the test that uses it rather than erroring it.

Why verdicts do not depend on dedup: the engine reports each pair of racing sites once;
the plugin calls :func:`racecheck.runtime.reset` when a test starts, which clears that
dedup set, so a race that recurs in a later test is detected again and fails that test
too.  The plugin does its own dedup for *printing*: the full report is shown once, later
tests say "same race as first reported in <test>".

pytest's assertion rewriting owns the import of test modules and conftests (its hook
sits on ``sys.meta_path``).  The plugin moves that hook in front of racecheck's and
replaces the hook's ``exec_module`` on the instance: for modules racecheck's selection
picks it runs pytest's ``rewrite_asserts`` and then racecheck's ``rewrite_module`` on the
same AST, and caches the result under its own pyc name, so neither plain pytest runs nor
``racecheck run`` ever load code rewritten for the other.

Under pytest-xdist every worker detects; the controller detects nothing (it runs no
tests), collects the workers' findings from ``workeroutput`` when they finish, prints the
summary and writes the ``--racecheck-report`` files.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from racecheck.config import Options
    from racecheck.report.findings import Finding

_SESSION_PLUGIN = "racecheck-session"
_MARKER_HELP = (
    "racecheck(detect=True, leaks=True, ignore=[...]): per-test racecheck settings; "
    "detect=False ignores data races found during the test, leaks=False skips the leak "
    "check, ignore= takes racecheck.leaks.ignore_* options (a string is a thread-name glob)"
)
RACE_HEADLINE = "race detected during execution of test"
LEAK_HEADLINE = "thread leak detected after test teardown"


# ---------------------------------------------------------------------------------------
# Options, marker and the early start
# ---------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("racecheck", "racecheck: data races and thread leaks")
    group.addoption(
        "--racecheck",
        action="store_true",
        default=None,
        help="fail tests during which a data race is detected",
    )
    group.addoption(
        "--racecheck-leaks",
        action="store_true",
        default=None,
        help="fail tests that leave threads running after their teardown",
    )
    group.addoption(
        "--racecheck-report",
        action="append",
        default=[],
        metavar="FORMAT:PATH",
        help="also write the findings to PATH (json or sarif); repeatable",
    )
    group.addoption(
        "--racecheck-include",
        action="append",
        default=[],
        metavar="GLOB",
        help="also instrument modules matching GLOB (even in site-packages); repeatable",
    )
    group.addoption(
        "--racecheck-exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="never instrument modules matching GLOB; repeatable",
    )
    parser.addini("racecheck", "enable race detection (true/false)", type="bool", default=False)
    parser.addini(
        "racecheck_leaks",
        "enable the per-test leak checker (true/false)",
        type="bool",
        default=False,
    )


def _early_option(config: pytest.Config, name: str) -> Any:
    """A command-line value in ``pytest_load_initial_conftests``, where ``getoption`` does
    not see the command line yet (only ``known_args_namespace`` does)."""
    return getattr(config.known_args_namespace, name, None)


def _wanted(config: pytest.Config) -> tuple[bool, bool]:
    """(detect, leaks) as asked by the flags or the ini file."""
    detect = bool(_early_option(config, "racecheck") or config.getini("racecheck"))
    leaks = bool(_early_option(config, "racecheck_leaks") or config.getini("racecheck_leaks"))
    return detect, leaks


def _likely_xdist_controller(config: pytest.Config) -> bool:
    """Before ``pytest_configure`` we can only guess (from ``-n``) whether this process is
    an xdist controller; the guess is settled in :meth:`RacecheckSession.pytest_configure`.
    ``PYTEST_XDIST_WORKER`` marks a worker (or a pytest started by a test in a worker,
    which then settles later)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return False
    numprocesses = getattr(config.known_args_namespace, "numprocesses", None)
    return bool(numprocesses)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Start as early as pytest allows: the root conftest and everything it imports is
    imported right after this hook, and must already be instrumented."""
    detect, leaks = _wanted(early_config)
    if not (detect or leaks):
        return
    session = RacecheckSession(early_config, detect=detect, leaks=leaks)
    early_config.pluginmanager.register(session, _SESSION_PLUGIN)
    if detect and not _likely_xdist_controller(early_config):
        session.start_detection()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)


def _session_of(config: pytest.Config) -> RacecheckSession | None:
    plugin = config.pluginmanager.get_plugin(_SESSION_PLUGIN)
    return plugin if isinstance(plugin, RacecheckSession) else None


# ---------------------------------------------------------------------------------------
# Assertion rewriting + racecheck rewriting for the modules pytest imports itself
# ---------------------------------------------------------------------------------------


def _combined_cache_path(source_path: str) -> str | None:
    from racecheck.instrument import importhook

    plain = importhook.cache_path(source_path)
    if plain is None:
        return None
    return f"{plain[: -len('.pyc')]}.pytest-{pytest.__version__}.pyc"


def _compile_both(path: Path, config: pytest.Config) -> Any:
    """pytest's assertion rewrite, then racecheck's, on one AST (with a pyc cache keyed
    by the source hash, like both rewriters' own caches)."""
    from _pytest.assertion.rewrite import rewrite_asserts

    from racecheck.instrument import importhook
    from racecheck.instrument.rewrite import rewrite_module

    source = path.read_bytes()
    source_hash = importlib.util.source_hash(source)
    cache = _combined_cache_path(str(path))
    if cache is not None:
        code = importhook.read_cached_code(cache, source_hash)
        if code is not None:
            return code
    filename = str(path)
    tree = ast.parse(source, filename=filename)
    rewrite_asserts(tree, source, filename, config)
    rewrite_module(tree, filename)
    code = compile(tree, filename, "exec", dont_inherit=True)
    if cache is not None:
        importhook.write_cached_code(cache, code, source_hash)
    return code


class _AssertionHookPatch:
    """Makes pytest's ``AssertionRewritingHook`` also apply racecheck's rewrite."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._hook: Any = None

    def apply(self) -> None:
        from _pytest.assertion.rewrite import assertstate_key

        state = self._config.stash.get(assertstate_key, None)
        hook = getattr(state, "hook", None) if state is not None else None
        if hook is None:  # --assert=plain: racecheck's own finder imports test modules
            return
        original: Callable[[ModuleType], None] = hook.exec_module
        config = self._config

        def exec_module(module: ModuleType) -> None:
            from racecheck.instrument import importhook

            spec = module.__spec__
            finder = importhook.installed()
            if (
                finder is None
                or spec is None
                or spec.origin is None
                or not finder.selection.selects(module.__name__, spec.origin)
            ):
                original(module)
                return
            path = Path(spec.origin)
            names = getattr(hook, "_rewritten_names", None)
            if isinstance(names, dict):
                names[module.__name__] = path
            exec(_compile_both(path, config), module.__dict__)

        hook.exec_module = exec_module
        self._hook = hook
        # pytest's finder must see test modules before racecheck's (which is first now).
        if hook in sys.meta_path:
            sys.meta_path.remove(hook)
            sys.meta_path.insert(0, hook)

    def undo(self) -> None:
        hook, self._hook = self._hook, None
        if hook is not None:
            with contextlib.suppress(AttributeError):
                del hook.exec_module


# ---------------------------------------------------------------------------------------
# Findings attributed to tests
# ---------------------------------------------------------------------------------------


@dataclass
class Incident:
    """One finding, attributed to the test (``nodeid``) and phase during which it was
    detected; ``nodeid`` is empty for findings detected after the last test."""

    nodeid: str
    when: str
    finding: Finding
    expected: bool = False

    def to_wire(self) -> dict[str, Any]:
        from racecheck.report.findings import to_dict

        return {
            "nodeid": self.nodeid,
            "when": self.when,
            "expected": self.expected,
            "finding": to_dict(self.finding),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Incident:
        from racecheck.report.json import finding_from_dict

        return cls(
            str(data["nodeid"]),
            str(data["when"]),
            finding_from_dict(data["finding"]),
            bool(data.get("expected", False)),
        )


@dataclass
class _TestState:
    """Per-test bookkeeping, kept in the item's stash."""

    detect: bool
    leaks: bool
    leak_options: tuple[Any, ...]
    baseline: Any = None
    setup: list[Finding] | None = None
    call: list[Finding] | None = None
    teardown: list[Finding] | None = None
    leak: Finding | None = None
    phase: str = "setup"
    """The phase running now: where findings collected by ``expect_race`` belong."""


_state_key = pytest.StashKey[_TestState]()


def _marker_settings(item: pytest.Item) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers("racecheck"))):  # closest mark wins
        if mark.args:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.racecheck takes keyword arguments only"
            )
        unknown = set(mark.kwargs) - {"detect", "leaks", "ignore"}
        if unknown:
            raise pytest.UsageError(
                f"{item.nodeid}: unknown @pytest.mark.racecheck argument(s): "
                f"{', '.join(sorted(unknown))} (valid: detect, leaks, ignore)"
            )
        settings.update(mark.kwargs)
    return settings


def _leak_options(values: Any) -> tuple[Any, ...]:
    from racecheck.liveness import leaks

    if values is None:
        return ()
    if isinstance(values, str | leaks.LeakOption):
        values = [values]
    out = []
    for value in values:
        if isinstance(value, str):
            out.append(leaks.ignore_name(value))
        elif isinstance(value, leaks.LeakOption):
            out.append(value)
        else:
            raise pytest.UsageError(
                f"@pytest.mark.racecheck(ignore=...): expected racecheck.leaks.ignore_* "
                f"options or thread-name globs, got {value!r}"
            )
    return tuple(out)


def _location(finding: Finding) -> str:
    from racecheck.report.findings import RaceFinding

    if not isinstance(finding, RaceFinding):
        return ""
    location = finding.current.location
    return f" on {location}" if location else ""


def _top(stack: Sequence[Any]) -> str:
    if not stack:
        return "?"
    frame = stack[0]
    return f"{os.path.basename(frame.filename)}:{frame.lineno}"


def describe(finding: Finding) -> str:
    """A one-line description of a finding, for the terminal summary."""
    from racecheck.report.findings import (
        DeadlockFinding,
        InversionFinding,
        LeakFinding,
        RaceFinding,
    )

    if isinstance(finding, RaceFinding):
        cur, prev = finding.current, finding.previous
        return (
            f"DATA RACE{_location(finding)}: {cur.op} at {_top(cur.stack)} ({cur.thread.name})"
            f" vs previous {prev.op} at {_top(prev.stack)} ({prev.thread.name})"
        )
    if isinstance(finding, LeakFinding):
        names = ", ".join(d.thread.name for d in finding.threads)
        parts = [f"{len(finding.threads)} thread(s)" + (f" ({names})" if names else "")]
        parts.extend(finding.others)
        return "THREAD LEAK: " + "; ".join(parts)
    if isinstance(finding, InversionFinding):
        locks = " -> ".join(edge.first for edge in finding.cycle)
        return f"POTENTIAL DEADLOCK (lock-order inversion): {locks}"
    if isinstance(finding, DeadlockFinding):
        return f"DEADLOCK: {len(finding.threads)} thread(s) blocked"
    return finding.kind  # pragma: no cover


def _package_dirs(*names: str) -> tuple[str, ...]:
    dirs = []
    for name in names:
        spec = importlib.util.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            dirs.append(os.path.join(os.path.realpath(location), ""))
    return tuple(dirs)


_runner_dirs: tuple[str, ...] | None = None


def _is_runner_frame(filename: str) -> bool:
    global _runner_dirs
    if _runner_dirs is None:  # main thread only (called while draining)
        _runner_dirs = _package_dirs("_pytest", "pytest", "pluggy", "xdist", "execnet", "unittest")
    path = os.path.realpath(filename)
    return path.startswith(_runner_dirs)


def _trim(stack: Any) -> Any:
    """The stack down to the test (innermost first): pytest's and pluggy's frames below
    the test function are the same in every report and only hide what matters."""
    for index, frame in enumerate(stack):
        if _is_runner_frame(frame.filename):
            return tuple(stack[:index]) if index else tuple(stack)
    return stack


def trim_finding(finding: Finding) -> Finding:
    """``finding`` with the test runner's frames cut off its stacks."""
    from dataclasses import replace

    from racecheck.report.findings import Access, LeakFinding, RaceFinding

    def access(a: Access) -> Access:
        thread = replace(a.thread, created_at=_trim(a.thread.created_at))
        return replace(a, stack=_trim(a.stack), thread=thread)

    if isinstance(finding, RaceFinding):
        return replace(finding, current=access(finding.current), previous=access(finding.previous))
    if isinstance(finding, LeakFinding):
        dumps = tuple(
            replace(d, thread=replace(d.thread, created_at=_trim(d.thread.created_at)))
            for d in finding.threads
        )
        return replace(finding, threads=dumps)
    return finding


# ---------------------------------------------------------------------------------------
# The session plugin
# ---------------------------------------------------------------------------------------


class RacecheckSession:
    """Everything the plugin does once enabled (one per pytest process)."""

    def __init__(self, config: pytest.Config, *, detect: bool, leaks: bool) -> None:
        from racecheck._rawsync import allocate_lock
        from racecheck.config import OptionsError, load_options

        self.config = config
        self.detect = detect
        self.leaks = leaks
        cli: dict[str, Any] = {
            "include": _early_option(config, "racecheck_include") or None,
            "exclude": _early_option(config, "racecheck_exclude") or None,
            "reports": _early_option(config, "racecheck_report") or None,
        }
        if detect:
            cli["detect"] = True
        if leaks:
            cli["leaks"] = True
        try:
            self.options: Options = load_options(cli, start=config.rootpath)
        except OptionsError as exc:
            raise pytest.UsageError(f"racecheck: {exc}") from None
        self.detecting = False
        self.controller = False
        self._assert_patch = _AssertionHookPatch(config)
        self._lock = allocate_lock()
        self._pending: list[Finding] = []  # guarded by _lock: appended from any thread
        self._first_seen: dict[str, str] = {}  # fingerprint -> nodeid (main thread only)
        self.incidents: list[Incident] = []
        self._recording = False
        self._reports_done = False

    # ---- switching detection on and off ----------------------------------------------

    def start_detection(self) -> None:
        if self.detecting:
            return
        from racecheck import runtime

        if runtime.is_enabled():
            raise pytest.UsageError(
                "racecheck: detection is already enabled in this process "
                "(pytest --racecheck inside racecheck run?)"
            )
        runtime.enable(
            self.options,
            roots=[str(self.config.rootpath)],
            deadlock="raise",
            on_finding=self._found,
        )
        self.detecting = True
        self._assert_patch.apply()

    def stop_detection(self) -> None:
        if not self.detecting:
            return
        from racecheck import runtime

        self._assert_patch.undo()
        runtime.disable()
        self.detecting = False

    def _found(self, finding: Finding) -> None:
        """Called by the runtime, from the thread that found it: only queue it."""
        with self._lock:
            self._pending.append(finding)

    def _drain(self) -> list[Finding]:
        with self._lock:
            found, self._pending = self._pending, []
        return [trim_finding(f) for f in found]

    # ---- session ----------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        self.controller = (
            not hasattr(config, "workerinput")
            and getattr(config.option, "dist", "no") != "no"
            and not config.getoption("collectonly")
        )
        if self.controller:
            self.stop_detection()
        elif self.detect:
            self.start_detection()
        if self.leaks and not self.controller:
            from racecheck.liveness import leaks

            leaks.begin_recording()
            self._recording = True

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.stop_detection()
        if self._recording:
            from racecheck.liveness import leaks

            self._recording = False
            leaks.end_recording()

    # ---- per test ---------------------------------------------------------------------

    def _begin(self, item: pytest.Item) -> _TestState:
        settings = _marker_settings(item)
        state = _TestState(
            detect=self.detecting and bool(settings.get("detect", True)),
            leaks=self.leaks and bool(settings.get("leaks", True)),
            leak_options=_leak_options(settings.get("ignore")),
        )
        item.stash[_state_key] = state
        if self.detecting:
            from racecheck import runtime

            # Found between two tests: the test about to run is the one "running".
            state.setup = self._drain()
            runtime.reset()  # the engine's dedup is per test: recurring races count again
        if state.leaks:
            from racecheck.liveness import leaks

            state.baseline = leaks.snapshot()
        return state

    @staticmethod
    def _enter(item: pytest.Item, phase: str) -> None:
        state = item.stash.get(_state_key, None)
        if state is not None:
            state.phase = phase

    def _collect(self, item: pytest.Item, when: str) -> None:
        state = item.stash.get(_state_key, None)
        if state is None or not self.detecting:
            return
        found = self._drain()
        current = getattr(state, when) or []
        setattr(state, when, current + found)

    def expect(self, item: pytest.Item) -> Callable[[], int]:
        """Start an ``expect_race`` block: returns the function that ends it, which
        returns how many races were found inside."""
        from racecheck import runtime

        when = item.stash[_state_key].phase
        self._collect(item, when)
        runtime.reset()

        def end() -> int:
            found = self._drain()
            runtime.reset()
            races = [f for f in found if f.kind == "race"]
            others = [f for f in found if f.kind != "race"]
            state = item.stash[_state_key]
            setattr(state, when, (getattr(state, when) or []) + others)
            self.incidents.extend(Incident(item.nodeid, when, f, expected=True) for f in races)
            return len(races)

        return end

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        self._begin(item)
        self._enter(item, "setup")
        try:
            return (yield)
        finally:
            self._collect(item, "setup")

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        self._enter(item, "call")
        try:
            return (yield)
        finally:
            self._collect(item, "call")

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        self._enter(item, "teardown")
        try:
            return (yield)
        finally:
            state = item.stash.get(_state_key, None)
            if state is not None and state.leaks:
                from racecheck.liveness import leaks

                leak = leaks.find(
                    *state.leak_options,
                    max_wait=self.options.max_wait,
                    baseline=state.baseline,
                    scope=item.nodeid,
                )
                state.leak = trim_finding(leak) if leak is not None else None
                state.baseline = None
            self._collect(item, "teardown")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        state = item.stash.get(_state_key, None)
        if state is None:
            return report
        findings: list[Finding] = []
        leak: Finding | None = None
        if report.when == "setup":
            if report.passed:
                return report  # setup's findings are reported with the call
            findings = (state.setup or []) if state.detect else []
            state.setup = None
        elif report.when == "call":
            if state.detect:
                findings = (state.setup or []) + (state.call or [])
            state.setup = state.call = None
        elif report.when == "teardown":
            findings = (state.teardown or []) if state.detect else []
            state.teardown = None
            leak, state.leak = state.leak, None
        self._judge(item, report, findings, leak)
        return report

    def _judge(
        self,
        item: pytest.Item,
        report: pytest.TestReport,
        findings: list[Finding],
        leak: Finding | None,
    ) -> None:
        """Fail ``report`` for the findings (which are recorded for the summary)."""
        parts: list[str] = []
        if findings:
            parts.append(self._race_text(item.nodeid, report.when, findings))
        if leak is not None:
            from racecheck.report.text import format_finding

            self.incidents.append(Incident(item.nodeid, report.when, leak))
            parts.append(f"{LEAK_HEADLINE}\n{format_finding(leak, self.options.strip_path_prefix)}")
        if not parts:
            return
        text = "\n".join(parts)
        if report.failed:
            report.sections.append(("racecheck", text))
            return
        report.outcome = "failed"
        report.longrepr = text
        if hasattr(report, "wasxfail"):
            del report.wasxfail  # a race is a failure even in an xfail test

    def _race_text(self, nodeid: str, when: str, findings: list[Finding]) -> str:
        from racecheck.report.text import format_finding

        lines = [RACE_HEADLINE]
        printed: set[str] = set()
        for finding in findings:
            self.incidents.append(Incident(nodeid, when, finding))
            fp = finding.fingerprint
            if fp in printed:
                continue
            printed.add(fp)
            first = self._first_seen.setdefault(fp, nodeid)
            if first != nodeid:
                lines.append(f"same race as first reported in {first}: {describe(finding)}")
            else:
                lines.append(format_finding(finding, self.options.strip_path_prefix).rstrip())
        return "\n".join(lines) + "\n"

    # ---- the end ----------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.detecting:
            late = self._drain()
            self.incidents.extend(Incident("", "after the last test", f) for f in late)
            if late and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        workeroutput = getattr(self.config, "workeroutput", None)
        if isinstance(workeroutput, dict):
            workeroutput["racecheck"] = json.dumps([i.to_wire() for i in self.incidents])
            return
        if self.controller and session.exitstatus == pytest.ExitCode.OK:
            if any(i.nodeid == "" and not i.expected for i in self.incidents):
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self._write_reports()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """xdist controller: a worker finished; take its incidents."""
        output = getattr(node, "workeroutput", None) or {}
        data = output.get("racecheck") if isinstance(output, dict) else None
        if not data:
            return
        self.incidents.extend(Incident.from_wire(d) for d in json.loads(data))

    def distinct(self) -> list[Finding]:
        """Each finding once (by fingerprint), in summary order; expected races left out."""
        seen: set[str] = set()
        out: list[Finding] = []
        for incident in self._sorted(self.incidents):
            if incident.expected or incident.finding.fingerprint in seen:
                continue
            seen.add(incident.finding.fingerprint)
            out.append(incident.finding)
        return out

    @staticmethod
    def _sorted(incidents: list[Incident]) -> list[Incident]:
        """Deterministic order (by test id, then phase), so ``-n 2`` summaries match
        serial ones; after-the-last-test findings come last."""
        phases = {"setup": 0, "call": 1, "teardown": 2}
        return sorted(incidents, key=lambda i: (i.nodeid == "", i.nodeid, phases.get(i.when, 3)))

    def _write_reports(self) -> None:
        if self._reports_done or not self.options.reports:
            return
        self._reports_done = True
        from racecheck.report.console import Reporter

        Reporter(self.options).write_reports(self.distinct())

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput"):
            return
        write = terminalreporter.write_line
        terminalreporter.section("racecheck")
        incidents = [i for i in self._sorted(self.incidents) if not i.expected]
        expected = sum(1 for i in self.incidents if i.expected)
        if not incidents:
            what = " and ".join(
                w for w, on in (("data races", self.detect), ("thread leaks", self.leaks)) if on
            )
            write(f"racecheck: no {what} found")
        by_fp: dict[str, list[Incident]] = {}
        for incident in incidents:
            by_fp.setdefault(incident.finding.fingerprint, []).append(incident)
        for group in by_fp.values():
            write(describe(group[0].finding), red=True, bold=True)
            for incident in group:
                where = incident.nodeid or "(no test running)"
                write(f"    in {where} ({incident.when})")
        from racecheck.report.text import summary_lines

        race_tests = {i.nodeid for i in incidents if i.nodeid and i.finding.kind == "race"}
        for line in summary_lines(self.distinct()):
            if "data race" in line and race_tests:
                line += f" in {len(race_tests)} test(s)"
            write(line)
        if expected:
            write(f"racecheck: {expected} expected race(s) inside expect_race()")
        for fmt, path in self.options.reports:
            write(f"racecheck: wrote {fmt} report to {path}")


# ---------------------------------------------------------------------------------------
# The fixture
# ---------------------------------------------------------------------------------------


class RacecheckFixture:
    """What the ``racecheck`` fixture gives a test."""

    def __init__(self, session: RacecheckSession | None, item: pytest.Item) -> None:
        self._session = session
        self._item = item

    @property
    def enabled(self) -> bool:
        """True when races are being detected in this test run."""
        return self._session is not None and self._session.detecting

    @contextlib.contextmanager
    def expect_race(self) -> Iterator[None]:
        """The block must produce a data race (join the threads inside it): the test
        fails if none is detected; races detected inside do not fail the test.
        Skips the test when detection is off (run with ``--racecheck``)."""
        session = self._session
        if session is None or not session.detecting:
            pytest.skip("racecheck.expect_race() needs race detection (pytest --racecheck)")
        end = session.expect(self._item)
        try:
            yield
        except BaseException:
            end()
            raise
        if end() == 0:
            pytest.fail("racecheck.expect_race(): no data race was detected in the block")


@pytest.fixture
def racecheck(request: pytest.FixtureRequest) -> RacecheckFixture:
    """racecheck's per-test API (``racecheck.expect_race()``, ``racecheck.enabled``)."""
    return RacecheckFixture(_session_of(request.config), request.node)
