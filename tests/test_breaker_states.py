"""CircuitBreaker: the state machine: the classic example, HALF_OPEN admission under
racing threads, exact counts under stress, and the windows.
Shared helpers: tests/breakerkit.py."""

from __future__ import annotations

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
    trip,
)
from conftest import stress_scale

from fastconc.breaker import CircuitBreaker, CircuitOpenError, CircuitState
from fastconc.errors import ConcurrencyError

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
