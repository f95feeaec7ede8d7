"""Shadow state never keeps the user's objects alive for long: objects that cannot be
weakly referenced (plain lists, dicts) are let go at the next full collection."""

from __future__ import annotations

import gc
import time
import weakref

from racecheck.engine.shadow import ShadowTable


def _full_collection_until(done, attempts: int = 50) -> None:  # type: ignore[no-untyped-def]
    """gc.collect() returns at once, collecting nothing, when another thread (a leftover
    from another test) is collecting right now: try again a bounded number of times."""
    for _ in range(attempts):
        gc.collect()
        if done():
            return
        time.sleep(0.01)


class Tracked:
    """Weakly referenceable marker stored inside a plain list."""


def test_dropped_lists_are_released_at_the_next_full_collection() -> None:
    table = ShadowTable()
    markers = []
    holders = []
    for _ in range(10):
        marker = Tracked()
        markers.append(weakref.ref(marker))
        inner = [marker]
        outer = [inner]  # a dead list holding another shadowed list
        table.get_or_create(outer)
        table.get_or_create(inner)
        holders.append(outer)
        del marker, inner, outer
    assert table.strong_count() == 20
    holders.clear()
    _full_collection_until(lambda: table.strong_count() == 0)
    assert table.strong_count() == 0
    assert all(ref() is None for ref in markers)


def test_live_lists_are_kept() -> None:
    table = ShadowTable()
    keep = [[i] for i in range(5)]
    for lst in keep:
        table.get_or_create(lst)
    gc.collect()
    assert table.strong_count() == 5
