"""CircuitBreaker: the call forms (call, decorator, with blocks in threads and tasks),
listeners, metrics, reset, force_open and bad arguments.
Shared helpers: tests/breakerkit.py."""

from __future__ import annotations

import asyncio
import inspect
import math
import threading

import pytest
from breakerkit import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    FakeClock,
    T,
    ok,
    trip,
)

from fastconc.breaker import CircuitBreaker, CircuitMetrics, CircuitOpenError, CircuitState

# -- the call forms -------------------------------------------------------------


def test_decorator_on_sync_and_async_functions():
    clock = FakeClock()
    breaker = CircuitBreaker(1, 10.0, clock=clock)

    @breaker
    def add(a: int, b: int = 0) -> int:
        """Adds."""
        if a < 0:
            raise ValueError("negative")
        return a + b

    @breaker
    async def aadd(a: int, b: int = 0) -> int:
        """Adds, later."""
        await asyncio.sleep(0)
        if a < 0:
            raise ValueError("negative")
        return a + b

    class Account:
        def __init__(self) -> None:
            self.balance = 10

        @breaker
        def withdraw(self, amount: int) -> int:
            self.balance -= amount
            return self.balance

    assert Account().withdraw(3) == 7  # still binds as a method
    assert (add.__name__, add.__doc__) == ("add", "Adds.")
    assert (aadd.__name__, aadd.__doc__) == ("aadd", "Adds, later.")
    assert inspect.iscoroutinefunction(aadd)
    assert add(1, b=2) == 3

    async def main() -> None:
        assert await aadd(2, b=3) == 5
        with pytest.raises(ValueError):
            await aadd(-1)
        assert breaker.state is OPEN
        with pytest.raises(CircuitOpenError):
            await aadd(1)

    asyncio.run(main())
    with pytest.raises(CircuitOpenError):
        add(1)
    clock.advance(10.0)
    assert add(2) == 2
    assert breaker.state is CLOSED


def test_with_block():
    clock = FakeClock()
    breaker = CircuitBreaker(2, 10.0, clock=clock)
    with breaker as entered:
        assert entered is breaker
    for _ in range(2):
        with pytest.raises(ValueError), breaker:
            raise ValueError("in block")
    assert breaker.state is OPEN
    ran = False
    with pytest.raises(CircuitOpenError):
        with breaker:
            ran = True
    assert not ran
    m = breaker.metrics()
    assert (m.calls, m.successes, m.failures, m.rejections) == (3, 1, 2, 1)


def test_nested_and_out_of_order_blocks():
    a, b = CircuitBreaker(1, name="a"), CircuitBreaker(1, name="b")
    with a, a:  # the same breaker twice: two calls
        pass
    assert a.metrics().successes == 2
    a.__enter__()
    b.__enter__()
    # a's block ends first, with b's still open above it: each records its own.
    a.__exit__(ValueError, ValueError("a failed"), None)
    b.__exit__(None, None, None)
    assert (a.state, b.state) == (OPEN, CLOSED)
    assert b.metrics().successes == 1
    with pytest.raises(RuntimeError):
        b.__exit__(None, None, None)  # nothing left to exit


def test_exit_without_enter_is_an_error():
    with pytest.raises(RuntimeError, match="__enter__"):
        CircuitBreaker().__exit__(None, None, None)


def test_with_blocks_in_threads_are_paired_per_thread(threads):
    # Thread A enters while CLOSED, thread B as the HALF_OPEN trial.  If the
    # bookkeeping were shared, A's exit could take B's trial entry and its
    # success would close the breaker.
    clock = FakeClock()
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    a_in, b_in = threading.Event(), threading.Event()
    a_go, b_go = threading.Event(), threading.Event()
    a_done = threading.Event()

    def a() -> None:
        with breaker:
            a_in.set()
            assert a_go.wait(T)
        a_done.set()

    def b() -> None:
        with pytest.raises(ValueError), breaker:
            b_in.set()
            assert b_go.wait(T)
            raise ValueError("trial failed")

    try:
        threads.start(a)
        assert a_in.wait(T)
        trip(breaker, 1)
        clock.advance(10.0)
        threads.start(b)
        assert b_in.wait(T)
        a_go.set()
        assert a_done.wait(T)
        assert breaker.state is HALF_OPEN  # A's success is late
    finally:
        a_go.set()
        b_go.set()
    threads.join()
    assert breaker.state is OPEN


