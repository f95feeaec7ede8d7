"""Edges of ``concurrent.futures``, ``multiprocessing.pool.ThreadPool`` and of asyncio
across threads, by contract.

* ``ThreadPoolExecutor.submit`` -> the task's start (the callable is wrapped);
* a ``Future``'s completion (``set_result``/``set_exception``, which the worker calls
  after the task returned) -> ``result()``/``exception()``/``done()`` True, ``wait``,
  ``as_completed``, ``map`` results (they call ``result()``) and done callbacks;
  every task of an executor -> its ``shutdown(wait=True)``;
* ``loop.call_soon_threadsafe(cb)`` -> ``cb`` running in the loop thread, which carries
  ``run_coroutine_threadsafe``, ``to_thread`` and ``run_in_executor`` (both ways, with
  the Future edges above);
* ``ThreadPool``: its queues are ``queue.SimpleQueue`` (edges per item, see
  stdlib_queue) and a result's ``_set`` -> ``get()``/``wait()``/``ready()`` True.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures._base as futures_base
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import ModuleType
from typing import Any

from racecheck.instrument import postimport
from racecheck.instrument.stdlib_common import ObjectTokens, Patcher
from racecheck.sync import events

_tokens = ObjectTokens()  # futures, executors, pool results
_patcher = Patcher()

_FINISHED = "FINISHED"


class _Task:
    """A submitted callable that first consumes the submitter's token and, when done,
    publishes into its executor's token (for ``shutdown(wait=True)``)."""

    __slots__ = ("_fn", "_token", "_executor_ref")

    def __init__(self, fn: Callable[..., Any], token: object, executor: Any) -> None:
        import weakref

        self._fn = fn
        self._token = token
        self._executor_ref = weakref.ref(executor)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        events.consume(self._token)
        try:
            return self._fn(*args, **kwargs)
        finally:
            executor = self._executor_ref()
            if executor is not None:
                _tokens.publish(executor)

    def __repr__(self) -> str:
        return repr(self._fn)


_orig_submit = ThreadPoolExecutor.submit


def _submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return _orig_submit(self, _Task(fn, events.publish(), self), *args, **kwargs)


# --- Future -----------------------------------------------------------------------------

_orig_set_result = Future.set_result
_orig_set_exception = Future.set_exception
_orig_result = Future.result
_orig_exception = Future.exception
_orig_done = Future.done
_orig_add_done_callback = Future.add_done_callback


def _set_result(self: Any, result: Any) -> None:
    _tokens.publish(self)
    _orig_set_result(self, result)


def _set_exception(self: Any, exception: BaseException | None) -> None:
    _tokens.publish(self)
    _orig_set_exception(self, exception)


def _observed(future: Any) -> None:
    if future._state == _FINISHED:
        _tokens.consume(future)


def _result(self: Any, timeout: float | None = None) -> Any:
    try:
        return _orig_result(self, timeout)
    finally:
        _observed(self)


def _exception(self: Any, timeout: float | None = None) -> BaseException | None:
    exc = _orig_exception(self, timeout)
    _observed(self)
    return exc


def _done(self: Any) -> bool:
    flag = _orig_done(self)
    if flag:
        _observed(self)
    return flag


def _add_done_callback(self: Any, fn: Callable[[Any], object]) -> None:
    def callback(future: Any) -> object:
        _observed(future)
        return fn(future)

    _orig_add_done_callback(self, callback)


_orig_as_completed = futures_base.as_completed
_orig_wait = futures_base.wait


def _as_completed(fs: Any, timeout: float | None = None) -> Iterator[Any]:
    for future in _orig_as_completed(fs, timeout):
        _observed(future)
        yield future


def _wait(fs: Any, timeout: float | None = None, return_when: str = "ALL_COMPLETED") -> Any:
    result = _orig_wait(fs, timeout, return_when)
    for future in result.done:
        _observed(future)
    return result


# --- asyncio across threads ---------------------------------------------------------------

# asyncio and multiprocessing.pool are patched when the program imports them (see
# racecheck.instrument.postimport): most programs never do, and importing them costs
# ~45 ms at start.  The originals are bound then.
_orig_call_soon_threadsafe: Any = None


