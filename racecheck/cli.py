"""The ``racecheck`` command: ``racecheck run`` and ``racecheck report``.

``racecheck run [OPTIONS] (SCRIPT | -m MODULE) [ARGS]...`` runs a program under the
detector exactly like ``python`` would run it (see :mod:`racecheck.runner`).  Option
parsing stops at the script name or at ``-m MODULE``, as ``python``'s does, so
``racecheck run app.py --leaks`` gives ``--leaks`` to ``app.py``.

At the end of the program the command does what the interpreter does at exit, in the
same order (join the non-daemon threads, run ``atexit`` handlers), then prints the
summary, writes the ``--report`` files and exits with ``exitcode`` (66) when something
was found and the program itself would have exited 0, else with the program's status.
"""

from __future__ import annotations

import _thread
import atexit
import importlib
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

import click

from racecheck.config import COLOR_CHOICES, Options, OptionsError, load_options

_TARGET_KEY = "racecheck.run.target"


def _engine_core() -> str:
    """Which engine core is active (``python`` until the native core exists)."""
    try:
        runtime = importlib.import_module("racecheck.runtime")
    except ImportError:
        return "python"
    core_name = getattr(runtime, "core_name", None)
    if callable(core_name):
        try:
            return str(core_name())
        except Exception:  # noqa: BLE001 - --version must always answer
            return "python"
    return "python"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from racecheck import __version__

    click.echo(f"racecheck {__version__} (engine core: {_engine_core()})")
    ctx.exit(0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and the active engine core, then exit.",
)
def cli() -> None:
    """racecheck: a data race detector, thread leak checker and Go-style concurrency
    primitives for Python."""


class _RunCommand(click.Command):
    """Stops option parsing at the program, like ``python``: everything from the script
    name (or from ``-m MODULE``) on belongs to the program, untouched."""

    def _value_options(self) -> set[str]:
        names: set[str] = set()
        for param in self.params:
            if isinstance(param, click.Option) and not param.is_flag and not param.count:
                names.update(param.opts)
                names.update(param.secondary_opts)
        return names

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = self._value_options() - {"-m"}
        target: tuple[str, str, list[str]] | None = None
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                if i + 1 < len(args):
                    target = ("script", args[i + 1], list(args[i + 2 :]))
                break
            if arg == "-m" or (arg.startswith("-m") and not arg.startswith("--")):
                name = arg[2:] if arg != "-m" else (args[i + 1] if i + 1 < len(args) else "")
                if not name:
                    raise click.UsageError("Option '-m' requires a module name.", ctx=ctx)
                rest = args[i + 1 :] if arg != "-m" else args[i + 2 :]
                target = ("module", name, list(rest))
                break
            if arg.startswith("-") and arg != "-":
                if arg in takes_value:
                    i += 2
                    continue
                i += 1
                continue
            target = ("script", arg, list(args[i + 1 :]))
            break
        ctx.meta[_TARGET_KEY] = target
        return super().parse_args(ctx, args[:i])


def _load_runtime(options: Options) -> Any:
    """``racecheck.runtime``, or None when it does not exist and detection is off.

    Asking for detection without a detector is an error, never a silent plain run."""
    try:
        runtime = importlib.import_module("racecheck.runtime")
    except ModuleNotFoundError as exc:
        if exc.name != "racecheck.runtime":
            raise  # runtime exists but is broken: show the real error
        if options.detect:
            raise click.ClickException(
                "detector not available (racecheck.runtime is not installed in this build)"
            ) from None
        return None
    return runtime


def _compiler(options: Options) -> Any:
    if not options.detect:
        return None
    try:
        from racecheck.instrument.rewrite import (  # type: ignore[import-not-found,unused-ignore]
            compile_instrumented,
        )
    except ImportError:
        raise click.ClickException(
            "detector not available (racecheck.instrument.rewrite is missing)"
        ) from None
    return compile_instrumented