@pytest.mark.parametrize("form", ["async with", "with"])
def test_with_blocks_in_tasks_are_paired_per_task(form):
    # As above with two asyncio tasks on one loop; also for a plain `with`
    # around an await, which a per-thread stack would get wrong.
    clock = FakeClock()
    breaker = CircuitBreaker(1, 10.0, clock=clock)

    async def block(inside: asyncio.Event, go: asyncio.Event, fails: bool) -> None:
        async def body() -> None:
            inside.set()
            await asyncio.wait_for(go.wait(), T)
            if fails:
                raise ValueError("trial failed")

        if form == "async with":
            async with breaker:
                await body()
        else:
            with breaker:
                await body()

    async def main() -> None:
        a_in, a_go, b_in, b_go = (asyncio.Event() for _ in range(4))
        task_a = asyncio.ensure_future(block(a_in, a_go, False))
        await asyncio.wait_for(a_in.wait(), T)
        trip(breaker, 1)
        clock.advance(10.0)
        task_b = asyncio.ensure_future(block(b_in, b_go, True))
        await asyncio.wait_for(b_in.wait(), T)
        a_go.set()
        await asyncio.wait_for(task_a, T)
        assert breaker.state is HALF_OPEN
        b_go.set()
        with pytest.raises(ValueError):
            await asyncio.wait_for(task_b, T)

    asyncio.run(main())
    assert breaker.state is OPEN


# -- listeners, metrics, reset, force_open ---------------------------------------


@pytest.mark.thread_unsafe(reason="replaces the process-wide threading.excepthook")
def test_listeners_hear_every_transition_in_order(monkeypatch):
    reported: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.exc_value))
    clock = FakeClock()
    seen: list[tuple[CircuitState, CircuitState]] = []

    def broken(b: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
        raise RuntimeError("listener bug")

    def record(b: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
        assert b is breaker
        seen.append((old, new))

    breaker = CircuitBreaker(1, 10.0, clock=clock, listeners=[broken])
    breaker.add_listener(record)
    trip(breaker, 1)
    clock.advance(10.0)
    assert breaker.state is HALF_OPEN
    trip(breaker, 1)
    clock.advance(10.0)
    breaker.call(ok)  # OPEN -> HALF_OPEN -> CLOSED in one call
    breaker.force_open()
    breaker.reset()
    breaker.reset()  # already closed: no transition
    assert seen == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN),
                    (HALF_OPEN, CLOSED), (CLOSED, OPEN), (OPEN, CLOSED)]
    assert [type(e) for e in reported] == [RuntimeError] * len(seen)

    breaker.remove_listener(broken)
    with pytest.raises(ValueError, match="listener"):
        breaker.remove_listener(broken)
    breaker.force_open()
    assert seen[-1] == (CLOSED, OPEN)
    assert len(reported) == 7


