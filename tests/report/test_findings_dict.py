"""findings.to_dict: the JSON shape carries source lines like the text report."""

from __future__ import annotations

import sys

from racecheck.report.findings import Access, Frame, RaceFinding, ThreadInfo, to_dict


def test_empty_source_lines_are_filled_from_the_file() -> None:
    here = __file__
    line = sys._getframe().f_lineno  # this very line
    frame = Frame(here, line, "test")
    thread = ThreadInfo("T", created_at=(frame,))
    access = Access("write", "Box.v", "Box object at 0x1", thread, (frame,))
    d = to_dict(RaceFinding(access, access))
    expected = "line = sys._getframe().f_lineno  # this very line"
    assert d["current"]["stack"][0]["line"] == expected
    assert d["current"]["thread"]["created_at"][0]["line"] == expected
    assert d["fingerprint"]
