"""Circuit breaker: stop calling something that keeps failing, try it again later.

A :class:`CircuitBreaker` wraps calls to a fallible dependency (a database, a
remote service).  While the calls work it is CLOSED and lets everything
through.  When they fail too often it trips OPEN and rejects calls at once with
:class:`~fastconc.errors.CircuitOpenError` instead of piling more load on the
broken dependency.  Once ``reset_timeout`` seconds have passed it goes
HALF_OPEN and lets a few trial calls through: enough successes close it again,
a failure opens it for another ``reset_timeout``::

    breaker = CircuitBreaker(failure_threshold=5, reset_timeout=30.0)

    @breaker
    def fetch(key): ...

    try:
        fetch("k")
    except CircuitOpenError as err:
        print(f"dependency down, next try in {err.remaining:.0f}s")

The breaker is written once in pure Python on the standard library: it uses no
fastconc primitive, so it behaves the same whichever backend is installed.  A
lock guards its bookkeeping only; the user's function always runs outside it, so
calls through one breaker run concurrently (on free-threaded CPython too).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import enum
import functools
import inspect
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from fastconc._args import int_arg, seconds_arg
from fastconc._report import report_uncaught as _report
from fastconc.errors import CircuitOpenError

__all__ = ["CircuitBreaker", "CircuitMetrics", "CircuitOpenError", "CircuitState", "Listener"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_F = TypeVar("_F", bound=Callable[..., Any])


class CircuitState(enum.Enum):
    """The state of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    """Calls go through; failures are counted."""
    OPEN = "open"
    """Calls are rejected with CircuitOpenError until ``reset_timeout`` has passed."""
    HALF_OPEN = "half_open"
    """A limited number of trial calls go through; the rest are rejected."""


_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN

# How a call ended, as far as the breaker is concerned.
_SUCCESS = 0
_FAILURE = 1
_NEUTRAL = 2  # cancelled or interrupted: says nothing about the dependency's health

# The state a call was admitted in, and the generation that identifies it: a
# new tuple at every state change, so an outcome belongs to the current state
# exactly when its phase *is* the breaker's phase.  One attribute holding both
# lets the lock-free fast path read them consistently.
_Phase = tuple[CircuitState, int]

Listener = Callable[["CircuitBreaker", CircuitState, CircuitState], object]
"""``fn(breaker, old_state, new_state)``, called after each state change."""

_Exclusion = type[BaseException] | Callable[[BaseException], bool]


@dataclass(frozen=True)
class CircuitMetrics:
    """A snapshot of a breaker's counters, from :meth:`CircuitBreaker.metrics`.

    ``calls`` counts calls that were let through and have finished (in flight
    ones are not counted yet); each is a success, a failure, or neither when it
    was cancelled or interrupted.  Excluded exceptions count as successes, slow
    calls as failures.  ``rejections`` counts calls refused with
    :class:`CircuitOpenError`.  These totals cover the breaker's whole life
    (:meth:`CircuitBreaker.reset` does not clear them).  ``consecutive_failures``
    and ``failure_rate`` are what the breaker decides with: the failure rate of
    the sliding window, or without a window of the calls since it last closed
    (or was created).
    """

    state: CircuitState
    calls: int
    successes: int
    failures: int
    rejections: int
    slow_calls: int
    consecutive_failures: int
    failure_rate: float
    opened: int


class _CountWindow:
    """The outcomes of the last ``size`` calls."""

    __slots__ = ("_outcomes", "failures")

    def __init__(self, size: int) -> None:
        self._outcomes: deque[bool] = deque(maxlen=size)
        self.failures = 0

    def add(self, failed: bool, now: float) -> None:
        outcomes = self._outcomes
        if len(outcomes) == outcomes.maxlen:
            self.failures -= outcomes[0]  # about to fall out
        outcomes.append(failed)
        self.failures += failed

    def counts(self, now: float) -> tuple[int, int]:
        return len(self._outcomes), self.failures

    def clear(self) -> None:
        self._outcomes.clear()
        self.failures = 0


