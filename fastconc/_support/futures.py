"""PoolFuture, the future WorkStealingPool's submit() returns, and how the
pool settles futures whatever fails: written once for both backends.

A real :class:`concurrent.futures.Future` (``wait``, ``as_completed`` and
``asyncio.wrap_future`` work unchanged) that is cheaper to make, and that
lets a worker of its own pool help instead of blocking (``_help``).
"""

from __future__ import annotations

import sys
import threading
import time
from _thread import RLock as _RLock
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import _base as _futures_base
from typing import Any, TypeVar

from fastconc._support.core import PoolCore
from fastconc._support.report import unraisable
from fastconc._support.spares import start_spare

__all__ = ["PoolFuture", "abandon_future", "fresh_error", "help_limit", "settle_failed"]

T = TypeVar("T")

_PENDING = _futures_base.PENDING
_RUNNING = _futures_base.RUNNING
_CANCELLED = _futures_base.CANCELLED
_CANCELLED_AND_NOTIFIED = _futures_base.CANCELLED_AND_NOTIFIED
_FINISHED = _futures_base.FINISHED
_CANCELLED_STATES = (_CANCELLED, _CANCELLED_AND_NOTIFIED)
_DONE_STATES = (_CANCELLED, _CANCELLED_AND_NOTIFIED, _FINISHED)


