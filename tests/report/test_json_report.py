"""The JSON report document and its loader."""

from __future__ import annotations

import json

import pytest
import report_samples as samples

import racecheck
from racecheck.report.json import (
    ReportFormatError,
    dumps_report,
    load_report,
    report_document,
    write_report,
)


def test_round_trip_every_kind(tmp_path) -> None:
    path = tmp_path / "out" / "report.json"
    findings = samples.all_findings()
    write_report(findings, path)
    loaded = load_report(path)
    assert loaded == findings
    assert [f.fingerprint for f in loaded] == [f.fingerprint for f in findings]


def test_document_shape() -> None:
    doc = json.loads(dumps_report([samples.race()]))
    assert doc["version"] == 1
    assert doc["tool"] == "racecheck"
    assert doc["racecheck_version"] == racecheck.__version__
    (finding,) = doc["findings"]
    assert finding["kind"] == "race"
    assert finding["fingerprint"] == samples.race().fingerprint
    assert finding["current"]["op"] == "write"
    assert finding["current"]["thread"]["created_at"][0]["lineno"] == 25
    assert finding["previous"]["stack"][0] == {
        "filename": "/src/proj/app.py",
        "lineno": 12,
        "function": "bump",
        "line": "self.value += 1",
    }


def test_empty_report_round_trips(tmp_path) -> None:
    write_report([], tmp_path / "r.json")
    assert load_report(tmp_path / "r.json") == []
    assert report_document([])["findings"] == []


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not JSON"),
        ('{"findings": []}', "not a racecheck JSON report"),
        ('{"tool": "racecheck", "version": 99, "findings": []}', "unsupported report version"),
        (
            '{"tool": "racecheck", "version": 1, "findings": [{"kind": "x"}]}',
            "unknown finding kind",
        ),
        ('{"tool": "racecheck", "version": 1, "findings": [{"kind": "race"}]}', "malformed"),
    ],
)
def test_bad_files_are_rejected_clearly(tmp_path, content, message) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ReportFormatError, match=message):
        load_report(path)