def test_listener_may_call_back_into_the_breaker():
    seen: list[tuple[CircuitState, CircuitState]] = []

    def heal(b: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
        seen.append((old, new))
        if new is OPEN:
            assert b.state is OPEN and b.metrics().opened == 1
            b.reset()  # not a deadlock: listeners run outside the lock

    breaker = CircuitBreaker(1, listeners=[heal])
    trip(breaker, 1)
    assert breaker.state is CLOSED
    assert seen == [(CLOSED, OPEN), (OPEN, CLOSED)]


def test_metrics_snapshot():
    clock = FakeClock()
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    m = breaker.metrics()
    assert m == CircuitMetrics(state=CLOSED, calls=0, successes=0, failures=0, rejections=0,
                               slow_calls=0, consecutive_failures=0, failure_rate=0.0, opened=0)
    with pytest.raises(AttributeError):
        m.calls = 5  # type: ignore[misc]  # frozen
    trip(breaker, 1)
    breaker.call(ok)
    breaker.call(ok)
    trip(breaker, 1)
    m = breaker.metrics()
    assert (m.calls, m.successes, m.failures, m.consecutive_failures) == (4, 2, 2, 1)
    assert m.failure_rate == 0.5  # since the breaker (first) closed
    trip(breaker, 2)
    clock.advance(10.0)
    breaker.call(ok)  # trial closes: the rate starts over
    m = breaker.metrics()
    assert (m.state, m.opened, m.failure_rate, m.consecutive_failures) == (CLOSED, 1, 0.0, 0)
    breaker.call(ok)
    trip(breaker, 1)
    assert breaker.metrics().failure_rate == 0.5


def test_force_open_holds_until_reset():
    clock = FakeClock()
    breaker = CircuitBreaker(2, 1.0, clock=clock, name="svc")
    trip(breaker, 1)
    breaker.force_open()
    clock.advance(1e6)
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ok)
    assert info.value.remaining == math.inf
    assert "reset()" in str(info.value)
    breaker.reset()
    m = breaker.metrics()
    assert (m.state, m.consecutive_failures, m.failure_rate) == (CLOSED, 0, 0.0)
    assert (m.calls, m.failures, m.rejections, m.opened) == (1, 1, 1, 1)  # totals are kept
    trip(breaker, 1)
    assert breaker.state is CLOSED  # the run of failures started over


def test_force_open_while_already_open_keeps_it_open_for_good():
    clock = FakeClock()
    breaker = CircuitBreaker(1, 1.0, clock=clock)
    trip(breaker, 1)
    breaker.force_open()
    clock.advance(5.0)
    assert breaker.state is OPEN
    assert breaker.metrics().opened == 1


def test_repr_shows_name_and_state():
    breaker = CircuitBreaker(1, name="payments")
    assert repr(breaker) == "<CircuitBreaker name='payments' state=closed>"
    trip(breaker, 1)
    assert "state=open" in repr(breaker)
    assert breaker.name == "payments"
    assert (breaker.failure_threshold, breaker.reset_timeout) == (1, 30.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"failure_threshold": 0}, ValueError, "failure_threshold"),
        ({"failure_threshold": "5"}, TypeError, "failure_threshold"),
        ({"failure_threshold": True}, TypeError, "failure_threshold"),
        ({"reset_timeout": -1}, ValueError, "reset_timeout"),
        ({"reset_timeout": float("nan")}, ValueError, "reset_timeout"),
        ({"reset_timeout": "30"}, TypeError, "reset_timeout"),
        ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls"),
        ({"success_threshold": 0}, ValueError, "success_threshold"),
        ({"success_threshold": 2}, ValueError, "success_threshold"),
        ({"exclude": [42]}, TypeError, "exclude"),
        ({"exclude": [int]}, TypeError, "exclude"),
        ({"exclude": 5}, TypeError, "exclude"),
        ({"window_size": 0}, ValueError, "window_size"),
        ({"window_size": 2.5}, TypeError, "window_size"),
        ({"window_duration": 0}, ValueError, "window_duration"),
        ({"window_duration": math.inf}, ValueError, "window_duration"),
        ({"window_size": 5, "window_duration": 5.0}, ValueError, "window_size"),
        ({"failure_rate_threshold": 0}, ValueError, "failure_rate_threshold"),
        ({"failure_rate_threshold": 1.5}, ValueError, "failure_rate_threshold"),
        ({"failure_rate_threshold": "half"}, TypeError, "failure_rate_threshold"),
        ({"minimum_calls": 0}, ValueError, "minimum_calls"),
        ({"slow_call_duration": 0}, ValueError, "slow_call_duration"),
        ({"slow_call_duration": -1.0}, ValueError, "slow_call_duration"),
        ({"clock": 5}, TypeError, "clock"),
        ({"name": 5}, TypeError, "name"),
        ({"listeners": [5]}, TypeError, "listeners"),
        ({"listeners": 5}, TypeError, "listeners"),
    ],
)
def test_bad_arguments(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        CircuitBreaker(**kwargs)


def test_bad_arguments_to_methods():
    breaker = CircuitBreaker()
    with pytest.raises(TypeError, match="fn"):
        breaker(5)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="listener"):
        breaker.add_listener(5)  # type: ignore[arg-type]
