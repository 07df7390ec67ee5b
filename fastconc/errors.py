"""Exceptions raised by fastconc.

:class:`ConcurrencyError` is the base of every exception fastconc raises on
purpose.  Each concrete error also derives from the standard-library exception
that code written for :mod:`queue` or :mod:`concurrent.futures` already catches,
so ``except queue.Empty:`` or ``except TimeoutError:`` keeps working.
"""

from __future__ import annotations

import queue

__all__ = [
    "ActorStopped",
    "ChannelClosed",
    "CircuitOpenError",
    "ConcurrencyError",
    "Deadlock",
    "Empty",
    "FallbackWarning",
    "Full",
    "PoolClosed",
    "ResourceUnavailable",
    "Timeout",
]

# queue.ShutDown exists from Python 3.13 on; before that ChannelClosed is only
# a ConcurrencyError.
_SHUTDOWN_BASES: tuple[type[BaseException], ...] = (
    (queue.ShutDown,) if hasattr(queue, "ShutDown") else ()
)


class ConcurrencyError(Exception):
    """Base class of every exception fastconc raises on purpose."""


class ChannelClosed(ConcurrencyError, *_SHUTDOWN_BASES):  # type: ignore[misc]
    """The channel or queue was closed (shut down): no more sends, and no more
    receives once it is drained.  A :class:`queue.ShutDown` on Python 3.13+."""


class Timeout(ConcurrencyError, TimeoutError):
    """A blocking call ran out of time.  Also a :class:`TimeoutError`."""


class Empty(ConcurrencyError, queue.Empty):
    """Nothing to take right now.  Also a :class:`queue.Empty`."""


class Full(ConcurrencyError, queue.Full):
    """No room right now.  Also a :class:`queue.Full`."""


class PoolClosed(ConcurrencyError, RuntimeError):
    """The pool was shut down and takes no new work.  A :class:`RuntimeError`,
    as :mod:`concurrent.futures` raises after ``shutdown()``."""


class ResourceUnavailable(Timeout):
    """A pooled resource could not be had before the timeout passed."""


class Deadlock(ConcurrencyError, RuntimeError):
    """Waiting would never finish (for example an actor asking itself)."""


class CircuitOpenError(ConcurrencyError):
    """The circuit breaker is open and rejects calls for now.

    ``remaining``: seconds until it lets a trial call through (0.0 when it is
    half-open with every trial slot taken, ``math.inf`` when forced open);
    ``breaker``: the breaker that refused the call."""

    remaining: float = 0.0
    breaker: object = None


class ActorStopped(ConcurrencyError):
    """The actor has stopped and can no longer answer."""


class FallbackWarning(RuntimeWarning):
    """fastconc runs on its pure-Python fallback for a reason the user did not
    choose: imported from a source checkout without compiled modules (which
    may shadow an installed build), or compiled modules that fail to import.
    ``fastconc._impl.FALLBACK.reason`` says which, in words."""
