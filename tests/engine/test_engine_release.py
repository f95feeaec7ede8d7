"""Shadow state never keeps the user's objects alive for long: objects that cannot be
weakly referenced (plain lists, dicts) are let go at the next full collection."""

from __future__ import annotations

import gc
import weakref

from racecheck.engine.shadow import ShadowTable


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
    gc.collect()
    assert table.strong_count() == 0
    assert all(ref() is None for ref in markers)


def test_live_lists_are_kept() -> None:
    table = ShadowTable()
    keep = [[i] for i in range(5)]
    for lst in keep:
        table.get_or_create(lst)
    gc.collect()
    assert table.strong_count() == 5
