"""Vector clocks and FastTrack epochs.

A thread's *slot* is its index in every vector clock.  Slots are reused (see
``Detector``), so vectors stay as long as the number of live threads, not of every thread
ever started.

An *epoch* ``c@t`` (Flanagan & Freund, FastTrack, PLDI 2009) is packed into one Python
int, ``c << SHIFT | t``, so the hot path compares two ints and the shadow state stores no
tuple per access.  Epoch ``0`` means "no access yet" and is ordered before everything.

Vector clocks are plain ``list[int]`` owned by one thread (only that thread mutates its
own clock); snapshots that cross threads are immutable :class:`Token` objects holding a
tuple, so no lock is needed to read them.
"""

from __future__ import annotations

from collections.abc import Sequence

SHIFT = 20
"""Bits for the slot: up to a million threads alive at once."""
SLOT_MASK = (1 << SHIFT) - 1
NO_EPOCH = 0


def make_epoch(clock: int, slot: int) -> int:
    return (clock << SHIFT) | slot


def epoch_slot(epoch: int) -> int:
    return epoch & SLOT_MASK


def epoch_clock(epoch: int) -> int:
    return epoch >> SHIFT


def epoch_leq(epoch: int, vc: Sequence[int]) -> bool:
    """``c@t <= vc``: the access at that epoch happens before a thread whose clock is vc."""
    if epoch == NO_EPOCH:
        return True
    slot = epoch & SLOT_MASK
    return slot < len(vc) and vc[slot] >= epoch >> SHIFT


def vc_leq(a: Sequence[int], b: Sequence[int]) -> bool:
    """Pointwise ``a <= b`` (missing entries are 0)."""
    nb = len(b)
    for i, c in enumerate(a):
        if c > (b[i] if i < nb else 0):
            return False
    return True


def vc_join(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """Pointwise maximum as a new tuple."""
    if len(a) < len(b):
        a, b = b, a
    out = list(a)
    for i, c in enumerate(b):
        if c > out[i]:
            out[i] = c
    return tuple(out)


def vc_join_into(target: list[int], other: Sequence[int]) -> None:
    """``target := target ⊔ other`` in place (target grows as needed)."""
    n = len(target)
    if len(other) > n:
        target.extend([0] * (len(other) - n))
    for i, c in enumerate(other):
        if c > target[i]:
            target[i] = c


class Token(tuple):  # type: ignore[type-arg]
    """An immutable snapshot of a released clock: what ``publish`` returns and
    ``consume`` joins.  Immutable so primitives may hand it to any thread without a lock.

    The clock itself, as a tuple subclass: one object per publish (a queue holds one per
    pending item, a lock one per lock), where a wrapper around a tuple would be two."""

    __slots__ = ()

    @property
    def vc(self) -> tuple[int, ...]:
        return self

    def __repr__(self) -> str:
        return f"Token({list(self)})"

    # Identity, as for any token object: two equal clocks are still two releases.
    __eq__ = object.__eq__  # type: ignore[assignment]
    __ne__ = object.__ne__  # type: ignore[assignment]
    __hash__ = object.__hash__  # type: ignore[assignment]


class ForkToken(Token):
    """What ``fork`` hands the child: its initial clock, its slot and its record."""

    def __new__(cls, vc: tuple[int, ...], slot: int, record: object) -> ForkToken:
        self = super().__new__(cls, vc)
        self.slot = slot
        self.record = record
        return self

    slot: int
    record: object
