"""CircuitBreaker: how each call counts: slow calls, exclusions and neutral outcomes,
and generations (a late outcome does not move the state).
Shared helpers: tests/breakerkit.py."""

from __future__ import annotations

import asyncio
import threading

import pytest
from breakerkit import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    FakeClock,
    T,
    fail,
    ok,
    raise_,
    trip,
)

from fastconc.breaker import CircuitBreaker, CircuitOpenError

# -- slow calls ----------------------------------------------------------------


def test_slow_calls_count_as_failures_but_return_their_result():
    clock = FakeClock()
    breaker = CircuitBreaker(2, 10.0, slow_call_duration=1.0, clock=clock)

    def taking(seconds: float, result: object = "done") -> object:
        clock.advance(seconds)
        return result

    assert breaker.call(taking, 1.5) == "done"
    m = breaker.metrics()
    assert (m.slow_calls, m.failures, m.successes, m.consecutive_failures) == (1, 1, 0, 1)
    assert breaker.call(taking, 1.0) == "done"  # exactly the limit is not slow
    assert breaker.metrics().consecutive_failures == 0
    with pytest.raises(ValueError):
        breaker.call(lambda: (clock.advance(2.0), fail()))
    assert breaker.state is CLOSED
    with breaker:
        clock.advance(3.0)  # a slow `with` block too
    assert breaker.state is OPEN
    m = breaker.metrics()
    assert (m.calls, m.slow_calls, m.failures, m.successes) == (4, 3, 3, 1)


def test_slow_excluded_exception_is_a_failure():
    clock = FakeClock()
    breaker = CircuitBreaker(1, slow_call_duration=1.0, exclude=(KeyError,), clock=clock)

    def slow_key_error() -> None:
        clock.advance(2.0)
        raise KeyError("k")

    with pytest.raises(KeyError):
        breaker.call(slow_key_error)
    assert breaker.state is OPEN
    assert breaker.metrics().slow_calls == 1


# -- exclusions and neutral outcomes ----------------------------------------------


def test_exclude_by_type_and_predicate():
    breaker = CircuitBreaker(
        2, exclude=(LookupError, lambda exc: "benign" in str(exc)))
    trip(breaker, 1)
    with pytest.raises(IndexError):  # a LookupError: propagates, counts as a success
        breaker.call(raise_, IndexError("i"))
    assert breaker.metrics().consecutive_failures == 0
    trip(breaker, 1)
    with pytest.raises(ValueError):
        breaker.call(fail, "benign")
    assert breaker.metrics().consecutive_failures == 0
    trip(breaker, 1)
    with pytest.raises(ValueError):
        breaker.call(fail, "serious")
    assert breaker.state is OPEN
    m = breaker.metrics()
    assert (m.calls, m.successes, m.failures) == (6, 2, 4)


def test_single_exception_type_is_accepted_as_exclude():
    breaker = CircuitBreaker(1, exclude=KeyError)
    with pytest.raises(KeyError):
        breaker.call(raise_, KeyError("k"))
    assert breaker.state is CLOSED


def test_excluded_exception_counts_as_a_trial_success():
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5.0, exclude=(KeyError,), clock=clock)
    trip(breaker, 1)
    clock.advance(5.0)
    with pytest.raises(KeyError):
        breaker.call(raise_, KeyError("k"))
    assert breaker.state is CLOSED


@pytest.mark.thread_unsafe(reason="replaces the process-wide threading.excepthook")
def test_broken_predicate_is_reported_and_excludes_nothing(monkeypatch):
    reported: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.exc_value))

    def broken(exc: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    breaker = CircuitBreaker(1, exclude=[broken])
    trip(breaker, 1)
    assert breaker.state is OPEN
    assert [type(e) for e in reported] == [RuntimeError]


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3), GeneratorExit(),
                                 asyncio.CancelledError()],
                         ids=lambda exc: type(exc).__name__)
def test_interruptions_are_neither_failures_nor_successes(exc):
    breaker = CircuitBreaker(2)
    trip(breaker, 1)
    with pytest.raises(type(exc)):
        breaker.call(raise_, exc)
    m = breaker.metrics()
    assert (m.calls, m.successes, m.failures, m.consecutive_failures) == (2, 0, 1, 1)
    trip(breaker, 1)  # the run of failures was not broken
    assert breaker.state is OPEN


