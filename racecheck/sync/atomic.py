"""Go's ``sync/atomic`` values: ``AtomicInt``, ``AtomicBool``, ``AtomicRef``.

Each value is guarded by its own raw lock (correct without the GIL; ``x += 1`` on a
plain attribute is not atomic on free-threaded CPython, nor across bytecodes anywhere).
Atomics synchronise, as in Go's memory model: every operation that writes releases into
the value's token and every operation that reads acquires it, under the same lock, so a
``load`` that sees a ``store`` is ordered after it.  A failed ``compare_and_swap`` still
reads.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from racecheck._rawsync import allocate_lock
from racecheck.sync import events

__all__ = ["AtomicBool", "AtomicInt", "AtomicRef"]

T = TypeVar("T")


class AtomicInt:
    """An integer updated atomically (Go's ``atomic.Int64``, unbounded)."""

    __slots__ = ("_mu", "_value", "_token", "__weakref__")

    def __init__(self, value: int = 0) -> None:
        self._mu = allocate_lock()
        self._value = value
        self._token: object | None = None

    def load(self) -> int:
        with self._mu:
            events.consume(self._token)
            return self._value

    def store(self, value: int) -> None:
        with self._mu:
            self._token = events.publish(self._token)
            self._value = value

    def add(self, delta: int) -> int:
        """Add ``delta`` and return the new value (as Go's ``Add`` does)."""
        with self._mu:
            events.consume(self._token)
            self._token = events.publish(self._token)
            self._value += delta
            return self._value

    def swap(self, value: int) -> int:
        """Store ``value`` and return the old one."""
        with self._mu:
            events.consume(self._token)
            self._token = events.publish(self._token)
            old, self._value = self._value, value
            return old

    def compare_and_swap(self, old: int, new: int) -> bool:
        """Store ``new`` if the value equals ``old``; report whether it did."""
        with self._mu:
            events.consume(self._token)
            if self._value != old:
                return False
            self._token = events.publish(self._token)
            self._value = new
            return True

    def __repr__(self) -> str:
        with self._mu:
            return f"AtomicInt({self._value!r})"


class AtomicBool:
    """A boolean updated atomically (Go's ``atomic.Bool``)."""

    __slots__ = ("_mu", "_value", "_token", "__weakref__")

    def __init__(self, value: bool = False) -> None:
        self._mu = allocate_lock()
        self._value = bool(value)
        self._token: object | None = None

    def load(self) -> bool:
        with self._mu:
            events.consume(self._token)
            return self._value

    def store(self, value: bool) -> None:
        with self._mu:
            self._token = events.publish(self._token)
            self._value = bool(value)

    def swap(self, value: bool) -> bool:
        with self._mu:
            events.consume(self._token)
            self._token = events.publish(self._token)
            old, self._value = self._value, bool(value)
            return old

    def compare_and_swap(self, old: bool, new: bool) -> bool:
        with self._mu:
            events.consume(self._token)
            if self._value != bool(old):
                return False
            self._token = events.publish(self._token)
            self._value = bool(new)
            return True

    def __repr__(self) -> str:
        with self._mu:
            return f"AtomicBool({self._value!r})"


class AtomicRef(Generic[T]):
    """A reference updated atomically (Go's ``atomic.Pointer[T]``/``atomic.Value``).

    ``compare_and_swap`` compares by identity (``is``), like Go's pointer comparison,
    so an object with an odd ``__eq__`` can neither fool it nor run user code under the
    lock.
    """

    __slots__ = ("_mu", "_value", "_token", "__weakref__")

    def __init__(self, value: T | None = None) -> None:
        self._mu = allocate_lock()
        self._value: T | None = value
        self._token: object | None = None

    def load(self) -> T | None:
        with self._mu:
            events.consume(self._token)
            return self._value

    def store(self, value: T | None) -> None:
        with self._mu:
            self._token = events.publish(self._token)
            self._value = value

    def swap(self, value: T | None) -> T | None:
        with self._mu:
            events.consume(self._token)
            self._token = events.publish(self._token)
            old, self._value = self._value, value
            return old

    def compare_and_swap(self, old: T | None, new: T | None) -> bool:
        with self._mu:
            events.consume(self._token)
            if self._value is not old:
                return False
            self._token = events.publish(self._token)
            self._value = new
            return True

    def __repr__(self) -> str:
        with self._mu:
            value = self._value
        return f"AtomicRef({value!r})"