def _interpreter_exit_steps() -> None:
    """What the interpreter does after ``__main__`` finishes, in its order: join the
    non-daemon threads (running ``threading``'s own exit hooks first, which is how
    ``ThreadPoolExecutor`` workers are told to stop), then the ``atexit`` handlers.
    Doing it here, before the summary, lets races in those threads and handlers be
    reported and counted; the interpreter's own later pass then has nothing left to do.
    """
    shutdown = getattr(threading, "_shutdown", None)
    if callable(shutdown):
        shutdown()
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if callable(run_exitfuncs):
        run_exitfuncs()


class _ExitWatchdog:
    """Bounds the exit-time join for ``--leaks``: if the non-daemon threads have not
    finished after ``max_wait`` seconds, report them and exit instead of hanging.

    Runs on a raw ``_thread`` thread, invisible to ``threading.enumerate()`` and so
    never reported as a leak itself."""

    def __init__(self, finish: Any, max_wait: float) -> None:
        self._finish = finish
        self._max_wait = max_wait
        self._lock = _thread.allocate_lock()
        self._wake = _thread.allocate_lock()
        self._wake.acquire()
        self._claimed = False

    def start(self) -> None:
        _thread.start_new_thread(self._run, ())

    def _run(self) -> None:
        if self._wake.acquire(True, self._max_wait):
            return  # main finished its joins in time
        if self.claim():
            status = self._finish()
            try:
                sys.stderr.flush()
                sys.stdout.flush()
            finally:
                os._exit(status)

    def claim(self) -> bool:
        """True for whichever of main and the watchdog gets to finish the run."""
        with self._lock:
            if self._claimed:
                return False
            self._claimed = True
            return True

    def cancel(self) -> bool:
        """Called by main after the joins; False when the watchdog is already exiting."""
        won = self.claim()
        if won:
            self._wake.release()
        return won


def _exit_leaks(max_wait: float) -> list[Any]:
    from racecheck.liveness import leaks

    finding = leaks.find(max_wait=max_wait, scope="the main module finished")
    return [] if finding is None else [finding]


def _run_program(
    target: tuple[str, str, list[str]], options: Options
) -> int:  # pragma: no cover - exercised in subprocess tests
    from racecheck.report.console import Reporter
    from racecheck.runner import ProgramNotFound, run_module, run_script

    kind, name, argv = target
    runtime = _load_runtime(options)
    compile_code = _compiler(options)
    reporter = Reporter(options)
    if options.leaks:
        from racecheck.liveness import leaks

        begin = getattr(leaks, "begin_recording", None) or getattr(leaks, "_begin_recording", None)
        if callable(begin):
            begin()  # so leaked threads' reports say where they were started
    if runtime is not None and options.detect:
        from racecheck.instrument.importhook import project_root

        script_dir = os.getcwd() if kind == "module" else os.path.dirname(os.path.abspath(name))
        runtime.enable(
            options,
            roots=[script_dir, project_root()],
            deadlock="exit",
            on_finding=reporter.finding,
        )
    try:
        if kind == "module":
            status = run_module(name, argv, compile_code=compile_code)
        else:
            status = run_script(name, argv, compile_code=compile_code)
    except ProgramNotFound as exc:
        if runtime is not None:
            runtime.disable()
        click.echo(f"racecheck: {exc}", err=True)
        return exc.exit_code

    def finish(extra: Sequence[Any]) -> int:
        found = list(runtime.findings()) if runtime is not None else []
        for finding in extra:
            reporter.finding(finding)
        found.extend(extra)
        reporter.summary(found)
        reporter.write_reports(found)
        return options.exitcode if found and status == 0 else status

    if not options.leaks:
        _interpreter_exit_steps()
        return finish(())

    watchdog = _ExitWatchdog(lambda: finish(_exit_leaks(0.0)), options.max_wait)
    watchdog.start()
    _interpreter_exit_steps()
    if not watchdog.cancel():
        forever = _thread.allocate_lock()
        forever.acquire()
        forever.acquire()  # the watchdog is reporting and will os._exit the process
    return finish(_exit_leaks(options.max_wait))


