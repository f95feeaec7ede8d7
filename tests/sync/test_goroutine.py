"""go(): a started, non-daemon threading.Thread running fn(*args, **kwargs)."""

from __future__ import annotations

import threading

from racecheck.sync.goroutine import go

WAIT = 5.0


def test_go_starts_a_non_daemon_thread_with_args_and_kwargs():
    out = []
    t = go(lambda a, b=0: out.append((a, b, threading.current_thread())), 1, b=2)
    assert isinstance(t, threading.Thread)
    t.join(WAIT)
    assert not t.is_alive()
    assert out == [(1, 2, t)]
    assert t.daemon is False


def test_go_names_the_thread():
    t = go(lambda: None, name="worker-7")
    t.join(WAIT)
    assert t.name == "worker-7"


def test_go_from_a_daemon_thread_is_still_non_daemon():
    made = []
    parent = threading.Thread(target=lambda: made.append(go(lambda: None)), daemon=True)
    parent.start()
    parent.join(WAIT)
    made[0].join(WAIT)
    assert made[0].daemon is False


def test_go_returns_only_after_start():
    entered = threading.Event()
    release = threading.Event()

    def body():
        entered.set()
        assert release.wait(WAIT)

    t = go(body)
    assert t.is_alive()  # started, and it cannot finish before release
    assert entered.wait(WAIT)
    release.set()
    t.join(WAIT)
    assert not t.is_alive()
