"""Chan: Go semantics, misuse errors, async-exception consistency, hook-point contract."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sync_helpers import WAIT, Interrupt, Worker, async_raise, wait_blocked, wait_until  # noqa: F401

from racecheck.errors import ClosedChannelError, MisuseError
from racecheck.sync import events
from racecheck.sync.chan import Chan, select

# -- helpers -----------------------------------------------------------------------------


def poke(waiter: Any) -> None:
    """Wake a parked waiter without completing it (a spurious wake-up)."""
    waiter.owner.park.release()


# -- basics --------------------------------------------------------------------------------


def test_unbuffered_send_returns_only_after_a_receiver_took_the_value() -> None:
    ch: Chan[int] = Chan()
    sender = Worker(lambda: ch.send(1))
    info = wait_blocked(sender.ident, "chan send")
    assert info.obj is ch and info.created_at == ch._created_at
    assert sender.thread.is_alive()
    assert ch.recv() == 1
    assert sender.join().error is None


def test_unbuffered_receiver_waits_for_a_sender() -> None:
    ch: Chan[str] = Chan()
    receiver = Worker(ch.recv_ok)
    wait_blocked(receiver.ident, "chan receive")
    ch.send("x")
    assert receiver.join().result == ("x", True)
    assert receiver.error is None


def test_buffered_fifo_len_cap_and_blocking_when_full() -> None:
    ch: Chan[int] = Chan(2)
    assert ch.cap == 2 and len(ch) == 0
    ch.send(1)
    ch.send(2)
    assert len(ch) == 2
    sender = Worker(lambda: ch.send(3))
    wait_blocked(sender.ident, "chan send")
    assert ch.recv() == 1  # frees a slot: the parked sender's value moves in behind 2
    sender.join()
    assert len(ch) == 2
    assert [ch.recv(), ch.recv()] == [2, 3]


def test_close_then_drain_then_zero_values() -> None:
    ch: Chan[int] = Chan(3)
    ch.send(1)
    ch.send(2)
    ch.close()
    assert ch.closed
    assert ch.recv_ok() == (1, True)
    assert ch.recv() == 2
    assert ch.recv() is None
    assert ch.recv_ok() == (None, False)


def test_iteration_stops_when_closed_and_drained() -> None:
    ch: Chan[int] = Chan()

    def produce() -> None:
        for i in range(5):
            ch.send(i)
        ch.close()

    producer = Worker(produce)
    assert list(ch) == [0, 1, 2, 3, 4]
    assert producer.join().error is None


def test_close_wakes_parked_receivers_with_not_ok() -> None:
    ch: Chan[int] = Chan()
    receivers = [Worker(ch.recv_ok) for _ in range(3)]
    for r in receivers:
        wait_blocked(r.ident, "chan receive")
    ch.close()
    assert [r.join().result for r in receivers] == [(None, False)] * 3


@pytest.mark.parametrize("capacity", [0, 1])
def test_sender_parked_on_a_channel_that_gets_closed_raises(capacity: int) -> None:
    ch: Chan[int] = Chan(capacity)
    if capacity:
        ch.send(0)
    sender = Worker(lambda: ch.send(1))
    wait_blocked(sender.ident, "chan send")
    ch.close()
    error = sender.join().error
    assert isinstance(error, ClosedChannelError) and isinstance(error, MisuseError)
    assert str(error).startswith("send on closed channel")
    if capacity:  # the buffered value stays receivable, the failed one never appears
        assert ch.recv_ok() == (0, True)
    assert ch.recv_ok() == (None, False)


def test_misuse_errors_use_gos_words() -> None:
    ch: Chan[int] = Chan(1)
    ch.close()
    with pytest.raises(ClosedChannelError, match="^send on closed channel"):
        ch.send(1)
    with pytest.raises(ClosedChannelError, match="^close of closed channel"):
        ch.close()
    with pytest.raises(ValueError):
        Chan(-1)


def test_repr_names_capacity_and_creation_site() -> None:
    ch: Chan[int] = Chan(4)
    line = test_repr_names_capacity_and_creation_site.__code__.co_firstlineno + 1
    text = repr(ch)
    assert "cap=4" in text and f"test_chan.py:{line}" in text


def test_generic_alias_constructs_a_channel() -> None:
    ch = Chan[int](1)
    ch.send(5)
    assert ch.recv() == 5


def test_len_reports_buffered_values_only() -> None:
    ch: Chan[int] = Chan()
    sender = Worker(lambda: ch.send(1))
    wait_blocked(sender.ident, "chan send")
    assert len(ch) == 0  # a parked sender is not a buffered value
    ch.recv()
    sender.join()


# -- asynchronous exceptions -------------------------------------------------------------


def test_async_exception_in_parked_sender_cancels_the_send() -> None:
    ch: Chan[str] = Chan()
    sender = Worker(lambda: ch.send("lost?"))
    wait_blocked(sender.ident, "chan send")
    async_raise(sender.ident, Interrupt)
    poke(ch._sendq[0])
    assert isinstance(sender.join().error, Interrupt)
    assert not ch._sendq and not ch._recvq
    assert select(ch.recv, default=True) == (-1, None)  # the value was not delivered
    # the channel still works
    receiver = Worker(ch.recv)
    wait_blocked(receiver.ident, "chan receive")
    ch.send("next")
    assert receiver.join().result == "next"


def test_async_exception_in_parked_receiver_leaves_no_stale_waiter() -> None:
    ch: Chan[int] = Chan()
    receiver = Worker(ch.recv)
    wait_blocked(receiver.ident, "chan receive")
    async_raise(receiver.ident, Interrupt)
    poke(ch._recvq[0])
    assert isinstance(receiver.join().error, Interrupt)
    assert not ch._recvq
    # an unbuffered send now finds no receiver (the interrupted one must not eat it)
    assert select((ch.send, 1), default=True) == (-1, None)


def test_async_exception_after_completion_delivers_exactly_once() -> None:
    """The receiver takes the value while the sender has an exception pending: the send
    stands (value delivered once) and the exception still propagates (never swallowed),
    exactly as if it had arrived just after ``send`` returned."""
    ch: Chan[str] = Chan()
    sender = Worker(lambda: ch.send("v"))
    wait_blocked(sender.ident, "chan send")
    async_raise(sender.ident, Interrupt)  # pending until the sender runs again
    assert ch.recv() == "v"
    assert isinstance(sender.join().error, Interrupt)
    assert select(ch.recv, default=True) == (-1, None)  # not delivered twice
    assert not ch._sendq


def test_async_exception_in_buffered_sender_keeps_buffer_intact() -> None:
    ch: Chan[int] = Chan(1)
    ch.send(1)
    sender = Worker(lambda: ch.send(2))
    wait_blocked(sender.ident, "chan send")
    async_raise(sender.ident, Interrupt)
    poke(ch._sendq[0])
    assert isinstance(sender.join().error, Interrupt)
    assert ch.recv() == 1
    assert select(ch.recv, default=True) == (-1, None)


def test_ctrl_c_interrupts_a_blocked_receive_and_keeps_the_channel_consistent() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("tests do not run on the main thread here")
    ch: Chan[int] = Chan()
    main = threading.get_ident()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt() -> None:
        wait_blocked(main, "chan receive")
        signal.pthread_kill(main, signal.SIGINT)

    try:
        helper = Worker(interrupt)
        with pytest.raises(KeyboardInterrupt):
            ch.recv()
        helper.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not ch._recvq
    assert main not in events.blocked_threads()
    assert select((ch.send, 1), default=True) == (-1, None)


# -- stress --------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, 1, 16])
def test_stress_every_value_received_exactly_once(capacity: int) -> None:
    ch: Chan[tuple[int, int]] = Chan(capacity)
    producers, per, consumers = 6, 1500, 4
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]

    def produce(p: int) -> None:
        for i in range(per):
            ch.send((p, i))

    def consume(k: int) -> None:
        out = received[k]
        for value in ch:
            out.append(value)

    cons = [Worker(lambda k=k: consume(k)) for k in range(consumers)]
    prods = [Worker(lambda p=p: produce(p)) for p in range(producers)]
    for w in prods:
        assert w.join().error is None
    ch.close()
    for w in cons:
        assert w.join().error is None
    counts = Counter(v for out in received for v in out)
    assert len(counts) == producers * per and set(counts.values()) == {1}
    for out in received:  # FIFO per producer as seen by each consumer
        for p in range(producers):
            seq = [i for q, i in out if q == p]
            assert seq == sorted(seq)


# -- the happens-before / audit contract -------------------------------------------------


class FakeHB:
    """Records publish/consume/audit per thread; tokens name who published them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, Any]] = []
        self.n = 0

    def _who(self) -> str:
        return threading.current_thread().name

    def publish(self, into: object | None) -> object:
        with self.lock:
            self.n += 1
            token = ("tok", self._who(), self.n)
            self.calls.append(("publish", self._who(), token))
        return token

    def consume(self, token: object) -> None:
        with self.lock:
            self.calls.append(("consume", self._who(), token))

    def audit(self, obj: object, op: str, what: str, depth: int) -> None:
        with self.lock:
            self.calls.append(("audit", self._who(), (obj, op, what, depth)))

    def published(self, who: str) -> list[Any]:
        return [t for kind, w, t in self.calls if kind == "publish" and w == who]

    def consumed(self, who: str) -> list[Any]:
        return [t for kind, w, t in self.calls if kind == "consume" and w == who]

    def audits(self, who: str) -> list[Any]:
        return [a for kind, w, a in self.calls if kind == "audit" and w == who]


