"""SARIF 2.1.0 output validates against the official schema and carries both stacks."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import report_samples as samples

from racecheck.report.findings import Frame, LeakFinding, ThreadDump, ThreadInfo
from racecheck.report.sarif import FINGERPRINT_KEY, to_sarif, write_sarif

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "sarif-schema-2.1.0.json").read_text()
)


def _validate(doc) -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(doc)


def test_every_kind_validates(tmp_path) -> None:
    path = tmp_path / "r.sarif"
    write_sarif(samples.all_findings(), path, root="/src/proj")
    doc = json.loads(path.read_text())
    _validate(doc)
    rules = doc["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["race", "leak", "deadlock", "lock-order-inversion"]
    assert [r["ruleId"] for r in doc["runs"][0]["results"]] == [
        "race",
        "leak",
        "deadlock",
        "lock-order-inversion",
    ]


def test_race_has_both_locations_and_both_stacks() -> None:
    doc = to_sarif([samples.race()], root="/src/proj")
    _validate(doc)
    (result,) = doc["runs"][0]["results"]
    primary = result["locations"][0]["physicalLocation"]
    assert primary["artifactLocation"] == {"uri": "app.py", "uriBaseId": "%SRCROOT%"}
    assert primary["region"]["startLine"] == 12
    assert result["relatedLocations"][0]["physicalLocation"]["region"]["startLine"] == 12
    flows = result["codeFlows"][0]["threadFlows"]
    assert len(flows) == 2
    # execution order: outermost (worker, line 20) first, the racing line last
    assert [
        loc["location"]["physicalLocation"]["region"]["startLine"] for loc in flows[0]["locations"]
    ] == [20, 12]
    assert flows[1]["message"]["text"].startswith("Previous read at Counter.value")
    assert result["partialFingerprints"] == {FINGERPRINT_KEY: samples.race().fingerprint}
    assert result["level"] == "error"


def test_paths_outside_root_become_file_uris() -> None:
    doc = to_sarif([samples.race()], root="/elsewhere")
    _validate(doc)
    uri = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert uri == {"uri": "file:///src/proj/app.py"}


def test_finding_without_any_stack_still_validates() -> None:
    bare = LeakFinding(threads=(ThreadDump(ThreadInfo("t"), ()),), others=("Timer pending",))
    doc = to_sarif([bare])
    _validate(doc)
    assert "locations" not in doc["runs"][0]["results"][0]


def test_zero_line_frames_have_no_region() -> None:
    leak = LeakFinding(threads=(ThreadDump(ThreadInfo("t"), (Frame("/x/a.py", 0, "f"),)),))
    doc = to_sarif([leak], root="/x")
    _validate(doc)
    physical = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert "region" not in physical


def test_schema_really_rejects_garbage() -> None:
    doc = to_sarif([samples.race()])
    doc["runs"][0]["results"][0]["level"] = "catastrophic"
    with pytest.raises(jsonschema.ValidationError):
        _validate(doc)
