"""Go channels and ``select`` for Python threads.

Design (Go's runtime, adapted to raw locks):

* One raw lock per channel guards all of its state: the buffer, the queues of parked
  senders and receivers, the closed flag and the happens-before tokens.
* A thread that cannot proceed parks on a private raw lock held by a :class:`_Waiter`
  (Go's ``sudog``) queued on the channel.  The thread that completes the operation for it
  (the counterpart sender/receiver, or ``close``) first *claims* the waiter, moves the
  value, then releases the park lock.  A plain send/recv waits on one channel, so its
  claim flag is guarded by that channel's lock.  A ``select`` queues one entry per case,
  all sharing one owner whose flag is guarded by a small mutex of its own, so exactly one
  channel completes a select though each channel holds only its own lock; a select
  meeting another parked select claims both owners together (mutexes in id order) or
  neither, so no third thread ever sees a half-made match.  No GIL is assumed.
* Happens-before (Go memory model), through :mod:`racecheck.sync.events`: a send's token
  travels with its value to the receive that takes it; a receive on an unbuffered channel
  publishes a token its sender consumes; on a buffered channel of capacity C each receive
  publishes a token for the buffer slot it frees and the send that later fills that slot
  (the C-th send after it) consumes it; ``close`` publishes a token for receives that
  return because of it.  Tokens are kept only while a detector listens, aligned with the
  newest values, so a channel pays nothing when racecheck is off.

Asynchronous exceptions (``KeyboardInterrupt``, ``PyThreadState_SetAsyncExc``) raised in
a parked thread cancel the operation if no counterpart has claimed it yet: the value is
not delivered (send) or not taken (receive) and the channel is exactly as if the call had
never been made.  If a counterpart completed the operation at the same instant, the
operation stands (the value was delivered exactly once) and the exception propagates
with a note saying so, as if it had arrived just after the call returned, which is all a
caller can ever tell apart anyway.  Exceptions are never swallowed.  (An exception
injected into the few statements that run under a channel's lock is the one window no
pure-Python code can close; the guarantee is for threads blocked in an operation.)
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from types import MethodType
from typing import Any, Generic, TypeVar

from racecheck._rawsync import allocate_lock
from racecheck.errors import ClosedChannelError
from racecheck.sync import events

T = TypeVar("T")

__all__ = ["Chan", "select"]

_rng = random.Random()
"""Picks among ready select cases; a private instance so tests can seed it."""


class _Lost:
    """Marker: a select was completed by another channel meanwhile."""


_LOST: Any = _Lost()


class _Waiter:
    """A parked operation queued on a channel (Go's ``sudog``).

    For a plain send/recv the waiter is its own ``owner``; for a select every case has an
    entry whose ``owner`` is the select's shared waiter.  The owner holds the park lock
    (acquired at creation, released by whoever completes the operation), the claim state
    and the outcome fields the completer writes before releasing the park lock.
    """

    __slots__ = (
        "owner",
        "index",
        "value",
        "tok",
        "park",
        "claim",
        "done",
        "ok",
        "token",
        "closed",
        "chan",
    )

    def __init__(self, owner: _Waiter | None, index: int, value: Any, claim: Any) -> None:
        self.owner = self if owner is None else owner
        self.index = index  # the select case this entry stands for (0 for send/recv)
        self.value = value  # the value to send; on an owner: the value received
        self.tok: object | None = None  # published by the parked thread at registration
        self.park: Any = None
        self.claim = claim  # select owners: raw lock used as test-and-set; else None
        self.done = False  # plain owners: claimed (guarded by the one channel's lock)
        self.ok = False  # receive outcome: a value (True) or closed and drained (False)
        self.token: object | None = None  # for the parked thread to consume on waking
        self.closed = False  # a send woken by close: raise
        self.chan: Chan[Any] | None = None  # which channel completed it (select)


def _unpark(park: Any) -> None:
    """Release a parked thread's lock.  Tolerates a lock already released by
    :func:`_nudge` (the deadlock checker's wake-up) that the parked thread has not
    re-acquired yet: it will see its operation done on that wake-up."""
    try:
        park.release()
    except RuntimeError:
        pass


def _nudge(park: Any) -> None:
    """Wake a parked thread spuriously (its wait loop re-checks ``done``), so an
    asynchronous exception pending for it — the in-process ``DeadlockError`` — fires."""
    try:
        park.release()
    except RuntimeError:
        pass


def _claim(entry: _Waiter) -> bool:
    """Claim ``entry``'s owner for completion; False if someone else already did.

    A plain send/recv is queued on one channel, so its ``done`` flag is guarded by that
    channel's lock (held by every caller).  A select owner is queued on several channels,
    so its flag is guarded by its own ``claim`` mutex.
    """
    owner = entry.owner
    mutex = owner.claim
    if mutex is None:
        if owner.done:
            return False
        owner.done = True
        return True
    with mutex:
        if owner.done:
            return False
        owner.done = True
        return True


_OK, _ME_DONE, _PEER_DONE = 0, 1, 2


def _claim_pair(me: _Waiter, peer: _Waiter) -> int:
    """Claim a select owner ``me`` and a peer owner together, or neither.

    Claiming one and then releasing it when the other fails would let a third thread see
    ``me`` taken in between, skip it and park: a lost wake-up.  The two mutexes are taken
    in a global order (by id), never while holding a mutex of another owner, so this
    cannot deadlock; the caller holds the lock of the channel ``peer`` is queued on.
    """
    m1 = me.claim
    m2 = peer.claim
    if m2 is None:
        with m1:
            if me.done:
                return _ME_DONE
            if peer.done:
                return _PEER_DONE
            me.done = peer.done = True
            return _OK
    first, second = (m1, m2) if id(m1) < id(m2) else (m2, m1)
    with first, second:
        if me.done:
            return _ME_DONE
        if peer.done:
            return _PEER_DONE
        me.done = peer.done = True
        return _OK


def _take_peer(queue: deque[_Waiter], me: _Waiter | None) -> Any:
    """Pop and claim the first live entry of ``queue`` that is not one of ``me``'s.

    ``me`` is the owner of a select that already has entries queued elsewhere: it is
    claimed together with the peer (see :func:`_claim_pair`); if it was completed
    elsewhere meanwhile, returns ``_LOST`` and leaves the queue as it was.  Entries whose
    owner was completed elsewhere are dropped (their owner tolerates their absence).
    Entries of ``me`` itself (a select with a send and a receive case on the same
    channel) stay queued: an operation never matches itself.  Returns the claimed entry,
    None, or ``_LOST``.  Called with the channel lock held.
    """
    skipped: list[_Waiter] | None = None
    found: Any = None
    while queue:
        entry = queue.popleft()
        if me is None:
            if _claim(entry):
                found = entry
                break
            continue
        if entry.owner is me:
            if skipped is None:
                skipped = []
            skipped.append(entry)
            continue
        outcome = _claim_pair(me, entry.owner)
        if outcome == _OK:
            found = entry
            break
        if outcome == _ME_DONE:
            queue.appendleft(entry)
            found = _LOST
            break
    if skipped is not None:
        queue.extendleft(reversed(skipped))
    return found


def _completed_note(exc: BaseException, what: str) -> None:
    exc.add_note(
        f"racecheck: this {what} had already completed when the exception arrived "
        "(as if it arrived just after the call returned)"
    )


class Chan(Generic[T]):
    """A Go channel: ``Chan(capacity=0)``.

    Unbuffered (capacity 0) channels are a rendezvous: ``send`` returns only once a
    receiver has taken the value.  ``recv`` returns ``None`` (Go's zero value) and
    ``recv_ok`` returns ``(None, False)`` once the channel is closed and drained.
    Iterating receives until then.  Sending on a closed channel, or closing it twice,
    raises :class:`~racecheck.errors.ClosedChannelError` with Go's words.
    """

    __slots__ = (
        "_lock",
        "_cap",
        "_buf",
        "_btok",
        "_free",
        "_recvq",
        "_sendq",
        "_closed",
        "_close_token",
        "_created_at",
        "__weakref__",
    )

    def __init__(self, capacity: int = 0) -> None:
        if capacity < 0:
            raise ValueError("makechan: size out of range")
        self._lock = allocate_lock()
        self._cap = capacity
        self._buf: deque[Any] = deque()
        # Tokens of the newest buffered values (aligned with the tail of _buf) and of the
        # newest receives whose buffer slot is still free (see _fill_slot).
        self._btok: deque[object | None] = deque()
        self._free: deque[object | None] = deque()
        self._recvq: deque[_Waiter] = deque()
        self._sendq: deque[_Waiter] = deque()
        self._closed = False
        self._close_token: object | None = None
        self._created_at = events.creation_site(1)

    # -- introspection --------------------------------------------------------------

    @property
    def cap(self) -> int:
        """The buffer capacity (0 for an unbuffered channel)."""
        return self._cap

    def __len__(self) -> int:
        """Values buffered right now.  Not synchronisation (no happens-before edge)."""
        with self._lock:
            return len(self._buf)

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called (a snapshot, not synchronisation)."""
        with self._lock:
            return self._closed

    def __repr__(self) -> str:
        site = self._created_at
        where = f" created at {site[0][0]}:{site[0][1]}" if site else ""
        state = " closed" if self._closed else ""
        return f"<Chan cap={self._cap} len={len(self._buf)}{state}{where}>"

    def __iter__(self) -> Iterator[T]:
        """Receive until the channel is closed and drained (Go's ``for v := range ch``)."""
        recv_ok = self.recv_ok
        while True:
            value, ok = recv_ok()
            if not ok:
                return
            yield value  # type: ignore[misc]

    # -- happens-before bookkeeping (channel lock held) -------------------------------

    def _fill_slot(self) -> object | None:
        """A send's value enters the buffer: return the token of the receive that freed
        its slot (the receive C sends earlier), if one was recorded."""
        free = self._free
        if free and len(free) >= self._cap - len(self._buf):
            return free.popleft()
        return None

    def _push(self, value: Any, token: object | None) -> None:
        """Append a value (and its send token) to the buffer."""
        self._buf.append(value)
        if token is not None or self._btok:
            self._btok.append(token)

    def _pop(self) -> tuple[Any, object | None]:
        """Remove the oldest buffered value; its send token if one was recorded."""
        btok = self._btok
        token = btok.popleft() if btok and len(btok) >= len(self._buf) else None
        return self._buf.popleft(), token

    # -- send -----------------------------------------------------------------------

    def send(self, value: T) -> None:
        """Send ``value``; block until a receiver takes it (unbuffered) or it is buffered.

        Raises ``ClosedChannelError("send on closed channel")`` if the channel is closed,
        also when it gets closed while this send is blocked.
        """
        hb = events._hb
        if hb is not None:
            events.audit(self, "read", "send", 1)
        with self._lock:
            if self._closed:
                raise ClosedChannelError("send on closed channel")
            if self._recvq:
                peer = _take_peer(self._recvq, None)
                if peer is not None:
                    self._hand_to_receiver(peer, value, hb)
                    return
            if len(self._buf) < self._cap:
                if hb is None and not (self._free or self._btok):
                    self._buf.append(value)  # the fast path: no tokens to keep aligned
                else:
                    self._buffer_send(value, hb)
                return
            w = _Waiter(None, 0, value, None)
            w.park = park = allocate_lock()
            park.acquire()
            if hb is not None:
                w.tok = hb.publish(None)
            self._sendq.append(w)
        self._park(w, self._sendq, "chan send")
        events.consume(w.token)
        if w.closed:
            raise ClosedChannelError("send on closed channel")

    def _buffer_send(self, value: Any, hb: Any) -> None:
        """Put a value in the buffer (there is room).  Channel lock held."""
        if hb is None:
            if self._free:
                self._fill_slot()
            self._push(value, None)
        else:
            events.consume(self._fill_slot())
            self._push(value, hb.publish(None))

    def _buffer_recv(self, hb: Any) -> Any:
        """Take the oldest buffered value.  Channel lock held."""
        if hb is None and not (self._sendq or self._btok or self._free):
            return self._buf.popleft()  # the fast path: no tokens, no parked sender
        value, token = self._pop()
        if hb is not None:
            events.consume(token)
        self._after_take(hb)
        return value

    def _hand_to_receiver(self, peer: _Waiter, value: Any, hb: Any) -> None:
        """Complete a parked (claimed) receive with ``value``.  Channel lock held.

        Only reached when the buffer is empty, so the value goes straight across: the
        send orders before the receive completes.  Unbuffered: the parked receive orders
        before this send completes.  Buffered: the value passes through a buffer slot in
        an instant (Go does the same), so the send follows the receive C earlier and the
        receive frees the slot with the clock it parked with.
        """
        owner = peer.owner
        owner.value = value
        owner.ok = True
        owner.index = peer.index
        owner.chan = self
        if hb is not None:
            owner.token = hb.publish(None)
            if self._cap == 0:
                events.consume(peer.tok)
            else:
                events.consume(self._fill_slot())
                self._free.append(peer.tok)
        elif self._free:
            self._fill_slot()
            self._free.append(peer.tok)
        _unpark(owner.park)

    def _try_deliver(self, value: Any, token: object | None) -> bool:
        """Non-blocking send carrying someone else's ``token`` (timers: the token of the
        timer's creation/reset), for racecheck-internal threads that must never call the
        detector themselves.  False when nobody can take the value now (or closed)."""
        with self._lock:
            if self._closed:
                return False
            if self._recvq:
                peer = _take_peer(self._recvq, None)
                if peer is not None:
                    owner = peer.owner
                    owner.value = value
                    owner.ok = True
                    owner.index = peer.index
                    owner.chan = self
                    owner.token = token
                    if self._free:
                        self._fill_slot()
                        self._free.append(peer.tok)
                    _unpark(owner.park)
                    return True
            if len(self._buf) < self._cap:
                if self._free:
                    self._fill_slot()
                self._push(value, token)
                return True
            return False

    def _drain(self) -> int:
        """Discard every buffered value (timers' Stop/Reset drop a stale tick)."""
        with self._lock:
            n = len(self._buf)
            self._buf.clear()
            self._btok.clear()
            self._free.clear()
            return n

    # -- receive ----------------------------------------------------------------------

    def recv(self) -> T | None:
        """Receive a value; ``None`` once the channel is closed and drained."""
        return self.recv_ok()[0]

    def recv_ok(self) -> tuple[T | None, bool]:
        """Receive ``(value, True)``, or ``(None, False)`` once closed and drained."""
        hb = events._hb
        with self._lock:
            if self._buf:
                return self._buffer_recv(hb), True
            if self._sendq:
                peer = _take_peer(self._sendq, None)
                if peer is not None:
                    return self._take_from_sender(peer, hb), True
            if self._closed:
                if hb is not None:
                    events.consume(self._close_token)
                return None, False
            w = _Waiter(None, 0, None, None)
            w.park = park = allocate_lock()
            park.acquire()
            if hb is not None:
                w.tok = hb.publish(None)
            self._recvq.append(w)
        self._park(w, self._recvq, "chan receive")
        events.consume(w.token)
        return w.value, w.ok

    def _after_take(self, hb: Any) -> None:
        """A buffered value was taken: free its slot, refill it from a parked sender.
        Channel lock held."""
        if hb is not None:
            self._free.append(hb.publish(None))
        elif self._free:
            self._free.append(None)
        if self._sendq:
            peer = _take_peer(self._sendq, None)
            if peer is not None:
                owner = peer.owner
                owner.token = self._fill_slot()
                owner.index = peer.index
                owner.chan = self
                self._push(peer.value, peer.tok)
                _unpark(owner.park)

    def _take_from_sender(self, peer: _Waiter, hb: Any) -> Any:
        """Take the value of a parked (claimed) sender; the buffer is empty.  Channel lock
        held.  Returns the value."""
        owner = peer.owner
        owner.index = peer.index
        owner.chan = self
        if hb is not None:
            events.consume(peer.tok)
            owner.token = hb.publish(None)
        _unpark(owner.park)
        return peer.value

    # -- close ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel: parked receivers get ``(None, False)``, parked senders raise.

        Raises ``ClosedChannelError("close of closed channel")`` on a second close.
        """
        hb = events._hb
        if hb is not None:
            events.audit(self, "write", "close", 1)
        with self._lock:
            if self._closed:
                raise ClosedChannelError("close of closed channel")
            self._closed = True
            token = self._close_token = hb.publish(None) if hb is not None else None
            recvq, self._recvq = self._recvq, deque()
            sendq, self._sendq = self._sendq, deque()
            for entry in recvq:
                if _claim(entry):
                    owner = entry.owner
                    owner.value = None
                    owner.ok = False
                    owner.index = entry.index
                    owner.chan = self
                    owner.token = token
                    _unpark(owner.park)
            for entry in sendq:
                if _claim(entry):
                    owner = entry.owner
                    owner.closed = True
                    owner.index = entry.index
                    owner.chan = self
                    _unpark(owner.park)

    # -- parking ----------------------------------------------------------------------

    def _park(self, w: _Waiter, queue: deque[_Waiter], what: str) -> None:
        """Sleep until ``w`` is completed; on an exception, cancel it if still possible."""
        park = w.park
        try:
            if not (park.acquire(False) and w.done):  # already completed: no registration
                with events.blocking(
                    self, what, created_at=self._created_at, wake=partial(_nudge, park)
                ):
                    park.acquire()
                    while not w.done:  # a release without done set is spurious
                        park.acquire()
        except BaseException as exc:
            with self._lock:
                if _claim(w):  # nobody completed it: withdraw, the channel is untouched
                    try:
                        queue.remove(w)
                    except ValueError:
                        pass
                    raise
            # completed by a counterpart (it released the park lock before or will have
            # by now, since it completes under the lock we just took)
            _completed_note(exc, what)
            raise


# -- select ---------------------------------------------------------------------------

_SEND, _RECV, _RECV_OK, _NEVER = 0, 1, 2, 3
_SEND_FUNC = Chan.send
_RECV_FUNC = Chan.recv
_RECV_OK_FUNC = Chan.recv_ok


def _parse(cases: tuple[Any, ...]) -> list[tuple[int, Chan[Any] | None, Any]]:
    """Turn select's cases into (kind, channel, value-to-send) triples."""
    parsed: list[tuple[int, Chan[Any] | None, Any]] = []
    append = parsed.append
    for case in cases:
        if type(case) is MethodType:
            func = case.__func__
            ch: Any = case.__self__  # a Chan: its method is one of Chan's
            if func is _RECV_OK_FUNC:
                append((_RECV_OK, ch, None))
                continue
            if func is _RECV_FUNC:
                append((_RECV, ch, None))
                continue
        elif case is None:
            append((_NEVER, None, None))
            continue
        elif type(case) is tuple and len(case) == 2:
            fn: Any = case[0]
            if type(fn) is MethodType and fn.__func__ is _SEND_FUNC:
                target: Any = fn.__self__
                append((_SEND, target, case[1]))
                continue
        raise TypeError(
            f"select case must be ch.recv, ch.recv_ok, (ch.send, value) or None, not {case!r}"
        )
    return parsed


def _permutations(n: int) -> list[tuple[int, ...]]:
    return list(itertools.permutations(range(n)))


_PERMS = [_permutations(n) for n in range(6)]
_NPERMS = [len(perms) for perms in _PERMS]
"""Every poll order for selects of up to 5 cases: picking one uniformly costs one random
number, where shuffling costs one per case."""


def _poll_order(n: int) -> Sequence[int]:
    """A uniformly random order of ``range(n)``."""
    if n < 6:
        perms = _PERMS[n]
        return perms[int(_rng.random() * len(perms))]
    order = list(range(n))
    _rng.shuffle(order)
    return order


def _try_case(
    kind: int, ch: Chan[Any], value: Any, me: _Waiter | None, hb: Any
) -> tuple[bool, Any]:
    """Attempt one case without blocking, channel lock held: (done, result).

    ``me`` is the select's owner once it has entries queued anywhere: proceeding then
    requires claiming it (another channel may have completed the select already; the
    result is then ``_LOST`` and the caller waits for that outcome instead).
    """
    if kind == _SEND:
        if ch._closed:
            if me is not None and not _claim(me):
                return True, _LOST
            raise ClosedChannelError("send on closed channel")
        if ch._recvq:
            peer = _take_peer(ch._recvq, me)
            if peer is _LOST:
                return True, _LOST
            if peer is not None:
                ch._hand_to_receiver(peer, value, hb)
                return True, None
        if len(ch._buf) < ch._cap:
            if me is not None and not _claim(me):
                return True, _LOST
            ch._buffer_send(value, hb)
            return True, None
        return False, None
    # receive
    if ch._buf:
        if me is not None and not _claim(me):
            return True, _LOST
        got = ch._buffer_recv(hb)
        return True, (got if kind == _RECV else (got, True))
    if ch._sendq:
        peer = _take_peer(ch._sendq, me)
        if peer is _LOST:
            return True, _LOST
        if peer is not None:
            got = ch._take_from_sender(peer, hb)
            return True, (got if kind == _RECV else (got, True))
    if ch._closed:
        if me is not None and not _claim(me):
            return True, _LOST
        if hb is not None:
            events.consume(ch._close_token)
        return True, (None if kind == _RECV else (None, False))
    return False, None


def select(*cases: Any, default: bool = False) -> tuple[int, Any]:
    """Go's ``select``: wait until one case can proceed, do it, return ``(index, value)``.

    Cases: ``ch.recv`` (value: the received value), ``ch.recv_ok`` (value: ``(v, ok)``),
    ``(ch.send, v)`` (value: ``None``), ``None`` (never ready, Go's nil channel).  When
    several are ready one is chosen uniformly at random.  With ``default=True`` and none
    ready returns ``(-1, None)`` at once.  A send case on a closed channel raises
    ``ClosedChannelError`` like Go.
    """
    parsed = _parse(cases)
    hb = events._hb
    if hb is not None:
        for kind, ch, _ in parsed:
            if kind == _SEND:
                events.audit(ch, "read", "send", 1)
    n = len(parsed)
    order = _PERMS[n][int(_rng.random() * _NPERMS[n])] if n < 6 else _poll_order(n)
    # Pass 1 (and the only pass with default=True): proceed with a ready case.
    for i in order:
        kind, ch, value = parsed[i]
        if ch is None:
            continue
        # A peek without the lock skips a case that is not ready (Go's non-blocking fast
        # path does the same): emptiness is read before closedness, and a closed channel
        # never reopens, so a "not ready" seen here was true at some instant during this
        # call; a blocking select re-checks every case under its lock in pass 2 anyway.
        if kind:
            if not (ch._buf or ch._sendq or ch._closed):
                continue
        elif not (ch._recvq or ch._closed) and len(ch._buf) >= ch._cap:
            continue
        with ch._lock:
            if kind and ch._buf:  # a receive from a buffer: the common ready case, inlined
                got = ch._buffer_recv(hb)
                return i, (got if kind == _RECV else (got, True))
            done, result = _try_case(kind, ch, value, None, hb)
        if done:
            return i, result
    if default:
        return -1, None
    channels = [ch for _, ch, _ in parsed if ch is not None]
    if not channels:
        forever = allocate_lock()
        forever.acquire()
        with events.blocking(forever, "select (no cases)"):
            while True:  # sleeps until an exception interrupts it
                forever.acquire()
        raise AssertionError("unreachable")  # pragma: no cover
    return _select_block(parsed, order, channels, hb)


def _select_block(
    parsed: list[tuple[int, Chan[Any] | None, Any]],
    order: Sequence[int],
    channels: list[Chan[Any]],
    hb: Any,
) -> tuple[int, Any]:
    """Pass 2: queue an entry on every case's channel (re-checking each under its lock,
    since it may have become ready), park, then withdraw the entries left over."""
    me = _Waiter(None, -1, None, allocate_lock())  # claim: a mutex over me.done
    me.park = park = allocate_lock()
    park.acquire()
    if hb is not None:
        me.tok = hb.publish(None)
    queued: list[tuple[Chan[Any], deque[_Waiter], _Waiter]] = []
    finished: tuple[int, Any] | None = None
    try:
        for i in order:
            kind, ch, value = parsed[i]
            if ch is None:
                continue
            with ch._lock:
                done, result = _try_case(kind, ch, value, me, hb)
                if not done:
                    entry = _Waiter(me, i, value, None)
                    entry.tok = me.tok
                    queue = ch._sendq if kind == _SEND else ch._recvq
                    queue.append(entry)
                    queued.append((ch, queue, entry))
            if done:
                if result is not _LOST:
                    finished = (i, result)
                break
        if finished is None:
            if not (park.acquire(False) and me.done):  # already completed: no registration
                site = channels[0]._created_at
                with events.blocking(
                    tuple(channels), "select", created_at=site, wake=partial(_nudge, park)
                ):
                    park.acquire()
                    while not me.done:  # a release without done set is spurious
                        park.acquire()
    except BaseException as exc:
        # Withdrawing takes every queued channel's lock in turn; a completer finishes
        # under its channel's lock, so afterwards the outcome is settled either way.
        cancelled = finished is None and _claim(me)
        _withdraw(queued)
        if finished is None and not cancelled:
            _completed_note(exc, "select")
        raise
    _withdraw(queued)
    if finished is not None:
        return finished
    events.consume(me.token)
    index = me.index
    kind = parsed[index][0]
    if me.closed:
        raise ClosedChannelError("send on closed channel")
    if kind == _SEND:
        return index, None
    if kind == _RECV:
        return index, me.value
    return index, (me.value, me.ok)


def _withdraw(queued: list[tuple[Chan[Any], deque[_Waiter], _Waiter]]) -> None:
    """Remove a finished select's entries still queued (completers drop claimed ones)."""
    for ch, queue, entry in queued:
        with ch._lock:
            try:
                queue.remove(entry)
            except ValueError:
                pass


Case = Callable[[], Any] | tuple[Callable[[Any], None], Any] | None
"""What ``select`` accepts as a case (for documentation and type hints)."""