def test_interrupted_trial_gives_its_slot_back():
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    trip(breaker, 1)
    clock.advance(5.0)
    with pytest.raises(KeyboardInterrupt):
        breaker.call(raise_, KeyboardInterrupt())
    assert breaker.state is HALF_OPEN
    assert breaker.call(ok) == "ok"  # the slot was free again
    assert breaker.state is CLOSED


def test_cancelled_async_trial_gives_its_slot_back():
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    trip(breaker, 1)
    clock.advance(5.0)

    async def main() -> None:
        started = asyncio.Event()
        never = asyncio.Event()

        async def hang() -> None:
            started.set()
            await never.wait()

        async def answer() -> int:
            return 42

        task = asyncio.ensure_future(breaker.call_async(hang))
        await asyncio.wait_for(started.wait(), T)
        with pytest.raises(CircuitOpenError) as info:
            await breaker.call_async(answer)
        assert info.value.remaining == 0.0  # the one slot is taken
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, T)
        assert breaker.state is HALF_OPEN
        assert await breaker.call_async(answer) == 42

    asyncio.run(main())
    assert breaker.state is CLOSED
    assert breaker.metrics().calls == 3  # fail, cancelled trial, good trial


# -- generations: late outcomes do not move the state -------------------------


class Blocked:
    """A call through the breaker, in a thread, held inside until released
    (at the latest by the ``blocked`` fixture's teardown)."""

    def __init__(self, breaker: CircuitBreaker, threads, outcome: str) -> None:  # noqa: ANN001
        self.entered = threading.Event()
        self.release = threading.Event()
        self.outcome = outcome
        threads.start(self._run, breaker)
        assert self.entered.wait(T)

    def _body(self) -> str:
        self.entered.set()
        assert self.release.wait(T)
        if self.outcome == "fail":
            raise ValueError("late failure")
        return "late success"

    def _run(self, breaker: CircuitBreaker) -> None:
        try:
            assert breaker.call(self._body) == "late success"
        except ValueError:
            assert self.outcome == "fail"


@pytest.fixture
def blocked(threads):  # noqa: ANN201 - blocked(breaker, outcome) -> Blocked
    made: list[Blocked] = []

    def start(breaker: CircuitBreaker, outcome: str) -> Blocked:
        made.append(Blocked(breaker, threads, outcome))
        return made[-1]

    yield start
    # Torn down before `threads` joins: a failed test must not leave a call held.
    for call in made:
        call.release.set()


def test_late_failure_from_closed_does_not_reopen_half_open(blocked, threads):
    clock = FakeClock()
    breaker = CircuitBreaker(2, 10.0, clock=clock)
    late = blocked(breaker, "fail")
    trip(breaker, 2)
    clock.advance(10.0)
    assert breaker.state is HALF_OPEN
    late.release.set()
    threads.join()
    m = breaker.metrics()
    assert m.state is HALF_OPEN
    assert (m.failures, m.consecutive_failures) == (3, 2)  # counted, but not in the run
    assert breaker.call(ok) == "ok"  # and the trial slot is still there
    assert breaker.state is CLOSED


def test_late_success_from_closed_does_not_close_half_open(blocked, threads):
    clock = FakeClock()
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    late = blocked(breaker, "succeed")
    trip(breaker, 1)
    clock.advance(10.0)
    assert breaker.state is HALF_OPEN
    late.release.set()
    threads.join()
    assert breaker.state is HALF_OPEN
    assert breaker.metrics().successes == 1


def test_late_failure_after_reset_does_not_count(blocked, threads):
    breaker = CircuitBreaker(2)
    late = blocked(breaker, "fail")
    trip(breaker, 1)
    breaker.reset()
    late.release.set()
    threads.join()
    assert breaker.metrics().consecutive_failures == 0
    trip(breaker, 1)
    assert breaker.state is CLOSED  # one failure since the reset, not two


def test_late_trial_success_after_reopen_does_not_close(blocked, threads):
    clock = FakeClock()
    breaker = CircuitBreaker(1, 10.0, half_open_max_calls=2, success_threshold=1, clock=clock)
    trip(breaker, 1)
    clock.advance(10.0)
    late = blocked(breaker, "succeed")  # trial 1, held
    trip(breaker, 1)  # trial 2 fails: OPEN again
    late.release.set()
    threads.join()
    assert breaker.state is OPEN
