"""What the CircuitBreaker tests (tests/test_breaker_*.py) share: a fake
clock, tiny user functions and a helper that trips a breaker.

The breaker uses no backend primitive (only threading and the clock), so its
tests are not parametrized over the ``impl`` fixture: the tox matrix runs them
against the compiled and the pure-Python build all the same.  Timing is driven
by a fake clock passed as ``clock=``, never by sleeping.
"""

from __future__ import annotations

import pytest
from conftest import JOIN_TIMEOUT

from fastconc.breaker import CircuitBreaker, CircuitState

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
