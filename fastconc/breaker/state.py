"""The breaker's vocabulary: its states, how a call ended, the phase a call
was admitted in, the listener type and the metrics snapshot."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastconc.breaker.circuit import CircuitBreaker


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
