"""CircuitBreaker: the state machine, trial admission under racing threads,
windows, slow calls, exclusions, generations, the call forms, listeners,
metrics, and a hypothesis state machine against a plain model.

The breaker uses no backend primitive (only threading and the clock), so these
tests are not parametrized over the ``impl`` fixture: the tox matrix runs them
against the compiled and the pure-Python build all the same.  Timing is driven
by a fake clock passed as ``clock=``, never by sleeping.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import threading
from collections import deque

import pytest
from conftest import JOIN_TIMEOUT, stress_scale
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fastconc.breaker import CircuitBreaker, CircuitMetrics, CircuitOpenError, CircuitState
from fastconc.errors import ConcurrencyError

T = JOIN_TIMEOUT
CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ok(value: object = "ok") -> object:
    return value


def fail(message: str = "boom") -> None:
    raise ValueError(message)


def raise_(exc: BaseException) -> None:
    raise exc


def trip(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(ValueError):
            breaker.call(fail)


# -- the classic example ------------------------------------------------------


def test_classic_example():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=10.0, clock=clock, name="db")
    assert breaker.state is CLOSED
    assert breaker.call(ok, 1) == 1

    trip(breaker, 2)
    assert breaker.state is CLOSED  # two in a row are not enough
    trip(breaker, 1)
    assert breaker.state is OPEN

    ran: list[int] = []
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ran.append, 1)
    assert ran == []  # rejected without calling
    assert isinstance(info.value, ConcurrencyError)
    assert info.value.breaker is breaker
    assert info.value.remaining == 10.0
    assert "'db'" in str(info.value) and "open" in str(info.value)

    clock.advance(9.99)
    assert breaker.state is OPEN
    clock.advance(0.01)
    assert breaker.state is HALF_OPEN
    assert breaker.call(ok, "trial") == "trial"
    assert breaker.state is CLOSED
    m = breaker.metrics()
    assert (m.calls, m.successes, m.failures, m.rejections, m.opened) == (5, 2, 3, 1, 1)


def test_remaining_counts_down_with_the_clock():
    clock = FakeClock()
    breaker = CircuitBreaker(1, 30.0, clock=clock)
    trip(breaker, 1)
    seen = []
    for step in (0.0, 5.0, 10.0, 14.5):
        clock.advance(step)
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(ok)
        seen.append(info.value.remaining)
    assert seen == [30.0, 25.0, 15.0, 0.5]
    assert breaker.metrics().rejections == 4


# -- HALF_OPEN admission under racing threads ---------------------------------


@pytest.mark.parametrize(
    ("n", "success_threshold", "fail_one", "expected"),
    [
        (1, 1, False, CLOSED),
        (1, 1, True, OPEN),
        (3, 1, False, CLOSED),  # the first success closes; the other two are late
        (3, 3, False, CLOSED),
        (3, 3, True, OPEN),  # whatever the order, the failure re-opens
    ],
)
def test_half_open_admits_exactly_n_of_16_racing_threads(
        n, success_threshold, fail_one, expected, threads):
    clock = FakeClock()
    breaker = CircuitBreaker(1, 10.0, half_open_max_calls=n,
                             success_threshold=success_threshold, clock=clock)
    trip(breaker, 1)
    clock.advance(10.0)

    racers = 16
    start = threading.Barrier(racers, timeout=T)
    release = threading.Event()
    settled = threading.Semaphore(0)  # one release per racer: admitted or rejected
    lock = threading.Lock()
    entered: list[int] = []
    rejected: list[float] = []

    def trial(i: int) -> int:
        with lock:
            entered.append(i)
            first = len(entered) == 1
        settled.release()
        assert release.wait(T)
        if fail_one and first:
            raise ValueError("trial failed")
        return i

    def racer(i: int) -> None:
        start.wait()
        try:
            breaker.call(trial, i)
        except CircuitOpenError as err:
            with lock:
                rejected.append(err.remaining)
            settled.release()
        except ValueError:
            assert fail_one

    try:
        for i in range(racers):
            threads.start(racer, i)
        for _ in range(racers):
            assert settled.acquire(timeout=T)
        # Every racer is now inside trial() or rejected: all trials in flight.
        assert len(entered) == n
        assert rejected == [0.0] * (racers - n)
        assert breaker.state is HALF_OPEN
    finally:
        release.set()
    threads.join()
    assert breaker.state is expected
    m = breaker.metrics()
    assert m.calls == 1 + n
    assert m.rejections == racers - n
    assert m.failures == 1 + fail_one


def test_closed_calls_run_concurrently(threads):
    # Each call waits inside the breaker until all 8 are inside: a breaker
    # that serialized calls would time the barrier out.
    breaker = CircuitBreaker()
    inside = threading.Barrier(8, timeout=T)
    results: list[int] = []

    def work(i: int) -> int:
        inside.wait()
        return i

    def caller(i: int) -> None:
        results.append(breaker.call(work, i))

    for i in range(8):
        threads.start(caller, i)
    threads.join()
    assert sorted(results) == list(range(8))
    assert breaker.metrics().successes == 8


# -- stress: exact counts ----------------------------------------------------


@pytest.mark.stress
@pytest.mark.parametrize("mode", ["window", "consecutive"])
def test_counts_are_exact_under_16_threads(mode, threads):
    # Each thread fails one call in `every`, so a run of failures holds at
    # most one per thread: 16 in a row at most, fewer than a window of 50
    # (with a failure rate threshold of 1.0) or a failure_threshold of 17
    # needs.  The breaker never trips, and every outcome must be counted.
    if mode == "window":
        breaker = CircuitBreaker(window_size=50, minimum_calls=50, failure_rate_threshold=1.0)
        every = 3
    else:  # mostly successes, most on the fast path's single locked counter
        breaker = CircuitBreaker(failure_threshold=17)
        every = 20
    per_thread = int(3000 * stress_scale())
    tallies: list[tuple[int, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(16, timeout=T)

    def worker(t: int) -> None:
        start.wait()
        good = bad = 0
        for i in range(per_thread):
            if (t + i) % every == 0:
                with pytest.raises(ValueError):
                    breaker.call(fail)
                bad += 1
            else:
                breaker.call(ok)
                good += 1
        with lock:
            tallies.append((good, bad))

    for t in range(16):
        threads.start(worker, t)
    threads.join()
    good = sum(g for g, _ in tallies)
    bad = sum(b for _, b in tallies)
    m = breaker.metrics()
    assert m.state is CLOSED and m.opened == 0 and m.rejections == 0
    assert (m.calls, m.successes, m.failures) == (16 * per_thread, good, bad)
    assert m.consecutive_failures <= 16
    assert 0 < m.failure_rate < 1


@pytest.mark.stress
def test_counts_and_transitions_stay_consistent_while_flapping(threads):
    # reset_timeout=0: the breaker flips between all three states all the
    # time.  Whatever the interleaving, every attempt is counted exactly once
    # and listeners hear one unbroken chain of transitions.
    transitions: list[tuple[CircuitState, CircuitState]] = []
    breaker = CircuitBreaker(2, 0.0, half_open_max_calls=2, success_threshold=2,
                             listeners=[lambda b, old, new: transitions.append((old, new))])
    per_thread = int(1000 * stress_scale())
    tallies: list[tuple[int, int, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(16, timeout=T)

    def worker(t: int) -> None:
        start.wait()
        good = bad = rejected = 0
        for i in range(per_thread):
            try:
                # Two failures, then a success: every thread trips the
                # breaker by itself, whatever the interleaving.
                breaker.call(fail if (t + i) % 3 else ok)
                good += 1
            except ValueError:
                bad += 1
            except CircuitOpenError:
                rejected += 1
        with lock:
            tallies.append((good, bad, rejected))

    for t in range(16):
        threads.start(worker, t)
    threads.join()
    final = breaker.state
    m = breaker.metrics()
    good, bad, rejected = (sum(x) for x in zip(*tallies, strict=True))
    assert good + bad + rejected == 16 * per_thread
    assert (m.calls, m.successes, m.failures, m.rejections) == (good + bad, good, bad, rejected)
    allowed = {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (HALF_OPEN, CLOSED)}
    assert set(transitions) <= allowed
    assert transitions, "the breaker never tripped"
    assert transitions[0][0] is CLOSED
    for (_, new), (old, _) in zip(transitions, transitions[1:], strict=False):
        assert new is old, "listeners heard the transitions out of order"
    assert transitions[-1][1] is final
    assert m.opened == sum(new is OPEN for _, new in transitions)


# -- windows -------------------------------------------------------------------


def test_count_window_failure_rate_and_minimum_calls():
    breaker = CircuitBreaker(window_size=4, minimum_calls=10, failure_rate_threshold=0.75)
    # minimum_calls is capped at the window size: a full window is enough.
    breaker.call(ok)
    trip(breaker, 2)
    assert breaker.metrics().failure_rate == pytest.approx(2 / 3)
    assert breaker.state is CLOSED  # 3 calls < 4
    breaker.call(ok)  # [ok fail fail ok]: 2/4
    assert breaker.state is CLOSED
    trip(breaker, 1)  # [fail fail ok fail]: 3/4
    assert breaker.state is OPEN


def test_count_window_slides():
    breaker = CircuitBreaker(1, window_size=3, minimum_calls=3, failure_rate_threshold=1.0)
    trip(breaker, 2)
    breaker.call(ok)
    trip(breaker, 1)  # [fail ok fail]
    assert breaker.state is CLOSED  # failure_threshold=1 is unused with a window
    trip(breaker, 1)  # [ok fail fail]
    assert breaker.state is CLOSED
    trip(breaker, 1)  # [fail fail fail]
    assert breaker.state is OPEN


def test_window_trips_on_a_success_that_reaches_minimum_calls():
    breaker = CircuitBreaker(window_size=10, minimum_calls=5, failure_rate_threshold=0.5)
    trip(breaker, 4)
    assert breaker.state is CLOSED
    assert breaker.metrics().failure_rate == 1.0
    breaker.call(ok)  # 4/5 failed, and now enough calls to judge
    assert breaker.state is OPEN


def test_time_window_forgets_old_calls():
    clock = FakeClock(100.05)  # mid-bucket, away from the 0.1 s bucket edges
    breaker = CircuitBreaker(window_duration=10.0, minimum_calls=4,
                             failure_rate_threshold=0.5, clock=clock)
    trip(breaker, 2)
    breaker.call(ok)
    assert breaker.metrics().failure_rate == pytest.approx(2 / 3)
    clock.advance(5.0)
    assert breaker.metrics().failure_rate == pytest.approx(2 / 3)  # still inside
    clock.advance(5.0)
    assert breaker.metrics().failure_rate == 0.0  # 10 s later: gone
    trip(breaker, 2)
    assert breaker.state is CLOSED  # only 2 calls: the old ones no longer count
    breaker.call(ok)
    clock.advance(5.0)
    breaker.call(ok)  # 4 calls, 2 failed: 0.5
    assert breaker.state is OPEN


def test_window_starts_empty_after_closing():
    clock = FakeClock()
    breaker = CircuitBreaker(reset_timeout=1.0, window_size=4, minimum_calls=2,
                             failure_rate_threshold=0.5, clock=clock)
    trip(breaker, 2)
    assert breaker.state is OPEN
    clock.advance(1.0)
    breaker.call(ok)
    assert breaker.state is CLOSED
    assert breaker.metrics().failure_rate == 0.0
    breaker.call(ok)
    trip(breaker, 1)  # [ok fail]: 0.5, since the old failures were cleared
    assert breaker.state is OPEN


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