class _TimeWindow:
    """The outcomes of the last ``duration`` seconds, in ``_BUCKETS`` buckets of
    ``duration / _BUCKETS`` seconds each: memory stays bounded whatever the call
    rate, at the price of a call leaving the window between
    ``duration * (1 - 1/_BUCKETS)`` and ``duration`` seconds after it was made."""

    _BUCKETS = 100

    __slots__ = ("_width", "_buckets", "calls", "failures")

    def __init__(self, duration: float) -> None:
        self._width = duration / self._BUCKETS
        self._buckets: deque[list[int]] = deque()  # [bucket index, calls, failures]
        self.calls = 0
        self.failures = 0

    def _expire(self, index: int) -> None:
        buckets = self._buckets
        oldest = index - self._BUCKETS  # this bucket and older are out
        while buckets and buckets[0][0] <= oldest:
            _, calls, failures = buckets.popleft()
            self.calls -= calls
            self.failures -= failures

    def add(self, failed: bool, now: float) -> None:
        index = math.floor(now / self._width)
        self._expire(index)
        buckets = self._buckets
        # >= rather than ==: an injected clock that steps back must not
        # reorder the buckets, so such a call joins the newest one.
        if buckets and buckets[-1][0] >= index:
            bucket = buckets[-1]
        else:
            bucket = [index, 0, 0]
            buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += failed
        self.calls += 1
        self.failures += failed

    def counts(self, now: float) -> tuple[int, int]:
        self._expire(math.floor(now / self._width))
        return self.calls, self.failures

    def clear(self) -> None:
        self._buckets.clear()
        self.calls = 0
        self.failures = 0


# Calls inside ``with breaker:`` / ``async with breaker:`` blocks: a linked stack
# of (breaker, token, below) in a context variable, so each thread and each
# asyncio task finds its own blocks; the breaker maps the token to the block's
# (phase, start).  (A threading.local stack would pair the wrong enter and exit
# when two tasks on one event loop both await inside a ``with breaker:``
# block.)  A block that exits in another context than it entered (before 3.12,
# asyncio.wait_for() runs each step of an async generator in a new task) finds
# no token there and settles the breaker's oldest open block instead: the
# pairing is then approximate, but no block, and so no trial slot, is lost.
_Entry = tuple["CircuitBreaker", object, Any]
_entered: contextvars.ContextVar[_Entry | None] = contextvars.ContextVar(
    "fastconc_breaker_entered", default=None)


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, concurrent.futures.CancelledError):
        return True
    # Without asyncio imported, exc cannot be one of its errors (and the
    # breaker need not import it).
    aio = sys.modules.get("asyncio")
    return aio is not None and isinstance(exc, aio.CancelledError)


