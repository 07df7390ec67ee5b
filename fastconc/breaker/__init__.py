"""Circuit breaker: stop calling something that keeps failing, try it again later.

A :class:`CircuitBreaker` wraps calls to a fallible dependency (a database, a
remote service).  While the calls work it is CLOSED and lets everything
through.  When they fail too often it trips OPEN and rejects calls at once with
:class:`~fastconc.errors.CircuitOpenError` instead of piling more load on the
broken dependency.  Once ``reset_timeout`` seconds have passed it goes
HALF_OPEN and lets a few trial calls through: enough successes close it again,
a failure opens it for another ``reset_timeout``::

    breaker = CircuitBreaker(failure_threshold=5, reset_timeout=30.0)

    @breaker
    def fetch(key): ...

    try:
        fetch("k")
    except CircuitOpenError as err:
        print(f"dependency down, next try in {err.remaining:.0f}s")

The breaker is written once in pure Python on the standard library: it uses no
fastconc primitive, so it behaves the same whichever backend is installed.  A
lock guards its bookkeeping only; the user's function always runs outside it, so
calls through one breaker run concurrently (on free-threaded CPython too).

The modules, from the user's side down:

* ``circuit``: CircuitBreaker, its options, what can be observed and controlled;
* ``calls``: call(), call_async(), the decorator, ``with`` / ``async with``;
* ``machine``: admission, outcomes, state changes, delivery to listeners;
* ``windows``: the count and time windows;
* ``state``: CircuitState, CircuitMetrics, the listener type.
"""

from fastconc.breaker.circuit import CircuitBreaker
from fastconc.breaker.state import CircuitMetrics, CircuitState, Listener
from fastconc.errors import CircuitOpenError

__all__ = ["CircuitBreaker", "CircuitMetrics", "CircuitOpenError", "CircuitState", "Listener"]
