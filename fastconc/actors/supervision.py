"""Supervision: what an actor's failure does (restart, resume, stop,
escalate), restart limits and back-off, and the spec an actor is rebuilt from."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastconc._support.report import report_uncaught as _report
from fastconc.actors.mailbox import _ChildFailed

if TYPE_CHECKING:
    from fastconc.actors.actor import Actor
    from fastconc.actors.cell import _Cell

STRATEGIES = ("restart", "resume", "stop", "escalate")

# Restart-backoff jitter draws from a generator of its own: the random
# module's shared one belongs to the application (a seeded sequence must not
# shift because an actor restarted).
_jitter = random.Random()


class _Spec:
    """How to (re)build an actor and supervise it: shared by its restarts."""

    __slots__ = ("args", "backoff", "factory", "kwargs", "max_restarts", "overflow",
                 "strategy", "within")

    def __init__(self, factory: Callable[..., Actor], args: tuple[Any, ...],
                 kwargs: dict[str, Any], strategy: str, max_restarts: int, within: float,
                 backoff: tuple[float, float], overflow: str) -> None:
        self.factory = factory
        self.args = args
        self.kwargs = kwargs
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.within = within
        self.backoff = backoff
        self.overflow = overflow


def handle_failure(cell: _Cell, exc: BaseException) -> None:
    """A handler (or a hook that counts as one) raised: call on_failure,
    then act on the actor's supervision strategy."""
    actor = cell.actor
    assert actor is not None
    cell._call_hook(actor.on_failure, exc)
    strategy = cell.spec.strategy
    if strategy == "resume":
        return
    if strategy == "escalate":
        if (cell.parent is None
                or not cell.parent.post_system(_ChildFailed(cell, exc))):
            _report(exc)  # no parent left to handle it
        cell._stop_now()
        return
    if strategy == "restart":
        delay = restart_delay(cell)
        if delay is not None:
            cell._call_hook(actor.on_stop)
            cell.actor = None
            if delay <= 0:
                restart(cell)
            elif cell.stop_requested:
                cell._stop_now()  # stopping anyway: no back-off to wait out
            else:
                with cell.lock:
                    cell.suspended = True
                cell.system._timers.call_later(delay, resume_after_backoff, cell)
            return
    cell._stop_now()


def restart_delay(cell: _Cell) -> float | None:
    """None when over the limit, else the back-off before restarting:
    exponential in the restarts within the window, with jitter."""
    spec = cell.spec
    now = time.monotonic()
    if cell.restarts is None:
        cell.restarts = deque()
    while cell.restarts and now - cell.restarts[0] > spec.within:
        cell.restarts.popleft()
    if len(cell.restarts) >= spec.max_restarts:
        return None
    cell.restarts.append(now)
    first, most = spec.backoff
    if first <= 0:
        return 0.0
    delay = min(most, first * 2.0 ** (len(cell.restarts) - 1))
    return float(delay * _jitter.uniform(0.5, 1.0))  # jitter: restarts do not march in step


def restart(cell: _Cell) -> bool:
    """start() again after a failure.  If that fails too (the factory
    or the new instance raised), the actor cannot run: report it and stop
    the actor, rejecting what its mailbox holds, rather than leave it
    looking alive with no instance to handle anything."""
    try:
        cell.start()
    except BaseException as exc:
        _report(exc)
        cell._stop_now()
        return False
    return True


def resume_after_backoff(cell: _Cell) -> None:
    """A restart back-off ended (a timer callback; the cell is its argument)."""
    if cell.stopped:
        return
    if cell.stop_requested:  # a shutdown gave up waiting meanwhile
        cell._stop_now()
        return
    if not restart(cell):
        return
    with cell.lock:
        cell.suspended = False
        cell.scheduled = False
    cell.schedule()