class CircuitBreaker:
    """Guard calls to a fallible dependency; see the module docstring.

    Use it as ``breaker.call(fn, *args, **kwargs)`` (``await
    breaker.call_async(...)`` for coroutine functions), as a decorator on a
    ``def`` or an ``async def``, or as ``with breaker:`` / ``async with
    breaker:`` around a block.  While the breaker rejects calls these raise
    :class:`CircuitOpenError` with ``remaining`` (seconds until a trial call is
    let through: 0.0 when HALF_OPEN has all its trials running, ``math.inf``
    after :meth:`force_open`) and ``breaker`` set on it.

    When it trips:

    * Without a window (the default) it opens after ``failure_threshold``
      failures in a row; a success resets the run.
    * With ``window_size=N`` (the last N calls) or ``window_duration=T`` (the
      calls of the last T seconds, by ``clock``; a call leaves this window
      between 0.99 T and T after it was made) it opens when the window holds at
      least ``minimum_calls`` calls (at most N with a count window) and their
      failure rate is at least ``failure_rate_threshold``.  ``failure_threshold``
      is then unused.  The window only sees calls made while CLOSED and starts
      empty each time the breaker closes.

    What counts as a failure: any :class:`Exception` the call raises, unless it
    matches ``exclude`` (exception types, or predicates ``exc -> bool``): an
    excluded exception still propagates but counts as a success.  With
    ``slow_call_duration`` set, a call that takes longer than that by ``clock``
    counts as a failure even though it returned (its result is still returned).
    Cancellation (``asyncio.CancelledError``, ``concurrent.futures.CancelledError``)
    and the other exceptions that are not :class:`Exception` subclasses
    (``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``) are neither: they
    propagate, count in ``calls`` only, and give a trial's slot back.

    OPEN becomes HALF_OPEN lazily, on the first call, :attr:`state` read or
    :meth:`metrics` after ``reset_timeout`` (no timer thread).  HALF_OPEN lets
    exactly ``half_open_max_calls`` trial calls through (a trial that ends
    neutrally hands its slot to the next caller); ``success_threshold`` trial
    successes close the breaker, so it must not exceed ``half_open_max_calls``;
    one trial failure opens it again for a fresh ``reset_timeout``.

    Every state change (and every :meth:`reset`) starts a new generation.  A
    call finishing after the breaker moved on (a slow call admitted while
    CLOSED that fails once the breaker is already OPEN, a trial that succeeds
    after another trial re-opened it) is counted in :meth:`metrics` but does
    not move the state.

    Listeners are called as ``fn(breaker, old_state, new_state)`` after each
    change, outside the lock, one at a time and in the order of the changes (by
    whichever thread is delivering changes at that moment).  An exception in a
    listener is reported through :func:`threading.excepthook` and does not
    affect the breaker.
    """

    __slots__ = (
        "__weakref__",
        "_name", "_failure_threshold", "_reset_timeout", "_half_open_max_calls",
        "_success_threshold", "_exclude_types", "_exclude_predicates", "_window",
        "_failure_rate_threshold", "_minimum_calls", "_slow_call_duration", "_clock",
        "_lock", "_phase", "_generation", "_opened_at", "_forced", "_trials",
        "_trial_successes", "_consecutive", "_closed_calls", "_closed_failures",
        "_calls", "_successes", "_failures", "_rejections", "_slow_calls", "_opened",
        "_listeners", "_pending", "_delivering", "_fast_phase", "_quiet_phase",
        "_quiet_successes", "_quiet_base", "_blocks",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        *,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        exclude: Iterable[_Exclusion] = (),
        window_size: int | None = None,
        window_duration: float | None = None,
        failure_rate_threshold: float = 0.5,
        minimum_calls: int = 10,
        slow_call_duration: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self._failure_threshold = int_arg(failure_threshold, "failure_threshold", 1)
        self._reset_timeout = seconds_arg(reset_timeout, "reset_timeout", zero_ok=True)
        self._half_open_max_calls = int_arg(half_open_max_calls, "half_open_max_calls", 1)
        self._success_threshold = int_arg(success_threshold, "success_threshold", 1)
        if success_threshold > half_open_max_calls:
            # Only half_open_max_calls trials ever run per HALF_OPEN period.
            raise ValueError(
                f"success_threshold ({success_threshold}) must be <= half_open_max_calls "
                f"({half_open_max_calls}), or the breaker could never close")
        self._exclude_types, self._exclude_predicates = self._check_exclude(exclude)

        if isinstance(failure_rate_threshold, bool) or not isinstance(
                failure_rate_threshold, (int, float)):
            raise TypeError("failure_rate_threshold must be a number, "
                            f"not {type(failure_rate_threshold).__name__}")
        if not 0 < failure_rate_threshold <= 1:
            raise ValueError(
                f"failure_rate_threshold must be in (0, 1], got {failure_rate_threshold!r}")
        self._failure_rate_threshold = float(failure_rate_threshold)
        self._minimum_calls = int_arg(minimum_calls, "minimum_calls", 1)
        self._window: _CountWindow | _TimeWindow | None = None
        if window_size is not None and window_duration is not None:
            raise ValueError("window_size and window_duration are mutually exclusive")
        if window_size is not None:
            self._window = _CountWindow(int_arg(window_size, "window_size", 1))
            # A full window is all the evidence a count window will ever hold.
            self._minimum_calls = min(self._minimum_calls, window_size)
        elif window_duration is not None:
            duration = seconds_arg(window_duration, "window_duration", zero_ok=False,
                                   inf_ok=False)
            if duration < 1e-6:
                # Its buckets would be so narrow that clock / width overflows.
                raise ValueError(f"window_duration must be >= 1e-06 s, got {window_duration!r}")
            self._window = _TimeWindow(duration)
        self._slow_call_duration = None if slow_call_duration is None else seconds_arg(
            slow_call_duration, "slow_call_duration", zero_ok=False)

        if not callable(clock):
            raise TypeError(f"clock must be callable, not {type(clock).__name__}")
        self._clock = clock
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        self._name = name
        if isinstance(listeners, (str, bytes)) or not isinstance(listeners, Iterable):
            raise TypeError(f"listeners must be an iterable of callables, "
                            f"not {type(listeners).__name__}")
        listeners = tuple(listeners)
        for listener in listeners:
            if not callable(listener):
                raise TypeError(f"listeners must hold callables, got {listener!r}")
        self._listeners: tuple[Listener, ...] = listeners

        # threading.Lock, not RLock: nothing user-supplied runs under it except
        # the clock, which must neither raise nor call back into the breaker.
        self._lock = threading.Lock()
        self._generation = 0
        self._phase: _Phase = (_CLOSED, 0)
        # The current phase while a call may skip the locked admission
        # (CLOSED, calls not timed), else None.
        self._fast_phase: _Phase | None = (
            self._phase if self._slow_call_duration is None else None)
        # The current phase while a success changes nothing but a counter
        # (CLOSED, no window, no failure since the last success), else None.
        # Such successes are counted in _quiet_successes alone.
        self._quiet_phase: _Phase | None = self._phase if self._window is None else None
        self._quiet_successes = 0
        self._quiet_base = 0  # _quiet_successes when the breaker last closed
        self._opened_at = 0.0
        self._forced = False
        self._trials = 0  # HALF_OPEN slots taken
        self._trial_successes = 0
        self._consecutive = 0
        self._closed_calls = 0  # since the last close, for failure_rate without a window
        self._closed_failures = 0
        self._calls = 0
        self._successes = 0
        self._failures = 0
        self._rejections = 0
        self._slow_calls = 0
        self._opened = 0
        self._pending: deque[tuple[CircuitState, CircuitState]] = deque()
        # Open `with` blocks: token -> (phase, start); see _entered.
        self._blocks: dict[object, tuple[_Phase, float | None]] = {}
        self._delivering = False

    @staticmethod
    def _check_exclude(
        exclude: Iterable[_Exclusion],
    ) -> tuple[tuple[type[BaseException], ...], tuple[Callable[[BaseException], bool], ...]]:
        if isinstance(exclude, type):
            exclude = (exclude,)  # exclude=ValueError: unambiguous, so accepted
        if isinstance(exclude, (str, bytes)) or not isinstance(exclude, Iterable):
            raise TypeError("exclude must be an iterable of exception types and/or "
                            f"predicates, not {type(exclude).__name__}")
        types: list[type[BaseException]] = []
        predicates: list[Callable[[BaseException], bool]] = []
        for item in exclude:
            if isinstance(item, type):
                if not issubclass(item, BaseException):
                    raise TypeError(f"exclude: {item.__name__} is not an exception type")
                types.append(item)
            elif callable(item):
                predicates.append(item)
            else:
                raise TypeError(f"exclude must hold exception types or predicates, got {item!r}")
        return tuple(types), tuple(predicates)

    # -- observing ------------------------------------------------------------

    @property
    def name(self) -> str | None:
        """The name given to the constructor."""
        return self._name

    @property
    def failure_threshold(self) -> int:
        """Failures in a row that open the breaker (without a window)."""
        return self._failure_threshold

    @property
    def reset_timeout(self) -> float:
        """Seconds the breaker stays OPEN before it lets a trial call through."""
        return self._reset_timeout

    @property
    def state(self) -> CircuitState:
        """The current state; reading it moves OPEN to HALF_OPEN once
        ``reset_timeout`` has passed."""
        state = self._phase[0]
        if state is not _OPEN:
            return state
        with self._lock:
            changed = self._try_half_open_locked()
            state = self._phase[0]
        if changed:
            self._deliver()
        return state

    def metrics(self) -> CircuitMetrics:
        """A consistent snapshot of the counters (see :class:`CircuitMetrics`)."""
        with self._lock:
            changed = self._try_half_open_locked()
            quiet = self._quiet_successes
            if self._window is None:
                calls = self._closed_calls + quiet - self._quiet_base
                failures = self._closed_failures
            else:
                calls, failures = self._window.counts(self._clock())
            snapshot = CircuitMetrics(
                state=self._phase[0],
                calls=self._calls + quiet,
                successes=self._successes + quiet,
                failures=self._failures,
                rejections=self._rejections,
                slow_calls=self._slow_calls,
                consecutive_failures=self._consecutive,
                failure_rate=failures / calls if calls else 0.0,
                opened=self._opened,
            )
        if changed:
            self._deliver()
        return snapshot

    def __repr__(self) -> str:
        return f"<CircuitBreaker name={self._name!r} state={self.state.value}>"

    # -- controlling ----------------------------------------------------------

    def reset(self) -> None:
        """Close the breaker now, with the failure counters and the window
        cleared (the totals of :meth:`metrics` are kept).  Calls still running
        from before no longer count towards the state."""
        with self._lock:
            self._forced = False
            self._set_state_locked(_CLOSED)
        self._deliver()

    def force_open(self) -> None:
        """Open the breaker and keep it open, rejecting every call with
        ``remaining == math.inf``, until :meth:`reset`."""
        with self._lock:
            self._forced = True
            if self._phase[0] is not _OPEN:
                self._set_state_locked(_OPEN)
        self._deliver()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(breaker, old_state, new_state)`` after each state change."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, not {type(listener).__name__}")
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; ValueError if it was not added."""
        with self._lock:
            listeners = list(self._listeners)
            try:
                listeners.remove(listener)
            except ValueError:
                raise ValueError(f"listener {listener!r} is not registered") from None
            self._listeners = tuple(listeners)

    # -- calling --------------------------------------------------------------

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

    def __enter__(self) -> CircuitBreaker:
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

    async def __aenter__(self) -> CircuitBreaker:
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

    # -- bookkeeping ----------------------------------------------------------

    def _admit_slow(self) -> _Phase:
        """Admission off the fast path: the trial slot is taken under the lock
        so exactly half_open_max_calls trials get in."""
        phase = self._phase
        if phase[0] is _CLOSED:
            return phase  # timed calls: CLOSED admits without the lock all the same
        with self._lock:
            changed = self._try_half_open_locked()
            phase = self._phase
            state = phase[0]
            remaining = 0.0
            if state is _CLOSED:
                admitted = True
            elif state is _HALF_OPEN and self._trials < self._half_open_max_calls:
                self._trials += 1
                admitted = True
            else:
                admitted = False
                if state is _OPEN:
                    remaining = self._remaining_locked()
                self._rejections += 1
        if changed:
            try:
                self._deliver()
            except BaseException:
                if admitted:  # the call will not run: give its slot back
                    with self._lock:
                        self._record_locked(phase, _NEUTRAL, False)
                raise
        if not admitted:
            raise self._open_error(state, remaining)
        return phase

    def _remaining_locked(self) -> float:
        if self._forced:
            return math.inf
        return max(0.0, self._opened_at + self._reset_timeout - self._clock())

    def _try_half_open_locked(self) -> bool:
        if (self._phase[0] is _OPEN and not self._forced
                and self._clock() - self._opened_at >= self._reset_timeout):
            self._set_state_locked(_HALF_OPEN)
            return True
        return False

    def _open_error(self, state: CircuitState, remaining: float) -> CircuitOpenError:
        who = "circuit breaker" if self._name is None else f"circuit breaker {self._name!r}"
        if state is _HALF_OPEN:
            msg = (f"{who} is half-open and its {self._half_open_max_calls} trial "
                   "call(s) are taken")
        elif math.isinf(remaining):
            msg = f"{who} is open until reset()"
        else:
            msg = f"{who} is open; next trial call in {remaining:.3g}s"
        err = CircuitOpenError(msg)
        err.remaining = remaining
        err.breaker = self
        return err

    def _succeeded(self, phase: _Phase, start: float | None) -> None:
        slow = start is not None and self._is_slow(start)
        with self._lock:
            if phase is self._quiet_phase and not slow:
                self._quiet_successes += 1
                return
            changed = self._record_locked(phase, _FAILURE if slow else _SUCCESS, slow)
        if changed:
            self._deliver()

    def _failed(self, phase: _Phase, exc: BaseException, start: float | None) -> None:
        try:
            outcome = self._classify(exc)
            slow = False
            if start is not None and (outcome != _NEUTRAL or _is_cancellation(exc)):
                # A call cancelled by an outer timeout after running too long
                # is a slow call: else a hanging dependency behind
                # asyncio.wait_for() would never trip the breaker.
                slow = self._is_slow(start)
                if slow:
                    outcome = _FAILURE
        except BaseException:
            # Interrupted while classifying (a predicate's Ctrl-C): still
            # record an outcome, or a trial's slot would be lost for good.
            with self._lock:
                self._record_locked(phase, _NEUTRAL, False)
            raise
        with self._lock:
            changed = self._record_locked(phase, outcome, slow)
        if changed:
            self._deliver()

    def _is_slow(self, start: float) -> bool:
        limit = self._slow_call_duration
        return limit is not None and self._clock() - start > limit

    def _classify(self, exc: BaseException) -> int:
        # Outside the lock: predicates are user code.
        if not isinstance(exc, Exception) or isinstance(exc, concurrent.futures.CancelledError):
            return _NEUTRAL
        if self._exclude_types and isinstance(exc, self._exclude_types):
            return _SUCCESS
        for predicate in self._exclude_predicates:
            try:
                if predicate(exc):
                    return _SUCCESS
            except Exception as err:  # a broken predicate excludes nothing
                _report(err)
        return _FAILURE

    def _record_locked(self, phase: _Phase, outcome: int, slow: bool) -> bool:
        """Count one finished call; move the state if it belongs to the
        current generation.  True when listeners have a change to hear."""
        self._calls += 1
        current = phase is self._phase
        state = phase[0]
        if outcome == _NEUTRAL:
            if current and state is _HALF_OPEN:
                self._trials -= 1  # the slot goes to the next caller
            return False
        failed = outcome == _FAILURE
        if failed:
            self._failures += 1
        else:
            self._successes += 1
        if slow:
            self._slow_calls += 1
        if not current:
            return False
        if state is _CLOSED:
            self._closed_calls += 1
            window = self._window
            if failed:
                self._closed_failures += 1
                self._consecutive += 1
                self._quiet_phase = None
            else:
                self._consecutive = 0
                if window is None:
                    self._quiet_phase = phase
            if window is None:
                trip = failed and self._consecutive >= self._failure_threshold
            else:
                now = self._clock()
                window.add(failed, now)
                calls, failures = window.counts(now)
                trip = (calls >= self._minimum_calls
                        and failures / calls >= self._failure_rate_threshold)
            if trip:
                self._set_state_locked(_OPEN)
                return True
        elif state is _HALF_OPEN:
            if failed:
                self._consecutive += 1
                self._set_state_locked(_OPEN)
                return True
            self._consecutive = 0
            self._trial_successes += 1
            if self._trial_successes >= self._success_threshold:
                self._set_state_locked(_CLOSED)
                return True
        return False

    def _set_state_locked(self, new: CircuitState) -> None:
        old = self._phase[0]
        self._generation += 1
        phase = self._phase = (new, self._generation)
        self._fast_phase = self._quiet_phase = None
        if new is _OPEN:
            self._opened_at = self._clock()
            self._opened += 1
        elif new is _HALF_OPEN:
            self._trials = 0
            self._trial_successes = 0
        else:
            self._consecutive = 0
            self._closed_calls = 0
            self._closed_failures = 0
            self._quiet_base = self._quiet_successes
            if self._slow_call_duration is None:
                self._fast_phase = phase
            if self._window is None:
                self._quiet_phase = phase
            else:
                self._window.clear()
        if old is not new:
            self._pending.append((old, new))

    def _deliver(self) -> None:
        """Call the listeners for every pending change, outside the lock.  One
        thread delivers at a time, so listeners hear changes in order; a
        change made meanwhile (even by a listener) is picked up by the
        delivering thread before it stops."""
        with self._lock:
            if self._delivering or not self._pending:
                return
            self._delivering = True
        try:
            while True:
                with self._lock:
                    if not self._pending:
                        self._delivering = False
                        return
                    old, new = self._pending.popleft()
                    listeners = self._listeners
                for listener in listeners:
                    try:
                        listener(self, old, new)
                    except Exception as exc:
                        _report(exc)
        except BaseException:
            with self._lock:
                self._delivering = False
            raise
