"""select: readiness, fairness, blocking, close, misuse, async exceptions, stress, contract."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from typing import Any

import pytest
from sync_helpers import WAIT, Interrupt, Worker, async_raise, wait_blocked  # noqa: F401

from racecheck.errors import ClosedChannelError
from racecheck.sync import chan as chan_module
from racecheck.sync import events
from racecheck.sync.chan import Chan, select


def queued_entries(*chans: Chan[Any]) -> int:
    return sum(len(ch._recvq) + len(ch._sendq) for ch in chans)


# -- immediate cases -----------------------------------------------------------------------


def test_ready_cases_return_index_and_value() -> None:
    a: Chan[int] = Chan(1)
    b: Chan[int] = Chan(1)
    a.send(1)
    assert select(None, b.recv, a.recv) == (2, 1)
    b.send(2)
    assert select(b.recv_ok, None) == (0, (2, True))
    assert select((a.send, 3), None) == (0, None)
    assert a.recv() == 3


def test_default_returns_minus_one_when_nothing_is_ready() -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan(1)
    b.send(0)
    assert select(a.recv, (b.send, 1), None, default=True) == (-1, None)
    assert select(default=True) == (-1, None)
    assert select(None, None, default=True) == (-1, None)


def test_closed_channel_recv_cases_are_ready() -> None:
    a: Chan[int] = Chan()
    a.close()
    assert select(a.recv) == (0, None)
    assert select(a.recv_ok) == (0, (None, False))


def test_send_case_on_closed_channel_raises_even_with_default() -> None:
    a: Chan[int] = Chan()
    a.close()
    with pytest.raises(ClosedChannelError, match="^send on closed channel"):
        select((a.send, 1), default=True)


@pytest.mark.parametrize(
    "case", [5, "x", (print, 1), (Chan().recv, 1), Chan().send, (Chan().send,), Chan().close]
)
def test_bad_cases_raise_type_error(case: Any) -> None:
    with pytest.raises(TypeError, match="select case"):
        select(case, default=True)


def test_select_never_matches_its_own_send_and_receive() -> None:
    a: Chan[int] = Chan()
    assert select((a.send, 1), a.recv, default=True) == (-1, None)
    # blocking: the select queues both cases on the same channel; only a peer completes it
    worker = Worker(lambda: select((a.send, 1), a.recv))
    wait_blocked(worker.ident, "select")
    assert a.recv() == 1
    assert worker.join().result == (0, None)
    assert queued_entries(a) == 0


# -- fairness ------------------------------------------------------------------------------


def test_ready_cases_are_chosen_uniformly() -> None:
    chans: list[Chan[int]] = [Chan(10_000) for _ in range(4)]
    for ch in chans:
        for i in range(3_000):
            ch.send(i)
    chan_module._rng.seed(20261126)  # deterministic; the bounds hold for any seed anyway
    counts = Counter(select(*(ch.recv for ch in chans))[0] for _ in range(8_000))
    # expected 2000 each; sd ~39, so +-250 is >6 sigma
    assert sorted(counts) == [0, 1, 2, 3]
    assert all(abs(c - 2_000) < 250 for c in counts.values()), counts


def test_fairness_with_more_cases_than_the_precomputed_orders() -> None:
    chans: list[Chan[int]] = [Chan(5_000) for _ in range(7)]
    for ch in chans:
        for i in range(2_000):
            ch.send(i)
    chan_module._rng.seed(7)
    counts = Counter(select(*(ch.recv for ch in chans))[0] for _ in range(7_000))
    assert all(abs(c - 1_000) < 180 for c in counts.values()), counts


# -- blocking ------------------------------------------------------------------------------


def test_blocked_select_is_completed_by_a_later_send() -> None:
    a: Chan[str] = Chan()
    b: Chan[str] = Chan()
    worker = Worker(lambda: select(a.recv, b.recv_ok))
    info = wait_blocked(worker.ident, "select")
    assert set(info.obj) == {a, b}  # type: ignore[call-overload]
    b.send("hi")
    assert worker.join().result == (1, ("hi", True))
    assert queued_entries(a, b) == 0  # the loser's entry was withdrawn


def test_blocked_select_send_case_completed_by_a_receiver() -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    worker = Worker(lambda: select((a.send, 10), (b.send, 20)))
    wait_blocked(worker.ident, "select")
    assert a.recv() == 10
    assert worker.join().result == (0, None)
    assert select(b.recv, default=True) == (-1, None)  # only one case happened
    assert queued_entries(a, b) == 0


def test_blocked_select_on_channel_closed_meanwhile() -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    worker = Worker(lambda: select(a.recv_ok, b.recv))
    wait_blocked(worker.ident, "select")
    a.close()
    assert worker.join().result == (0, (None, False))
    assert queued_entries(a, b) == 0


def test_blocked_select_send_case_raises_when_its_channel_is_closed() -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    worker = Worker(lambda: select((a.send, 1), b.recv))
    wait_blocked(worker.ident, "select")
    a.close()
    assert isinstance(worker.join().error, ClosedChannelError)
    assert queued_entries(a, b) == 0


def test_select_with_only_nil_cases_blocks_forever_registered() -> None:
    worker = Worker(lambda: select(None, None))
    info = wait_blocked(worker.ident, "select (no cases)")
    # it stays blocked until an exception interrupts it
    async_raise(worker.ident, Interrupt)
    info.obj.release()  # type: ignore[attr-defined]  # let it run bytecode once
    assert isinstance(worker.join().error, Interrupt)
    assert worker.ident not in events.blocked_threads()


def test_buffered_select_send_case_waits_for_room() -> None:
    a: Chan[int] = Chan(1)
    a.send(1)
    worker = Worker(lambda: select((a.send, 2)))
    wait_blocked(worker.ident, "select")
    assert a.recv() == 1  # frees the slot: the select's value moves in
    assert worker.join().result == (0, None)
    assert a.recv() == 2


# -- asynchronous exceptions ---------------------------------------------------------------


def test_async_exception_in_blocked_select_withdraws_every_entry() -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    worker = Worker(lambda: select(a.recv, (b.send, 5)))
    wait_blocked(worker.ident, "select")
    async_raise(worker.ident, Interrupt)
    a._recvq[0].owner.park.release()  # a spurious wake-up, so it runs bytecode
    assert isinstance(worker.join().error, Interrupt)
    assert queued_entries(a, b) == 0
    assert select((a.send, 1), b.recv, default=True) == (-1, None)  # nothing delivered


def test_async_exception_after_select_completed_delivers_exactly_once() -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    worker = Worker(lambda: select((a.send, 1), (b.send, 2)))
    wait_blocked(worker.ident, "select")
    async_raise(worker.ident, Interrupt)  # pending until it runs again
    assert a.recv() == 1
    assert isinstance(worker.join().error, Interrupt)
    assert queued_entries(a, b) == 0
    assert select(a.recv, b.recv, default=True) == (-1, None)


# -- stress --------------------------------------------------------------------------------


def test_stress_selects_on_both_ends_deliver_each_value_once() -> None:
    """Producers select-send to any of two channels, consumers select-receive from all
    channels (plus a quit channel): every value arrives exactly once."""
    chans: list[Chan[tuple[int, int]]] = [Chan(), Chan(), Chan(2), Chan(1)]
    quit_: Chan[None] = Chan()
    producers, per = 4, 800
    got: list[list[tuple[int, int]]] = [[] for _ in range(3)]

    def produce(p: int) -> None:
        mine = (chans[p % 4], chans[(p + 1) % 4])
        for i in range(per):
            select((mine[0].send, (p, i)), (mine[1].send, (p, i)))

    def consume(k: int) -> None:
        cases = [ch.recv for ch in chans] + [quit_.recv_ok]
        while True:
            index, value = select(*cases)
            if index == 4:
                return
            got[k].append(value)

    cons = [Worker(lambda k=k: consume(k)) for k in range(3)]
    prods = [Worker(lambda p=p: produce(p)) for p in range(producers)]
    for w in prods:
        assert w.join().error is None
    quit_.close()
    for w in cons:
        assert w.join().error is None
    counts = Counter(v for out in got for v in out)
    assert len(counts) == producers * per and set(counts.values()) == {1}
    assert queued_entries(*chans, quit_) == 0


def test_stress_select_against_plain_operations() -> None:
    """Select senders and select receivers both queued on the same two unbuffered
    channels, mixed with plain sends and receives: a select can be claimed from two
    channels at once, and a select meeting a select must claim both or neither."""
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    quit_: Chan[None] = Chan()
    n = 1500
    got: list[list[int]] = [[], [], []]

    def plain_sender() -> None:
        for i in range(n):
            a.send(i)

    def select_sender() -> None:
        for i in range(n, 2 * n):
            select((a.send, i), (b.send, i))

    def select_receiver(k: int) -> None:
        while True:
            index, value = select(a.recv, b.recv, quit_.recv_ok)
            if index == 2:
                return
            got[k].append(value)

    def plain_receiver() -> None:
        while (value := a.recv()) != -1:
            assert value is not None
            got[2].append(value)

    senders = [Worker(plain_sender), Worker(select_sender)]
    receivers = [Worker(lambda k=k: select_receiver(k)) for k in range(2)]
    plain = Worker(plain_receiver)
    for w in senders:
        assert w.join().error is None
    quit_.close()
    for w in receivers:
        assert w.join().error is None
    a.send(-1)  # only the plain receiver is left to take it
    assert plain.join().error is None
    assert sorted(v for out in got for v in out) == list(range(2 * n))
    assert queued_entries(a, b) == 0


# -- the happens-before / audit contract -------------------------------------------------


class FakeHB:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, Any]] = []
        self.n = 0

    def publish(self, into: object | None) -> object:
        who = threading.current_thread().name
        with self.lock:
            self.n += 1
            token = ("tok", who, self.n)
            self.calls.append(("publish", who, token))
        return token

    def consume(self, token: object) -> None:
        with self.lock:
            self.calls.append(("consume", threading.current_thread().name, token))

    def audit(self, obj: object, op: str, what: str, depth: int) -> None:
        with self.lock:
            self.calls.append(("audit", threading.current_thread().name, (obj, op, what, depth)))

    def of(self, kind: str, who: str) -> list[Any]:
        return [t for k, w, t in self.calls if k == kind and w == who]


@pytest.fixture
def hb() -> Any:
    fake = FakeHB()
    previous = events._hb
    events.set_happens_before(fake)
    try:
        yield fake
    finally:
        events.set_happens_before(previous)


def test_contract_select_send_cases_are_audited_and_carry_tokens(hb: FakeHB) -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    receiver = Worker(a.recv, name="R")
    wait_blocked(receiver.ident, "chan receive")
    me = threading.current_thread().name
    assert select((a.send, 1), (b.send, 2)) == (0, None)
    assert receiver.join().result == 1
    audits = hb.of("audit", me)
    assert (a, "read", "send", 2) in audits and (b, "read", "send", 2) in audits
    assert set(hb.of("publish", me)) & set(hb.of("consume", "R"))
    assert set(hb.of("publish", "R")) & set(hb.of("consume", me))


def test_contract_blocked_select_receive_consumes_the_senders_token(hb: FakeHB) -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    worker = Worker(lambda: select(a.recv, b.recv), name="S")
    wait_blocked(worker.ident, "select")
    me = threading.current_thread().name
    b.send(3)
    assert worker.join().result == (1, 3)
    assert set(hb.of("publish", me)) & set(hb.of("consume", "S"))
    assert set(hb.of("publish", "S")) & set(hb.of("consume", me))


def test_contract_select_receive_of_close(hb: FakeHB) -> None:
    a: Chan[int] = Chan()
    closer = Worker(a.close, name="C")
    closer.join()
    (token,) = hb.of("publish", "C")
    assert select(a.recv_ok) == (0, (None, False))
    assert token in hb.of("consume", threading.current_thread().name)


def test_ctrl_c_interrupts_a_blocked_select_and_withdraws_it() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("tests do not run on the main thread here")
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    main = threading.get_ident()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt() -> None:
        wait_blocked(main, "select")
        signal.pthread_kill(main, signal.SIGINT)

    try:
        helper = Worker(interrupt)
        with pytest.raises(KeyboardInterrupt):
            select(a.recv, (b.send, 1))
        helper.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert queued_entries(a, b) == 0
    assert main not in events.blocked_threads()
    assert select((a.send, 1), b.recv, default=True) == (-1, None)
