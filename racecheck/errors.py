"""Every exception racecheck raises on purpose, in one place.

Misuse of a primitive raises a subclass of :class:`MisuseError` whose message starts with
the words Go's runtime uses for the same mistake, so a Go user recognises it at once.
"""

from __future__ import annotations


class MisuseError(RuntimeError):
    """A racecheck primitive was used in a way Go's runtime would panic on."""


class ClosedChannelError(MisuseError):
    """``send on closed channel`` / ``close of closed channel``."""


class WaitGroupMisuse(MisuseError):
    """``sync: negative WaitGroup counter`` / reuse before ``Wait`` returned."""


class UnlockError(MisuseError):
    """``sync: unlock of unlocked mutex`` and its RWMutex variants."""


class SemaphoreMisuse(MisuseError):
    """``semaphore: released more than held``."""


class LeakError(AssertionError):
    """Threads (or timers, tickers, contexts) outlived the scope that started them."""


class DeadlockError(RuntimeError):
    """Raised in blocked threads when every live thread is asleep (in-process detection)."""
