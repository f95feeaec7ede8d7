"""`racecheck run` behaves like `python`: checked against the real interpreter.

These tests run with ``detect=0`` so they need no detector: they check the runner and
the command line, not detection (tests that need ``racecheck.runtime`` skip without it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROBE = textwrap.dedent(
    """\
    import sys
    data = sys.stdin.read()
    spec = __spec__.name if __spec__ is not None else None
    print(repr(sys.argv), __name__, __file__, sys.path[0], __package__, spec,
          type(__loader__).__name__, __cached__,
          sys.modules["__main__"] is sys.modules[__name__],
          sorted(k for k in globals() if k.startswith("__")), repr(data))
    """
)

NO_DETECT = {"RACECHECK_OPTIONS": "detect=0"}


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RACECHECK_OPTIONS"}
    env.update(extra or {})
    env.pop("PYTHONPATH", None)
    return env


def python(args: list[str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )


def racecheck(
    args: list[str], cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "racecheck.cli", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(NO_DETECT if env is None else env),
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "probe.py").write_text(PROBE)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(PROBE)
    (pkg / "mod.py").write_text(PROBE)
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ["app/probe.py", "a", "--b", "--leaks", "-m", "x"],
        ["-m", "pkg", "--exitcode", "3"],
        ["-m", "pkg.mod", "-q"],
    ],
    ids=["script", "package", "module"],
)
def test_same_as_python(project: Path, args: list[str]) -> None:
    expected = python(args, project, stdin="some input\n")
    got = racecheck(["run", *args], project, stdin="some input\n")
    assert expected.returncode == 0, expected.stderr
    assert (got.returncode, got.stdout, got.stderr) == (0, expected.stdout, "")


def test_absolute_script_path_from_elsewhere(project: Path, tmp_path_factory) -> None:
    other = tmp_path_factory.mktemp("elsewhere")
    script = str(project / "app" / "probe.py")
    assert racecheck(["run", script], other).stdout == python([script], other).stdout


def test_options_before_the_script_are_racecheck_s(project: Path) -> None:
    got = racecheck(["run", "--exitcode", "3", "--color", "no", "app/probe.py", "x"], project)
    assert got.returncode == 0
    assert got.stdout.startswith("['app/probe.py', 'x']")


SCRIPTS = {
    "exception": "def f():\n    raise ValueError('boom')\nprint('before', flush=True)\nf()\n",
    "chained": "try:\n    1/0\nexcept ZeroDivisionError as e:\n    raise KeyError('k') from e\n",
    "exit3": "import sys\nsys.exit(3)\n",
    "exitstr": "import sys\nsys.exit('bye')\n",
    "exitnone": "raise SystemExit\n",
    "syntax": "x = 1\ndef (\n",
    "excepthook": (
        "import sys\n"
        "sys.excepthook = lambda t, v, tb: print('hooked', t.__name__, file=sys.stderr)\n"
        "raise RuntimeError('x')\n"
    ),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_exit_status_and_stderr_like_python(tmp_path: Path, name: str) -> None:
    (tmp_path / f"{name}.py").write_text(SCRIPTS[name])
    expected = python([f"{name}.py"], tmp_path)
    got = racecheck(["run", f"{name}.py"], tmp_path)
    assert (got.returncode, got.stdout, got.stderr) == (
        expected.returncode,
        expected.stdout,
        expected.stderr,
    )
    assert "racecheck" not in got.stderr


def test_traceback_has_no_racecheck_frames(tmp_path: Path) -> None:
    (tmp_path / "e.py").write_text(SCRIPTS["exception"])
    got = racecheck(["run", "e.py"], tmp_path)
    assert got.returncode == 1
    assert got.stderr.startswith("Traceback (most recent call last):\n  File ")
    assert "runner.py" not in got.stderr and "cli.py" not in got.stderr
    assert got.stderr.rstrip().endswith("ValueError: boom")


def test_missing_file_one_line_exit_2(tmp_path: Path) -> None:
    got = racecheck(["run", "nope.py"], tmp_path)
    assert got.returncode == 2
    assert got.stderr == (
        f"racecheck: can't open file '{tmp_path / 'nope.py'}': [Errno 2] No such file or directory\n"
    )


def test_unknown_module_one_line(tmp_path: Path) -> None:
    got = racecheck(["run", "-m", "no_such_mod_xyz"], tmp_path)
    assert (got.returncode, got.stderr) == (1, "racecheck: No module named no_such_mod_xyz\n")


def test_package_without_main(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "__init__.py").write_text("")
    got = racecheck(["run", "-m", "p"], tmp_path)
    assert got.returncode == 1
    assert "'p' is a package and cannot be directly executed" in got.stderr
    assert got.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["run"], "missing the program to run"),
        (["run", "--bogus", "x.py"], "No such option"),
        (["run", "-m"], "requires a module name"),
        (["run", "--color", "pink", "x.py"], "Invalid value for '--color'"),
        (["run", "--report", "xml:o", "x.py"], "unknown report format 'xml'"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    got = racecheck(args, tmp_path)
    assert got.returncode == 2
    assert message in got.stderr
    assert got.stdout == ""


def test_bad_environment_option_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("print('ran')\n")
    got = racecheck(["run", "ok.py"], tmp_path, env={"RACECHECK_OPTIONS": "exitcode=x"})
    assert got.returncode == 2
    assert "RACECHECK_OPTIONS: exitcode: expected an integer, got 'x'" in got.stderr
    assert "ran" not in got.stdout


def test_version_names_the_engine_core(tmp_path: Path) -> None:
    got = racecheck(["--version"], tmp_path)
    assert got.returncode == 0
    assert got.stdout.startswith("racecheck ")
    assert "(engine core: " in got.stdout


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("racecheck")
    if not script.exists():
        pytest.skip("racecheck console script not installed in this venv")
    (tmp_path / "hello.py").write_text("import sys\nprint(sys.argv, sys.path[0])\n")
    got = subprocess.run(
        [str(script), "run", "hello.py", "--x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(NO_DETECT),
    )
    assert got.stdout == f"['hello.py', '--x'] {tmp_path}\n"


@pytest.mark.skipif(
    importlib.util.find_spec("racecheck.runtime") is not None,
    reason="racecheck.runtime exists: the detector is available",
)
def test_without_detector_run_refuses_rather_than_pretends(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("print('ran')\n")
    got = racecheck(["run", "ok.py"], tmp_path, env={})
    assert got.returncode != 0
    assert "detector not available" in got.stderr
    assert got.stdout == ""
