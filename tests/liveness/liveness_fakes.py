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


class FakeLock:
    """A lock reporting to the lock-order hooks as racecheck's Mutex does."""

    def __init__(self) -> None:
        from racecheck._rawsync import allocate_lock

        self._raw = allocate_lock()
        self._created_at = events.creation_site(1)

    def acquire(self, blocking: bool = True) -> bool:
        return self._acquire(blocking)

    def _acquire(self, blocking: bool, depth: int = 2) -> bool:
        # The user's frame is 2 up from here (user -> acquire/__enter__ -> _acquire).
        got = self._raw.acquire(blocking, SAFETY) if blocking else self._raw.acquire(False)
        if not got and blocking:
            raise SafetyTimeout("FakeLock.acquire timed out")
        if got:
            events.lock_acquired(self, blocking, depth=depth)
        return bool(got)

    def release(self) -> None:
        events.lock_released(self)
        self._raw.release()

    def __enter__(self) -> FakeLock:
        self._acquire(True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class FakeRLock(FakeLock):
    """Reentrant: every acquisition (reentrant ones too) is reported, like RLock's patch."""

    def __init__(self) -> None:
        super().__init__()
        self._owner: int | None = None
        self._count = 0

    def _acquire(self, blocking: bool, depth: int = 2) -> bool:
        me = threading.get_ident()
        if self._owner == me:
            self._count += 1
            events.lock_acquired(self, blocking, depth=depth)
            return True
        got = super()._acquire(blocking, depth + 1)
        if got:
            self._owner, self._count = me, 1
        return got

    def release(self) -> None:
        self._count -= 1
        if self._count:
            events.lock_released(self)
            return
        self._owner = None
        super().release()


def run_in_thread(fn: Callable[[], Any], name: str) -> None:
    """Run ``fn`` to completion in a new thread named ``name`` (orders the test's steps)."""
    errors: list[BaseException] = []

    def body() -> None:
        try:
            fn()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            errors.append(error)

    thread = threading.Thread(target=body, name=name)
    thread.start()
    thread.join(timeout=SAFETY)
    assert not thread.is_alive(), f"{name} did not finish"
    if errors:
        raise errors[0]
