"""Options precedence (CLI > RACECHECK_OPTIONS > [tool.racecheck] > defaults) and errors."""

from __future__ import annotations

import pytest

from racecheck.config import Options, OptionsError, find_pyproject, load_options, parse_env


def _project(tmp_path, body: str):
    (tmp_path / "pyproject.toml").write_text(body)
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    return sub


def test_defaults(tmp_path) -> None:
    opts = load_options(env={}, start=tmp_path, pyproject=False)
    assert opts == Options()
    assert (opts.exitcode, opts.halt_on_error, opts.max_wait, opts.color) == (
        66,
        False,
        1.0,
        "auto",
    )
    assert opts.detect is True and opts.leaks is False and opts.reports == []


def test_env_parsing_gorace_style() -> None:
    parsed = parse_env(
        "exitcode=1 halt_on_error=1 log_path=/tmp/x include=app.*,lib.* max-wait=0.5"
    )
    assert parsed == {
        "exitcode": 1,
        "halt_on_error": True,
        "log_path": "/tmp/x",
        "include": ["app.*", "lib.*"],
        "max_wait": 0.5,
    }
    assert parse_env("strip_path_prefix='/a b/' report=json:r.json,sarif:r.sarif") == {
        "strip_path_prefix": "/a b/",
        "reports": [("json", "r.json"), ("sarif", "r.sarif")],
    }


def test_nearest_pyproject_is_used_and_paths_are_relative_to_it(tmp_path) -> None:
    start = _project(
        tmp_path,
        '[tool.racecheck]\nexitcode = 3\nleaks = true\ninclude = ["app.*"]\n'
        'log-path = "logs/race.log"\nreport = ["json:out/r.json"]\n',
    )
    assert find_pyproject(start) == tmp_path / "pyproject.toml"
    opts = load_options(env={}, start=start)
    assert opts.exitcode == 3 and opts.leaks is True and opts.include == ["app.*"]
    assert opts.log_path == str(tmp_path / "logs/race.log")
    assert opts.reports == [("json", str(tmp_path / "out/r.json"))]


def test_pyproject_without_table_means_defaults(tmp_path) -> None:
    start = _project(tmp_path, '[project]\nname = "x"\n')
    assert load_options(env={}, start=start) == Options()


def test_precedence_cli_over_env_over_pyproject(tmp_path) -> None:
    start = _project(tmp_path, "[tool.racecheck]\nexitcode = 3\nhistory_size = 4\ncolor = 'no'\n")
    env = {"RACECHECK_OPTIONS": "exitcode=5 history_size=2"}
    opts = load_options(env=env, start=start)
    assert (opts.exitcode, opts.history_size, opts.color) == (5, 2, "no")
    opts = load_options({"exitcode": 7, "history_size": None, "include": ()}, env=env, start=start)
    assert (opts.exitcode, opts.history_size, opts.color) == (7, 2, "no")


def test_cli_lists_replace_lower_layers(tmp_path) -> None:
    env = {"RACECHECK_OPTIONS": "include=a.*,b.*"}
    opts = load_options({"include": ("c.*",)}, env=env, start=tmp_path, pyproject=False)
    assert opts.include == ["c.*"]
    opts = load_options({"reports": ("sarif:x.sarif",)}, env={}, start=tmp_path, pyproject=False)
    assert opts.reports == [("sarif", "x.sarif")]


def test_os_environ_is_the_default(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("RACECHECK_OPTIONS", "halt_on_error=true")
    assert load_options(start=tmp_path, pyproject=False).halt_on_error is True


@pytest.mark.parametrize(
    "env, message",
    [
        ("exitcode=abc", "RACECHECK_OPTIONS: exitcode: expected an integer, got 'abc'"),
        ("exitcode=300", "exitcode: must be between 0 and 255, got 300"),
        ("halt_on_error=maybe", "halt_on_error: expected a boolean"),
        ("bogus=1", "RACECHECK_OPTIONS: unknown option 'bogus' (valid options: color,"),
        ("exitcode", "expected key=value, got 'exitcode'"),
        ("max_wait=-1", "max_wait: expected a number of seconds >= 0"),
        ("color=purple", "color: expected one of auto, yes, no"),
        ("report=xml:out.xml", "unknown report format 'xml'"),
        ("report=json", "expected FORMAT:PATH"),
        ("history_size=-2", "history_size: must be >= 0"),
        ("log_path='unterminated", "cannot parse"),
    ],
)
def test_env_errors_are_one_clear_line(tmp_path, env, message) -> None:
    with pytest.raises(OptionsError) as info:
        load_options(env={"RACECHECK_OPTIONS": env}, start=tmp_path, pyproject=False)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[tool.racecheck]\nexitcod = 1\n", "unknown option 'exitcod'"),
        ("[tool.racecheck]\nleaks = 'sometimes'\n", "leaks: expected a boolean"),
        ("[tool.racecheck]\ninclude = [1]\n", "include: expected strings"),
        ("[tool.racecheck\n", "invalid TOML"),
        ("[tool]\nracecheck = 3\n", "expected a table"),
    ],
)
def test_pyproject_errors_name_the_file(tmp_path, toml, message) -> None:
    start = _project(tmp_path, toml)
    with pytest.raises(OptionsError) as info:
        load_options(env={}, start=start)
    assert message in str(info.value)
    assert str(tmp_path / "pyproject.toml") in str(info.value)


def test_cli_errors(tmp_path) -> None:
    with pytest.raises(OptionsError, match="command line: reports: unknown report format"):
        load_options({"reports": ("html:x",)}, env={}, start=tmp_path, pyproject=False)
    with pytest.raises(OptionsError, match="unknown option 'nope'"):
        load_options({"nope": 1}, env={}, start=tmp_path, pyproject=False)


def test_report_path_that_cannot_be_written_fails_at_start(tmp_path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("")
    with pytest.raises(OptionsError, match="is not a directory"):
        load_options({"reports": [f"json:{blocker}/r.json"]}, env={}, start=tmp_path)
    with pytest.raises(OptionsError, match="it is a directory"):
        load_options({"reports": [f"sarif:{tmp_path}"]}, env={}, start=tmp_path)
    # a missing parent directory is fine: it is created when the report is written
    opts = load_options({"reports": [f"json:{tmp_path}/new/dir/r.json"]}, env={}, start=tmp_path)
    assert opts.reports == [("json", f"{tmp_path}/new/dir/r.json")]