class PoolFuture(Future[T]):
    """A :class:`concurrent.futures.Future` that knows its pool.

    * A worker of that pool waiting in :meth:`result` or :meth:`exception`
      runs other queued tasks meanwhile, so fork-join recursion never starves
      the pool.
    * It is cheaper than a plain Future: ``Future.__init__`` builds a
      :class:`threading.Condition` (a third of a ``submit()``).  This one keeps
      Future's fields and protocol (``concurrent.futures.wait``,
      ``as_completed``, ``asyncio.wrap_future`` work unchanged) with a bare
      ``RLock`` as ``_condition``, and builds the condition variable only when
      a thread actually blocks in ``result()``/``exception()``.  Every method
      that would notify that condition is overridden below.

    What a pool core may use of it, and nothing else (never Future's own
    fields such as ``_state``): ``_task`` (the core's queued task that will
    settle it, set and cleared by the core), ``_claim()`` (the step before
    running that task), ``done()`` (lock-free) and ``_wake_when_done()``.
    """

    # Class-level defaults: Future's fields that most futures never change
    # cost nothing per instance until written.
    _result: Any = None
    _exception: BaseException | None = None
    _done_cv: threading.Condition | None = None
    _waiter_list: list[Any] | None = None
    _callback_list: list[Callable[[Future[Any]], object]] | None = None
    # The core's queued task that will settle this future, until one of the
    # two paths that may run it (a worker popping it, or a worker waiting on
    # this future: see help_until) claims it with _claim().  Cleared then, so
    # the task <-> future cycle never outlives the claim.
    _task: object = None
    # Set by _wake_when_done: the core's wake-up callback is registered.
    _watched: bool = False

    def __init__(self, core: PoolCore) -> None:
        # Future.__init__ is skipped on purpose (see the class docstring);
        # tests/test_pool.py checks every field it sets is readable here.
        self._condition: Any = _RLock()
        self._state = _PENDING
        self._core = core

    # Future's _waiters and _done_callbacks lists, made on first use: most
    # futures are never waited on by wait()/as_completed() nor given a
    # callback.  Both are only touched with _condition held (wait() and
    # as_completed() hold it too), except _invoke_callbacks, which runs once
    # the state is final and no callback can be added any more.
    @property
    def _waiters(self) -> list[Any]:
        if self._waiter_list is None:
            self._waiter_list = []
        return self._waiter_list

    @_waiters.setter
    def _waiters(self, value: list[Any]) -> None:
        self._waiter_list = value

    @property
    def _done_callbacks(self) -> list[Callable[[Future[Any]], object]]:
        if self._callback_list is None:
            self._callback_list = []
        return self._callback_list

    @_done_callbacks.setter
    def _done_callbacks(self, value: list[Callable[[Future[Any]], object]]) -> None:
        self._callback_list = value

    def _invoke_callbacks(self) -> None:
        """Every callback runs, whatever an earlier one raised: an Exception
        is logged as Future does; the first other BaseException
        (KeyboardInterrupt, SystemExit...) is re-raised once all have run, so
        a wake-up callback after a failing one is never skipped."""
        callbacks = self._callback_list
        if not callbacks:
            return
        escaped: BaseException | None = None
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                _futures_base.LOGGER.exception("exception calling callback for %r", self)
            except BaseException as exc:
                if escaped is None:
                    escaped = exc
        if escaped is not None:
            try:
                raise escaped
            finally:
                escaped = None

    # -- what the pool cores use (besides _task and _claim) ----------------

    def done(self) -> bool:
        """Whether the future has settled (result, exception or cancelled).

        Lock-free, unlike Future.done(): one read of a state that only moves
        forward, which the cores' help loops poll between tasks."""
        return self._state in _DONE_STATES

    def _wake_when_done(self, callback: Callable[[Future[Any]], object]) -> None:
        """Call ``callback(self)`` once this future settles (at once if it
        has).  Registered once however often a core asks: a worker whose
        wait timed out and that waits again adds no second callback."""
        with self._condition:
            if self._watched:
                return
            self._watched = True
        self.add_done_callback(callback)

    def _claim(self) -> bool:
        """The pool's step before it runs this future's task (by then the
        pool owns the task: see the cores' task tokens): PENDING -> RUNNING
        (True), CANCELLED -> CANCELLED_AND_NOTIFIED (False, as
        set_running_or_notify_cancel), and False in any other state (settled
        already, e.g. by set_result from outside): the task is not run."""
        with self._condition:
            self._task = None
            state = self._state
            if state == _PENDING:
                self._state = _RUNNING
                return True
            if state == _CANCELLED:
                self._state = _CANCELLED_AND_NOTIFIED
                for waiter in self._waiter_list or ():
                    waiter.add_cancelled(self)
            return False

    # -- blocking -------------------------------------------------------

    def _help(self, timeout: float | None) -> float | None:
        """In one of the pool's threads: run other tasks until done or out of
        time; past the help-depth limit, block with compensation (_block).
        Then the caller answers without waiting."""
        core = self._core
        if not core.owns_current_thread():
            return timeout
        if timeout is not None and timeout < 0:
            timeout = 0
        end = None if timeout is None else time.monotonic() + timeout
        if core.help_until(self, timeout):
            return 0
        # Past the help-depth limit: block, for what is left of the timeout.
        remaining = None if end is None else end - time.monotonic()
        if remaining is None or remaining > 0:
            _block(core, self, remaining)
        return 0

    def _wait(self, timeout: float | None) -> None:
        """Lock held and not done: sleep until done or timeout."""
        if timeout is not None and timeout <= 0:
            return
        if self._done_cv is None:
            self._done_cv = threading.Condition(self._condition)
        self._done_cv.wait(timeout)

    def _notify(self) -> None:
        """Lock held: wake the threads blocked in result()/exception()."""
        if self._done_cv is not None:
            self._done_cv.notify_all()

    def result(self, timeout: float | None = None) -> T:
        if self._state not in _DONE_STATES:
            timeout = self._help(timeout)
        try:
            with self._condition:
                if self._state not in _DONE_STATES:
                    self._wait(timeout)
                if self._state == _FINISHED:
                    if self._exception:  # truthiness, as Future.result tests it
                        raise self._exception
                    return self._result  # type: ignore[no-any-return]
                if self._state in _CANCELLED_STATES:
                    raise _futures_base.CancelledError("the task was cancelled")
                raise _futures_base.TimeoutError("the task did not finish within the timeout")
        finally:
            # Break a reference cycle with the exception in self._exception.
            self = None  # type: ignore[assignment]  # noqa: PLW0642

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state not in _DONE_STATES:
            timeout = self._help(timeout)
        with self._condition:
            if self._state not in _DONE_STATES:
                self._wait(timeout)
            if self._state == _FINISHED:
                return self._exception
            if self._state in _CANCELLED_STATES:
                raise _futures_base.CancelledError("the task was cancelled")
            raise _futures_base.TimeoutError("the task did not finish within the timeout")

    # -- state changes (each notifies the lazily made condition) --------

    def cancel(self) -> bool:
        with self._condition:
            if self._state in (_RUNNING, _FINISHED):
                return False
            if self._state in _CANCELLED_STATES:
                return True
            self._state = _CANCELLED
            self._notify()
        self._invoke_callbacks()
        return True

    def set_result(self, result: T) -> None:
        with self._condition:
            if self._state in _DONE_STATES:
                raise _futures_base.InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._state = _FINISHED
            for waiter in self._waiter_list or ():
                waiter.add_result(self)
            self._notify()
        self._invoke_callbacks()

    def set_exception(self, exception: BaseException | None) -> None:
        with self._condition:
            if self._state in _DONE_STATES:
                raise _futures_base.InvalidStateError(f"{self._state}: {self!r}")
            self._exception = exception
            self._state = _FINISHED
            for waiter in self._waiter_list or ():
                waiter.add_exception(self)
            self._notify()
        self._invoke_callbacks()