class _Handoff:
    """A callback scheduled from another thread: consumes the scheduler's token."""

    __slots__ = ("_fn", "_token")

    def __init__(self, fn: Callable[..., Any], token: object) -> None:
        self._fn = fn
        self._token = token

    def __call__(self, *args: Any) -> Any:
        events.consume(self._token)
        return self._fn(*args)

    def __repr__(self) -> str:
        return repr(self._fn)


def _call_soon_threadsafe(self: Any, callback: Any, *args: Any, context: Any = None) -> Any:
    return _orig_call_soon_threadsafe(
        self, _Handoff(callback, events.publish()), *args, context=context
    )


# --- multiprocessing.pool.ThreadPool results -------------------------------------------

_orig_ar_set: Any = None
_orig_mr_set: Any = None
_orig_im_set: Any = None
_orig_ar_get: Any = None
_orig_ar_wait: Any = None
_orig_ar_ready: Any = None
_orig_im_next: Any = None


def _ar_set(self: Any, *args: Any) -> None:
    _tokens.publish(self)
    _orig_ar_set(self, *args)


def _mr_set(self: Any, *args: Any) -> None:
    _tokens.publish(self)
    _orig_mr_set(self, *args)


def _im_set(self: Any, *args: Any) -> None:
    _tokens.publish(self)
    _orig_im_set(self, *args)


def _ar_get(self: Any, timeout: float | None = None) -> Any:
    try:
        return _orig_ar_get(self, timeout)
    finally:
        if _orig_ar_ready(self):
            _tokens.consume(self)


def _ar_wait(self: Any, timeout: float | None = None) -> None:
    _orig_ar_wait(self, timeout)
    if _orig_ar_ready(self):
        _tokens.consume(self)


def _ar_ready(self: Any) -> bool:
    flag = bool(_orig_ar_ready(self))
    if flag:
        _tokens.consume(self)
    return flag


def _im_next(self: Any, timeout: float | None = None) -> Any:
    item = _orig_im_next(self, timeout)
    _tokens.consume(self)
    return item


def install_futures() -> None:
    if _patcher:
        return
    p = _patcher
    p.patch(ThreadPoolExecutor, "submit", _submit)
    p.patch(Future, "set_result", _set_result)
    p.patch(Future, "set_exception", _set_exception)
    p.patch(Future, "result", _result)
    p.patch(Future, "exception", _exception)
    p.patch(Future, "done", _done)
    p.patch(Future, "add_done_callback", _add_done_callback)
    for module in (futures_base, concurrent.futures):
        p.patch(module, "as_completed", _as_completed)
        p.patch(module, "wait", _wait)
    postimport.when_imported("asyncio.base_events", _patch_asyncio)
    postimport.when_imported("multiprocessing.pool", _patch_mp_pool)


def _patch_asyncio(module: ModuleType) -> None:
    global _orig_call_soon_threadsafe
    loop: Any = module.BaseEventLoop
    _orig_call_soon_threadsafe = loop.call_soon_threadsafe
    _patcher.patch(loop, "call_soon_threadsafe", _call_soon_threadsafe)


def _patch_mp_pool(module: ModuleType) -> None:
    global _orig_ar_set, _orig_mr_set, _orig_im_set, _orig_ar_get, _orig_ar_wait
    global _orig_ar_ready, _orig_im_next
    ar: Any = module.ApplyResult
    mr: Any = module.MapResult
    im: Any = module.IMapIterator
    _orig_ar_set, _orig_mr_set, _orig_im_set = ar._set, mr._set, im._set
    _orig_ar_get, _orig_ar_wait, _orig_ar_ready = ar.get, ar.wait, ar.ready
    _orig_im_next = im.next
    p = _patcher
    p.patch(ar, "_set", _ar_set)
    p.patch(mr, "_set", _mr_set)
    p.patch(im, "_set", _im_set)
    p.patch(ar, "get", _ar_get)
    p.patch(ar, "wait", _ar_wait)
    p.patch(ar, "ready", _ar_ready)
    p.patch(im, "next", _im_next)
    p.patch(im, "__next__", _im_next)


def uninstall_futures() -> None:
    postimport.cancel(_patch_asyncio)
    postimport.cancel(_patch_mp_pool)
    _patcher.restore()
    _tokens.clear()


def executor_shut_down(executor: Any) -> None:
    """Called by the thread patches after ``shutdown(wait=True)`` returned: every task
    of ``executor`` is ordered before the caller."""
    _tokens.consume(executor)
