"""HTML pages: one self-contained page per finding, stacks side by side with context."""

from __future__ import annotations

import re

import report_samples as samples

from racecheck.report.findings import Access, Frame, RaceFinding, ThreadInfo
from racecheck.report.html import render_html, write_html


def test_one_page_per_finding_and_an_index(tmp_path) -> None:
    pages = write_html(samples.all_findings(), tmp_path / "out", strip_path_prefix="/src/proj/")
    assert [p.name for p in pages] == [
        "finding-001-race.html",
        "finding-002-leak.html",
        "finding-003-deadlock.html",
        "finding-004-lock-order-inversion.html",
    ]
    index = (tmp_path / "out" / "index.html").read_text()
    for page in pages:
        assert f'href="{page.name}"' in index
    assert "racecheck: Found 1 data race(s)" in index


def test_page_is_self_contained_and_shows_both_stacks() -> None:
    page = render_html(samples.race(), "/src/proj/")
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "<script" not in page
    assert page.count('<div class="column">') >= 2
    assert "Write at Counter.value" in page
    assert "Previous read at Counter.value" in page
    assert "self.value += 1" in page


def test_source_context_around_the_racing_line(tmp_path) -> None:
    src = tmp_path / "mod.py"
    src.write_text("".join(f"line_{i} = {i}\n" for i in range(1, 21)))
    main = ThreadInfo("MainThread")
    finding = RaceFinding(
        current=Access("write", "g", "", main, (Frame(str(src), 10, "<module>"),)),
        previous=Access("read", "g", "", main, (Frame(str(src), 15, "<module>"),)),
    )
    page = render_html(finding)
    assert '<span class="hit"><span class="lineno">   10 </span>line_10 = 10</span>' in page
    assert "line_7 = 7" in page and "line_13 = 13" in page  # context either side
    assert "line_3 = 3" not in page


def test_user_text_is_escaped() -> None:
    main = ThreadInfo("<b>evil</b>")
    finding = RaceFinding(
        current=Access("write", "x<y>", "", main, (Frame("/nope.py", 1, "f", "a = '<i>'"),)),
        previous=Access("read", "x<y>", "", main, ()),
    )
    page = render_html(finding)
    assert "<b>evil</b>" not in page and "&lt;b&gt;evil&lt;/b&gt;" in page
    assert "&lt;i&gt;" in page