def help_limit() -> int:
    """How many unrelated tasks a waiting worker may run nested on its own
    stack (see help_until in either core): well below the recursion limit,
    which each nesting level costs a few frames of."""
    return min(32, sys.getrecursionlimit() // 16)


def _block(core: PoolCore, future: PoolFuture[Any], timeout: float | None) -> None:
    """A pool thread must block on future (helping is exhausted): tell the
    core, which keeps max_workers threads unblocked by starting a spare
    thread when it has none to spare (up to its max_spares; beyond, this
    simply blocks), then wait."""
    spawn = core.begin_block()
    try:
        if spawn:
            start_spare(core)
        with future._condition:
            if future._state not in _DONE_STATES:
                future._wait(timeout)
    finally:
        core.end_block()


def settle_failed(future: Future[Any], exc: BaseException) -> None:
    """The pool's task wrapper raised exc (its own machinery failed, e.g. a
    RecursionError or MemoryError in set_result): settle future with exc
    unless it is already settled, without calling any method of it that may
    have been the one that failed.  Raises only when it could not settle
    (the caller then retries later, from a shallower stack)."""
    if not isinstance(future, PoolFuture):
        with future._condition:
            if future.done():
                return
            if future._state == _PENDING:
                future._state = _RUNNING
        future.set_exception(exc)
        return
    with future._condition:
        if future._state in _DONE_STATES:
            return
        future._task = None
        future._exception = exc
        future._state = _FINISHED
        for waiter in future._waiter_list or ():
            waiter.add_exception(future)
        future._notify()
    try:
        future._invoke_callbacks()
    except BaseException as callback_exc:  # settled: a callback's error is only reported
        unraisable(callback_exc, "calling a done-callback of a WorkStealingPool future")


def abandon_future(future: Future[Any], error: BaseException | None) -> None:
    """A queued task will not run: cancel its future, or fail it with error."""
    # A PoolFuture's task may have been claimed already by a waiter that ran
    # it as its dependency (then this queued copy has nothing to settle).
    claim = future._claim if isinstance(future, PoolFuture) else future.set_running_or_notify_cancel
    try:
        if error is None:
            # Also tell concurrent.futures.wait()/as_completed() waiters, which
            # count a future only once it is CANCELLED_AND_NOTIFIED (the
            # stdlib pool skips this step, so wait() never sees its cancelled
            # futures finish).
            if future.cancel():
                claim()
        elif claim():
            future.set_exception(fresh_error(error))
    except BaseException as exc:
        unraisable(exc, "closing a WorkStealingPool")


def fresh_error(error: BaseException) -> BaseException:
    """A new instance each time: re-raising one would pile up tracebacks."""
    return type(error)(*error.args)
