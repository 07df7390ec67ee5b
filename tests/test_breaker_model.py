"""CircuitBreaker: a hypothesis state machine against a plain model, and the sequences
it found.
Shared helpers: tests/breakerkit.py."""

from __future__ import annotations

import asyncio
import math
import os
from collections import deque

import pytest
from breakerkit import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    FakeClock,
    fail,
    ok,
    raise_,
    trip,
)
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fastconc.breaker import CircuitBreaker, CircuitMetrics, CircuitOpenError, CircuitState

# -- hypothesis: the breaker against a plain model --------------------------------

EXAMPLES = int(os.environ.get("FASTCONC_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=40, deadline=None)
WINDOW_SECONDS = 12.5


class BreakerMachine(RuleBasedStateMachine):
    """Sequential calls on a fake clock that moves in whole seconds.  The time
    window is 12.5 s, so its 100 buckets are 0.125 s wide (exact in binary)
    and a call made at second t is in the window while ``now - t < 12.5``."""

    @initialize(
        threshold=st.integers(1, 3),
        timeout=st.integers(0, 10),
        max_calls=st.integers(1, 3),
        success_threshold=st.integers(1, 3),
        window=st.sampled_from([None, "count", "time"]),
        size=st.integers(1, 6),
        minimum=st.integers(1, 6),
        rate=st.sampled_from([0.25, 0.5, 1.0]),
    )
    def create(self, threshold, timeout, max_calls, success_threshold, window, size,
               minimum, rate):
        self.clock = FakeClock(1000)
        self.heard: list[tuple[CircuitState, CircuitState]] = []
        success_threshold = min(success_threshold, max_calls)
        options = {}
        if window == "count":
            options = {"window_size": size, "minimum_calls": minimum}
        elif window == "time":
            options = {"window_duration": WINDOW_SECONDS, "minimum_calls": minimum}
        self.breaker = CircuitBreaker(
            threshold, timeout, half_open_max_calls=max_calls,
            success_threshold=success_threshold, exclude=(KeyError,),
            failure_rate_threshold=rate, clock=self.clock,
            listeners=[lambda b, old, new: self.heard.append((old, new))], **options)
        self.threshold, self.timeout, self.max_calls = threshold, timeout, max_calls
        self.success_threshold, self.rate, self.window_kind = success_threshold, rate, window
        self.minimum = min(minimum, size) if window == "count" else minimum
        self.size = size
        # the model
        self.state = CLOSED
        self.transitions: list[tuple[CircuitState, CircuitState]] = []
        self.opened_at = 0
        self.forced = False
        self.trials = self.trial_successes = self.consecutive = 0
        self.calls = self.successes = self.failures = self.rejections = self.opened = 0
        self.closed_calls = self.closed_failures = 0
        self.window: deque[tuple[int, bool]] = deque()

    # -- the model's rules -----------------------------------------------------

    def move(self, new: CircuitState) -> None:
        if new is not self.state:
            self.transitions.append((self.state, new))
        self.state = new
        if new is OPEN:
            self.opened_at = self.clock.now
            self.opened += 1
        elif new is HALF_OPEN:
            self.trials = self.trial_successes = 0
        else:
            self.consecutive = self.closed_calls = self.closed_failures = 0
            self.window.clear()

    def maybe_half_open(self) -> None:
        if (self.state is OPEN and not self.forced
                and self.clock.now - self.opened_at >= self.timeout):
            self.move(HALF_OPEN)

    def window_counts(self) -> tuple[int, int]:
        if self.window_kind == "time":
            while self.window and self.clock.now - self.window[0][0] >= WINDOW_SECONDS:
                self.window.popleft()
        elif self.window_kind == "count":
            while len(self.window) > self.size:
                self.window.popleft()
        return len(self.window), sum(failed for _, failed in self.window)

    def admit(self) -> float | None:
        """None if admitted, else the expected CircuitOpenError.remaining."""
        self.maybe_half_open()
        if self.state is CLOSED:
            return None
        if self.state is HALF_OPEN and self.trials < self.max_calls:
            self.trials += 1
            return None
        self.rejections += 1
        if self.state is HALF_OPEN:
            return 0.0
        return math.inf if self.forced else self.opened_at + self.timeout - self.clock.now

    def record(self, failed: bool) -> None:
        self.calls += 1
        if failed:
            self.failures += 1
        else:
            self.successes += 1
        if self.state is CLOSED:
            self.closed_calls += 1
            self.closed_failures += failed
            self.consecutive = self.consecutive + 1 if failed else 0
            if self.window_kind is None:
                tripped = failed and self.consecutive >= self.threshold
            else:
                self.window.append((self.clock.now, failed))
                calls, failures = self.window_counts()
                tripped = calls >= self.minimum and failures / calls >= self.rate
            if tripped:
                self.move(OPEN)
        elif failed:
            self.consecutive += 1
            self.move(OPEN)
        else:
            self.consecutive = 0
            self.trial_successes += 1
            if self.trial_successes >= self.success_threshold:
                self.move(CLOSED)

    def attempt(self, fn, expect: type[BaseException] | None, outcome: str) -> None:  # noqa: ANN001
        remaining = self.admit()
        if remaining is not None:
            with pytest.raises(CircuitOpenError) as info:
                self.breaker.call(fn)
            assert info.value.remaining == remaining
            return
        if expect is None:
            assert self.breaker.call(fn) == "ok"
        else:
            with pytest.raises(expect):
                self.breaker.call(fn)
        if outcome == "neutral":
            self.calls += 1
            if self.state is HALF_OPEN:
                self.trials -= 1
        else:
            self.record(outcome == "failure")

    # -- rules ---------------------------------------------------------------

    @rule()
    def success(self):
        self.attempt(ok, None, "success")

    @rule()
    def failure(self):
        self.attempt(fail, ValueError, "failure")

    @rule()
    def excluded(self):
        self.attempt(lambda: raise_(KeyError("k")), KeyError, "success")

    @rule()
    def interrupted(self):
        self.attempt(lambda: raise_(KeyboardInterrupt()), KeyboardInterrupt, "neutral")

    @rule(seconds=st.integers(0, 15))
    def advance(self, seconds):
        self.clock.advance(seconds)

    @rule()
    def reset(self):
        self.breaker.reset()
        self.forced = False
        self.move(CLOSED)

    @rule()
    def force_open(self):
        self.breaker.force_open()
        self.forced = True
        if self.state is not OPEN:
            self.move(OPEN)

    @invariant()
    def agrees_with_the_model(self):
        m = self.breaker.metrics()  # moves OPEN -> HALF_OPEN when due, as the model does
        self.maybe_half_open()
        if self.window_kind is None:
            calls, failures = self.closed_calls, self.closed_failures
        else:
            calls, failures = self.window_counts()
        assert m == CircuitMetrics(
            state=self.state, calls=self.calls, successes=self.successes,
            failures=self.failures, rejections=self.rejections, slow_calls=0,
            consecutive_failures=self.consecutive,
            failure_rate=failures / calls if calls else 0.0, opened=self.opened)
        assert self.heard == self.transitions


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = SETTINGS


def test_interrupt_in_a_listener_at_admission_gives_the_trial_slot_back():
    clock = FakeClock()
    interrupts = [KeyboardInterrupt()]

    def listener(b: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
        if new is HALF_OPEN and interrupts:
            raise interrupts.pop()

    breaker = CircuitBreaker(1, 10.0, clock=clock, listeners=[listener])
    trip(breaker, 1)
    clock.advance(11)
    with pytest.raises(KeyboardInterrupt):
        breaker.call(ok)  # admitted as the trial, then the listener interrupts
    assert breaker.call(ok) == "ok"  # the slot came back: a trial still gets in
    assert breaker.state is CLOSED


def test_block_exiting_in_another_context_settles_its_trial():
    """Before 3.12 asyncio.wait_for() runs each step of an async generator in
    a new task, so `async with breaker:` can exit in another context."""
    import contextvars

    clock = FakeClock()
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    trip(breaker, 1)
    clock.advance(11)
    entered = contextvars.copy_context()
    entered.run(breaker.__enter__)  # the trial, entered in one context...
    assert breaker.state is HALF_OPEN
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)  # ...holds the only slot
    breaker.__exit__(None, None, None)  # ...and leaves from this one
    assert breaker.state is CLOSED
    with pytest.raises(RuntimeError, match="without a matching"):
        breaker.__exit__(None, None, None)


def test_cancelled_call_that_ran_too_long_is_a_slow_failure():
    clock = FakeClock()
    breaker = CircuitBreaker(1, 10.0, slow_call_duration=0.05, clock=clock)

    async def hang() -> None:
        clock.advance(0.1)  # the dependency hangs past the slow-call limit...
        raise asyncio.CancelledError  # ...until an outer timeout cancels it

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(breaker.call_async(hang))
    m = breaker.metrics()
    assert (m.failures, m.slow_calls, m.state) == (1, 1, OPEN)


def test_cancelled_quick_call_is_neutral():
    clock = FakeClock()
    breaker = CircuitBreaker(1, 10.0, slow_call_duration=0.05, clock=clock)

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(breaker.call_async(cancelled))
    m = breaker.metrics()
    assert (m.calls, m.failures, m.successes, m.state) == (1, 0, 0, CLOSED)
