"""CircuitBreaker, the public class: its options (checked), what can be
observed (state, metrics) and controlled (reset, force_open, listeners)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from fastconc._support.args import int_arg, seconds_arg
from fastconc.breaker.calls import _Calls
from fastconc.breaker.state import (
    _CLOSED,
    _OPEN,
    CircuitMetrics,
    CircuitState,
    Listener,
    _Phase,
)
from fastconc.breaker.windows import _CountWindow, _TimeWindow

_Exclusion = type[BaseException] | Callable[[BaseException], bool]


class CircuitBreaker(_Calls):
    """Guard calls to a fallible dependency; see the docstring of
    :mod:`fastconc.breaker`.

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

    __slots__ = ()  # the fields and their slots are _StateMachine's

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