@pytest.fixture
def hb() -> Any:
    fake = FakeHB()
    previous = events._hb
    events.set_happens_before(fake)
    try:
        yield fake
    finally:
        events.set_happens_before(previous)


def named_worker(name: str, fn: Callable[[], Any]) -> Worker:
    w = Worker.__new__(Worker)
    w.result, w.error, w._fn = None, None, fn
    w.thread = threading.Thread(target=w._run, name=name, daemon=True)
    w.thread.start()
    return w


def test_contract_unbuffered_receiver_parked(hb: FakeHB) -> None:
    ch: Chan[int] = Chan()
    receiver = named_worker("R", ch.recv)
    wait_blocked(receiver.ident, "chan receive")
    me = threading.current_thread().name
    ch.send(7)
    assert receiver.join().result == 7
    assert hb.audits(me) == [(ch, "read", "send", 2)]
    # send -> receive completes; the (parked) receive -> send completes
    assert set(hb.published(me)) & set(hb.consumed("R"))
    assert set(hb.published("R")) & set(hb.consumed(me))


def test_contract_unbuffered_sender_parked(hb: FakeHB) -> None:
    ch: Chan[int] = Chan()
    sender = named_worker("S", lambda: ch.send(7))
    wait_blocked(sender.ident, "chan send")
    me = threading.current_thread().name
    assert ch.recv() == 7
    sender.join()
    assert hb.audits("S") == [(ch, "read", "send", 2)]
    assert set(hb.published("S")) & set(hb.consumed(me))
    assert set(hb.published(me)) & set(hb.consumed("S"))


