"""Test doubles for the liveness checkers.

``FakeChan`` is a minimal mailbox that reports its slow path through
``events.blocking`` exactly as the real racecheck primitives do, and publishes a
``wake`` hook in ``BlockInfo.extra`` so the deadlock detector can interrupt it.  Its
untimed wait is bounded by a hidden safety timeout so a detector bug fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from racecheck._rawsync import RawCondition
from racecheck.sync import events

SAFETY = 5.0


class SafetyTimeout(AssertionError):
    """A wait the test expected the detector to interrupt was never interrupted."""


class FakeChan:
    def __init__(self) -> None:
        self._cond = RawCondition()
        self._items: deque[Any] = deque()
        self._created_at = events.creation_site(1)

    def send(self, value: Any) -> None:
        with self._cond:
            self._items.append(value)
            self._cond.notify()

    def recv(self, timeout: float | None = None) -> Any:
        with self._cond:
            if self._items:
                return self._items.popleft()
            with events.blocking(
                self, "chan receive", timeout=timeout, created_at=self._created_at
            ) as info:
                info.extra["wake"] = self._wake
                limit = SAFETY if timeout is None else timeout
                deadline = time.monotonic() + limit
                while not self._items:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        if timeout is None:
                            raise SafetyTimeout("FakeChan.recv was never woken")
                        raise TimeoutError
                    self._cond.wait(left)
                return self._items.popleft()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class Threads:
    """Starts test threads and guarantees they are released and joined at teardown."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.releases: list[Callable[[], None]] = []

    def start(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, **kwargs)
        thread.start()
        self.threads.append(thread)
        return thread

    def adopt(self, thread: threading.Thread) -> threading.Thread:
        """Join a thread the test started itself (so its start site is the test's)."""
        self.threads.append(thread)
        return thread

    def on_teardown(self, release: Callable[[], None]) -> None:
        self.releases.append(release)

    def close(self) -> None:
        for release in self.releases:
            release()
        for thread in self.threads:
            thread.join(timeout=SAFETY)
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"test threads still alive after teardown: {alive}"


@pytest.fixture
def threads() -> Iterator[Threads]:
    pool = Threads()
    try:
        yield pool
    finally:
        pool.close()
