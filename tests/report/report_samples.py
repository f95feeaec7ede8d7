"""Hand-built findings the renderer tests share (no detector needed)."""

from __future__ import annotations

from racecheck.report.findings import (
    Access,
    BlockedOn,
    DeadlockFinding,
    Frame,
    InversionFinding,
    LeakFinding,
    LockOrderEdge,
    RaceFinding,
    ThreadDump,
    ThreadInfo,
)

MAIN = ThreadInfo(name="MainThread", ident=100, tid=1)
T2 = ThreadInfo(
    name="Thread-2 (worker)",
    ident=102,
    tid=2,
    running=True,
    target="app.worker",
    created_at=(
        Frame("/src/proj/app.py", 25, "main", "t = threading.Thread(target=worker, args=(c,))"),
    ),
)
T1 = ThreadInfo(
    name="Thread-1 (worker)",
    ident=101,
    tid=3,
    running=False,
    target="app.worker",
    created_at=(
        Frame("/src/proj/app.py", 25, "main", "t = threading.Thread(target=worker, args=(c,))"),
    ),
)

BUMP = Frame("/src/proj/app.py", 12, "bump", "self.value += 1")
WORKER = Frame("/src/proj/app.py", 20, "worker", "bump(c)")


def race() -> RaceFinding:
    return RaceFinding(
        current=Access(
            "write", "Counter.value", "app.Counter object at 0x7f01", T2, (BUMP, WORKER)
        ),
        previous=Access(
            "read", "Counter.value", "app.Counter object at 0x7f01", T1, (BUMP, WORKER)
        ),
        timestamp=1764115200.5,
    )


def leak() -> LeakFinding:
    return LeakFinding(
        threads=(
            ThreadDump(
                thread=ThreadInfo(
                    name="worker",
                    ident=107,
                    tid=7,
                    daemon=True,
                    target="app.consume",
                    created_at=(Frame("/src/proj/app.py", 30, "main", "t.start()"),),
                ),
                stack=(Frame("/src/proj/app.py", 8, "consume", "item = ch.recv()"),),
                blocked_on=BlockedOn(
                    "chan receive",
                    "racecheck.sync.chan.Chan object at 0x7f02",
                    (Frame("/src/proj/app.py", 28, "main", "ch = Chan()"),),
                    125.0,
                ),
            ),
        ),
        others=("ThreadPoolExecutor created at /src/proj/app.py:40 was not shut down",),
        scope="main module",
        timestamp=1764115201.0,
    )


def deadlock() -> DeadlockFinding:
    return DeadlockFinding(
        threads=(
            ThreadDump(
                thread=MAIN,
                stack=(Frame("/src/proj/dl.py", 5, "<module>", "ch.recv()"),),
                blocked_on=BlockedOn("chan receive", "Chan object at 0x1", (), 1.5),
            ),
        ),
        timestamp=1764115202.0,
    )


def inversion() -> InversionFinding:
    a_then_b = LockOrderEdge(
        first="lock_a",
        second="lock_b",
        thread=T1,
        first_acquired_at=(Frame("/src/proj/inv.py", 10, "one", "with a:"),),
        second_acquired_at=(Frame("/src/proj/inv.py", 11, "one", "with b:"),),
    )
    b_then_a = LockOrderEdge(
        first="lock_b",
        second="lock_a",
        thread=T2,
        first_acquired_at=(Frame("/src/proj/inv.py", 15, "two", "with b:"),),
        second_acquired_at=(Frame("/src/proj/inv.py", 16, "two", "with a:"),),
    )
    return InversionFinding(cycle=(a_then_b, b_then_a), timestamp=1764115203.0)


def all_findings() -> list:
    return [race(), leak(), deadlock(), inversion()]