def test_contract_buffered_kth_receive_orders_before_k_plus_cap_send(hb: FakeHB) -> None:
    ch: Chan[int] = Chan(1)
    me = threading.current_thread().name
    ch.send(1)  # send 0
    sent0 = hb.published(me)[-1]
    assert ch.recv() == 1  # receive 0 consumes send 0's token, publishes its slot
    assert hb.consumed(me)[-1] == sent0
    recv0 = hb.published(me)[-1]
    other = named_worker("S", lambda: ch.send(2))  # send 1 must follow receive 0
    other.join()
    assert recv0 in hb.consumed("S")
    before = len(hb.consumed(me))
    assert ch.recv() == 2
    assert hb.consumed(me)[before:] == [hb.published("S")[-1]]


def test_contract_close_orders_before_the_receive_it_ends(hb: FakeHB) -> None:
    ch: Chan[int] = Chan(1)
    closer = named_worker("C", ch.close)
    closer.join()
    assert hb.audits("C") == [(ch, "write", "close", 2)]
    (close_token,) = hb.published("C")
    assert ch.recv_ok() == (None, False)
    assert hb.consumed(threading.current_thread().name) == [close_token]


def test_contract_failed_send_is_still_audited(hb: FakeHB) -> None:
    ch: Chan[int] = Chan()
    ch.close()
    with pytest.raises(ClosedChannelError):
        ch.send(1)
    me = threading.current_thread().name
    assert hb.audits(me)[-1] == (ch, "read", "send", 2)


def test_tokens_align_when_the_detector_starts_midstream() -> None:
    """Values buffered before a detector listened carry no token; later ones do."""
    ch: Chan[int] = Chan(4)
    ch.send(1)
    fake = FakeHB()
    previous = events._hb
    events.set_happens_before(fake)
    try:
        ch.send(2)
        token2 = fake.published(threading.current_thread().name)[-1]
        assert ch.recv() == 1
        assert token2 not in fake.consumed(threading.current_thread().name)
        assert ch.recv() == 2
        assert token2 in fake.consumed(threading.current_thread().name)
    finally:
        events.set_happens_before(previous)
