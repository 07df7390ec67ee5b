"""Fault injection in CircuitBreaker: exceptions and misbehaviour from user code,
on both backends.  What is covered and how: tests/faultkit.py and the
fault-injection row of docs/RELIABILITY.md."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from faultkit import (
    Boom,
    only_kind,
)

from fastconc import (
    CircuitOpenError,
)
from fastconc.breaker import CircuitBreaker, CircuitState

pytestmark = pytest.mark.timeout(120)


# ================================================================ CircuitBreaker

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
def test_breaker_listener_exceptions_are_reported(reported, tally):
    """A listener raising an Exception: reported, the other listeners still
    hear every change in order, and the breaker's state is not affected."""
    clock = Clock()
    heard: list[tuple[str, CircuitState, CircuitState]] = []

    def bad(br, old, new) -> None:  # noqa: ANN001
        heard.append(("bad", old, new))
        raise Boom(f"{old.name}->{new.name}")

    def good(br, old, new) -> None:  # noqa: ANN001
        heard.append(("good", old, new))

    br = CircuitBreaker(2, 10.0, clock=clock, listeners=[bad, good])
    calls = 0
    for _ in range(2):
        with pytest.raises(ValueError):
            br.call(int, "x")
        calls += 1
    assert br.state is CircuitState.OPEN
    clock.now = 11.0
    assert br.call(int, "7") == 7  # HALF_OPEN trial succeeds -> CLOSED
    calls += 1
    assert br.state is CircuitState.CLOSED
    changes = [(CircuitState.CLOSED, CircuitState.OPEN),
               (CircuitState.OPEN, CircuitState.HALF_OPEN),
               (CircuitState.HALF_OPEN, CircuitState.CLOSED)]
    assert [(o, n) for who, o, n in heard if who == "good"] == changes
    assert [(o, n) for who, o, n in heard if who == "bad"] == changes
    errors = only_kind(reported.wait_thread(3), Boom)
    assert [str(e) for e in errors] == ["CLOSED->OPEN", "OPEN->HALF_OPEN", "HALF_OPEN->CLOSED"]
    m = br.metrics()
    assert (m.calls, m.failures, m.successes) == (calls, 2, 1)
    tally.add(faults=3 + 2, operations=calls + 3, items_checked=6)


def test_breaker_listener_baseexception_propagates_and_later_changes_arrive(tally):
    """A listener raising KeyboardInterrupt interrupts the call that made the
    change (Ctrl-C semantics), but the breaker moved all the same and later
    changes are still delivered."""
    clock = Clock()
    heard: list[tuple[CircuitState, CircuitState]] = []
    interrupt = [True]

    def listener(br, old, new) -> None:  # noqa: ANN001
        heard.append((old, new))
        if interrupt[0]:
            interrupt[0] = False
            raise KeyboardInterrupt("listener")

    br = CircuitBreaker(1, 5.0, clock=clock, listeners=[listener])
    with pytest.raises(KeyboardInterrupt):
        br.call(int, "x")
    assert br.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        br.call(int, "1")
    clock.now = 6.0
    assert br.call(int, "1") == 1
    assert heard == [(CircuitState.CLOSED, CircuitState.OPEN),
                     (CircuitState.OPEN, CircuitState.HALF_OPEN),
                     (CircuitState.HALF_OPEN, CircuitState.CLOSED)]
    assert br.metrics().rejections == 1
    tally.add(faults=1, operations=4, items_checked=3)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
def test_breaker_exclude_predicate_failures(reported, tally):
    """An exclude predicate raising an Exception is reported and excludes
    nothing (the call counts as a failure); one raising KeyboardInterrupt
    propagates and the call counts as neither, giving a HALF_OPEN trial's
    slot back."""
    clock = Clock()
    mode = ["boom"]

    def predicate(exc: BaseException) -> bool:
        if mode[0] == "boom":
            raise Boom("predicate")
        if mode[0] == "interrupt":
            raise KeyboardInterrupt("predicate")
        return False

    br = CircuitBreaker(2, 5.0, clock=clock, exclude=[predicate])
    for _ in range(2):
        with pytest.raises(ValueError):
            br.call(int, "x")
    assert br.state is CircuitState.OPEN  # both counted as failures
    assert [str(e) for e in only_kind(reported.wait_thread(2), Boom)] == ["predicate"] * 2
    clock.now = 6.0
    mode[0] = "interrupt"
    with pytest.raises(KeyboardInterrupt):
        br.call(int, "x")  # the only trial: interrupted while classified
    assert br.state is CircuitState.HALF_OPEN
    mode[0] = "ok"
    assert br.call(int, "3") == 3  # the slot came back
    assert br.state is CircuitState.CLOSED
    m = br.metrics()
    assert (m.calls, m.failures, m.successes) == (4, 2, 1)
    tally.add(faults=3, operations=5, items_checked=4)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_breaker_wrapped_call_baseexception_is_neutral(tally, exc_type):
    """The wrapped call raising a BaseException (call, decorator and with
    block): it propagates, counts as neither success nor failure, and a
    HALF_OPEN trial hands its slot to the next caller."""
    clock = Clock()
    br = CircuitBreaker(1, 5.0, clock=clock)

    def raw() -> None:
        raise exc_type("call")

    interrupted = br(raw)

    for _ in range(3):
        with pytest.raises(exc_type):
            interrupted()
    assert br.state is CircuitState.CLOSED
    with pytest.raises(ValueError):
        br.call(int, "x")
    clock.now = 6.0
    for _ in range(2):
        with pytest.raises(exc_type), br:
            raise exc_type("block")
        assert br.state is CircuitState.HALF_OPEN
    with pytest.raises(exc_type):
        br.call(raw)
    assert br.call(int, "5") == 5
    assert br.state is CircuitState.CLOSED
    m = br.metrics()
    assert (m.calls, m.failures, m.successes) == (8, 1, 1)
    tally.add(faults=6, operations=8, items_checked=8)


@pytest.mark.thread_unsafe(reason="threads share one breaker; replaces threading.excepthook")
def test_breaker_flaky_calls_and_listener_under_threads(reported, threads, tally):
    """Threads calling through one breaker while calls and a listener fail:
    every call is counted exactly once (calls + rejections = attempts)."""
    br = CircuitBreaker(3, 0.0, listeners=[lambda *a: (_ for _ in ()).throw(Boom("l"))])
    per_thread = 400
    outcomes = Counter()
    lock = threading.Lock()

    def worker(k: int) -> None:
        mine = Counter()
        for i in range(per_thread):
            try:
                br.call(int, "x" if (i + k) % 4 == 0 else "1")
                mine["ok"] += 1
            except ValueError:
                mine["failed"] += 1
            except CircuitOpenError:
                mine["rejected"] += 1
        with lock:
            outcomes.update(mine)

    for k in range(4):
        threads.start(worker, k)
    threads.join()
    m = br.metrics()
    assert sum(outcomes.values()) == 4 * per_thread
    assert m.calls + m.rejections == 4 * per_thread
    assert (m.successes, m.failures, m.rejections) == (
        outcomes["ok"], outcomes["failed"], outcomes["rejected"])
    only_kind(reported.thread, Boom)
    tally.add(faults=outcomes["failed"] + len(reported.thread), operations=4 * per_thread,
              items_checked=4 * per_thread)