@cli.command(
    cls=_RunCommand,
    context_settings={"ignore_unknown_options": False},
    options_metavar="[OPTIONS] (SCRIPT | -m MODULE) [ARGS]...",
)
@click.option("-m", "module", metavar="MODULE", help="Run a library module as a script.")
@click.option("--exitcode", type=int, help="Exit status when findings exist [default: 66].")
@click.option("--halt-on-error", is_flag=True, default=None, help="Exit after the first report.")
@click.option("--log-path", help="Append reports to this file instead of stderr.")
@click.option("--strip-path-prefix", help="Remove this prefix from file names in reports.")
@click.option("--history-size", type=int, help="Access history kept per thread (Go's).")
@click.option("--suppressions", help="Suppressions file: race:PATTERN lines (fnmatch on module.function, function or file of any frame).")
@click.option(
    "--report",
    "reports",
    multiple=True,
    metavar="FORMAT:PATH",
    help="Write a json or sarif report at exit (repeatable).",
)
@click.option("--include", multiple=True, metavar="GLOB", help="Also instrument these modules.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Never instrument these modules.")
@click.option("--leaks", is_flag=True, default=None, help="Report threads still running at exit.")
@click.option("--max-wait", type=float, help="Seconds to wait for finishing threads [1.0].")
@click.option("--color", type=click.Choice(COLOR_CHOICES), help="Colour the reports.")
@click.pass_context
def run(ctx: click.Context, /, module: str | None, **flags: Any) -> None:
    """Run SCRIPT (or -m MODULE) with ARGS under the race detector, like python would.

    Options after the script name belong to the script.  Options are also read from the
    RACECHECK_OPTIONS environment variable (GORACE style, "exitcode=1 halt_on_error=1")
    and from [tool.racecheck] in pyproject.toml; flags win, then the variable.
    """
    target = ctx.meta.get(_TARGET_KEY)
    if target is None:
        raise click.UsageError("missing the program to run: SCRIPT or -m MODULE", ctx=ctx)
    try:
        options = load_options(flags)
    except OptionsError as exc:
        raise click.UsageError(str(exc), ctx=ctx) from None
    ctx.exit(_run_program(target, options))


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--html",
    "html_out",
    type=click.Path(),
    help="Write a self-contained HTML page per finding into this directory.",
)
@click.option("--color", type=click.Choice(COLOR_CHOICES), default="auto", show_default=True)
@click.option("--strip-path-prefix", default="", help="Remove this prefix from file names.")
def report(path: str, html_out: str | None, color: str, strip_path_prefix: str) -> None:
    """Render a saved JSON report (from --report json:PATH) in the terminal."""
    from racecheck.report.console import Reporter
    from racecheck.report.json import ReportFormatError, load_report

    try:
        findings = load_report(path)
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    except ReportFormatError as exc:
        raise click.ClickException(str(exc)) from None
    if html_out:
        from racecheck.report.html import write_html

        pages = write_html(findings, html_out, strip_path_prefix=strip_path_prefix)
        index = os.path.join(html_out, "index.html")
        click.echo(f"racecheck: wrote {index} and {len(pages)} finding page(s)", err=True)
        return
    # The rendering is this command's output, so it goes to stdout (pipe it, page it).
    reporter = Reporter(
        Options(color=color, strip_path_prefix=strip_path_prefix), stream=sys.stdout
    )
    for finding in findings:
        reporter.finding(finding)
    reporter.summary(findings)
    if not findings:
        click.echo("racecheck: no findings in this report")


def main(argv: Sequence[str] | None = None) -> None:
    """The console script's entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="racecheck")


if __name__ == "__main__":
    main()
