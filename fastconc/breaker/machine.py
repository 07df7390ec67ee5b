"""The breaker's state machine: admitting a call, recording how it ended,
moving between CLOSED, OPEN and HALF_OPEN (each change a new generation),
and delivering the changes to listeners outside the lock."""

from __future__ import annotations

import concurrent.futures
import math
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from fastconc._support.report import report_uncaught as _report
from fastconc.breaker.state import (
    _CLOSED,
    _FAILURE,
    _HALF_OPEN,
    _NEUTRAL,
    _OPEN,
    _SUCCESS,
    CircuitState,
    Listener,
    _Phase,
)
from fastconc.errors import CircuitOpenError

if TYPE_CHECKING:
    from fastconc.breaker.circuit import CircuitBreaker
    from fastconc.breaker.windows import _CountWindow, _TimeWindow


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, concurrent.futures.CancelledError):
        return True
    # Without asyncio imported, exc cannot be one of its errors (and the
    # breaker need not import it).
    aio = sys.modules.get("asyncio")
    return aio is not None and isinstance(exc, aio.CancelledError)


class _StateMachine:
    """The fields of a CircuitBreaker (its one subclass, through _Calls) and
    the bookkeeping that moves its state."""

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

    # Set up by CircuitBreaker.__init__.
    _name: str | None
    _failure_threshold: int
    _reset_timeout: float
    _half_open_max_calls: int
    _success_threshold: int
    _exclude_types: tuple[type[BaseException], ...]
    _exclude_predicates: tuple[Callable[[BaseException], bool], ...]
    _window: _CountWindow | _TimeWindow | None
    _failure_rate_threshold: float
    _minimum_calls: int
    _slow_call_duration: float | None
    _clock: Callable[[], float]
    _lock: threading.Lock
    _phase: _Phase
    _generation: int
    _opened_at: float
    _forced: bool
    _trials: int
    _trial_successes: int
    _consecutive: int
    _closed_calls: int
    _closed_failures: int
    _calls: int
    _successes: int
    _failures: int
    _rejections: int
    _slow_calls: int
    _opened: int
    _listeners: tuple[Listener, ...]
    _pending: deque[tuple[CircuitState, CircuitState]]
    _delivering: bool
    _fast_phase: _Phase | None
    _quiet_phase: _Phase | None
    _quiet_successes: int
    _quiet_base: int
    _blocks: dict[object, tuple[_Phase, float | None]]

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
        breaker = cast("CircuitBreaker", self)  # what listeners are given
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
                        listener(breaker, old, new)
                    except Exception as exc:
                        _report(exc)
        except BaseException:
            with self._lock:
                self._delivering = False
            raise
