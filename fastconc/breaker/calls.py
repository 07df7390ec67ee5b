"""The ways a call goes through a breaker: call(), call_async(), the
decorator, and ``with`` / ``async with`` blocks (with the per-context stack
that pairs each block's exit with its enter)."""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from fastconc.breaker.machine import _StateMachine
from fastconc.breaker.state import _SUCCESS, _Phase

_P = ParamSpec("_P")
_R = TypeVar("_R")
_F = TypeVar("_F", bound=Callable[..., Any])
_B = TypeVar("_B", bound="_Calls")  # the breaker itself, returned by `with`

# Calls inside ``with breaker:`` / ``async with breaker:`` blocks: a linked stack
# of (breaker, token, below) in a context variable, so each thread and each
# asyncio task finds its own blocks; the breaker maps the token to the block's
# (phase, start).  (A threading.local stack would pair the wrong enter and exit
# when two tasks on one event loop both await inside a ``with breaker:``
# block.)  A block that exits in another context than it entered (before 3.12,
# asyncio.wait_for() runs each step of an async generator in a new task) finds
# no token there and settles the breaker's oldest open block instead: the
# pairing is then approximate, but no block, and so no trial slot, is lost.
_Entry = tuple["_Calls", object, Any]
_entered: contextvars.ContextVar[_Entry | None] = contextvars.ContextVar(
    "fastconc_breaker_entered", default=None)


class _Calls(_StateMachine):
    """The calling half of a CircuitBreaker."""

    __slots__ = ()

    def call(self, fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """``fn(*args, **kwargs)`` through the breaker: its result or exception,
        or :class:`CircuitOpenError` without calling it while the breaker rejects."""
        phase = self._fast_phase
        if phase is None:
            return self._call_guarded(fn, args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._failed(phase, exc, None)
            raise
        # _succeeded() inlined, with acquire/release rather than `with` (about
        # half the cost on CPython 3.11): this is the benchmarked hot path.
        lock = self._lock
        lock.acquire()
        try:
            if phase is self._quiet_phase:
                self._quiet_successes += 1
                return result
            changed = self._record_locked(phase, _SUCCESS, False)
        finally:
            lock.release()
        if changed:
            self._deliver()
        return result

    def _call_guarded(
        self, fn: Callable[..., _R], args: tuple[Any, ...], kwargs: dict[str, Any],
    ) -> _R:
        """call() when not CLOSED, or when calls are timed."""
        phase = self._admit_slow()
        start = None if self._slow_call_duration is None else self._clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._failed(phase, exc, start)
            raise
        self._succeeded(phase, start)
        return result

    async def call_async(
        self, fn: Callable[_P, Awaitable[_R]], /, *args: _P.args, **kwargs: _P.kwargs,
    ) -> _R:
        """``await fn(*args, **kwargs)`` through the breaker, as :meth:`call`."""
        phase = self._fast_phase
        if phase is None:
            phase = self._admit_slow()
        start = None if self._slow_call_duration is None else self._clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._failed(phase, exc, start)
            raise
        self._succeeded(phase, start)
        return result

    def __call__(self, fn: _F) -> _F:
        """Decorate a function (``def`` or ``async def``) so each call goes
        through the breaker.  Other callables that return awaitables are
        treated as plain functions: wrap those with :meth:`call_async`."""
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        if inspect.iscoroutinefunction(fn):
            call_async = self.call_async

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await call_async(fn, *args, **kwargs)

            return cast(_F, async_wrapper)

        breaker = self

        # call()'s body again rather than a call to it: one Python frame per
        # call instead of two is a third of the decorator's overhead.
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            phase = breaker._fast_phase
            if phase is None:
                return breaker._call_guarded(fn, args, kwargs)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                breaker._failed(phase, exc, None)
                raise
            lock = breaker._lock
            lock.acquire()
            try:
                if phase is breaker._quiet_phase:
                    breaker._quiet_successes += 1
                    return result
                changed = breaker._record_locked(phase, _SUCCESS, False)
            finally:
                lock.release()
            if changed:
                breaker._deliver()
            return result

        return cast(_F, wrapper)

    def __enter__(self: _B) -> _B:
        """Admit the block as one call (or raise CircuitOpenError)."""
        phase = self._fast_phase
        if phase is None:
            phase = self._admit_slow()
        start = None if self._slow_call_duration is None else self._clock()
        token = object()
        with self._lock:
            self._blocks[token] = (phase, start)
        _entered.set((self, token, _entered.get()))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Record the block's outcome from the exception leaving it (never
        suppressed)."""
        phase, start = self._pop_entry()
        if exc is None:
            self._succeeded(phase, start)
        else:
            self._failed(phase, exc, start)

    async def __aenter__(self: _B) -> _B:
        """As ``with``; the bookkeeping is per asyncio task."""
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """As ``with``."""
        self.__exit__(exc_type, exc, tb)

    def _pop_entry(self) -> tuple[_Phase, float | None]:
        token = self._unlink_token()
        with self._lock:
            block = self._blocks.pop(token, None)
            if block is None and self._blocks:
                block = self._blocks.pop(next(iter(self._blocks)))
        if block is None:
            raise RuntimeError(f"{self!r}: __exit__ without a matching __enter__")
        return block

    def _unlink_token(self) -> object:
        """This context's innermost block of this breaker, taken off the
        stack; None when this context entered none."""
        top = _entered.get()
        if top is not None and top[0] is self:
            _entered.set(top[2])
            return top[1]
        above: list[_Entry] = []
        node = top
        while node is not None and node[0] is not self:
            above.append(node)
            node = node[2]
        if node is None:
            return None
        # Blocks are normally exited innermost first (handled above); an
        # out-of-order exit (contextlib.ExitStack games) still unlinks its own.
        below = node[2]
        for entry in reversed(above):
            below = (entry[0], entry[1], below)
        _entered.set(below)
        return node[1]
