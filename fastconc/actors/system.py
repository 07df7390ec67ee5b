"""ActorSystem: spawning (argument checks, names), lookup, dead letters and
shutdown; its actors run on one WorkStealingPool."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastconc import Channel, WorkStealingPool
from fastconc._support.args import int_arg, seconds_arg
from fastconc._support.waits import deadline as _deadline
from fastconc.actors.cell import _Cell
from fastconc.actors.mailbox import OVERFLOW
from fastconc.actors.supervision import STRATEGIES, _Spec
from fastconc.actors.timers import _left, _timeout_arg, _Timers
from fastconc.errors import ActorStopped

if TYPE_CHECKING:
    from fastconc.actors.actor import Actor
    from fastconc.actors.ref import ActorRef

# Dead letters kept for inspection (oldest dropped first).
DEAD_LETTERS_KEPT = 10_000

_NO_KWARGS: dict[str, Any] = {}  # shared, never mutated: most actors take no kwargs


class ActorSystem:
    """Runs actors M:N on a WorkStealingPool.

    ``spawn(factory, *args, name=None, mailbox_size=1000, supervision="restart",
    max_restarts=1, within=5.0, backoff=(0.0, 0.0), overflow="block",
    **kwargs)``: ``factory`` is an Actor subclass or any callable returning an
    Actor (a restart calls it again).  ``supervision``: what a handler's
    exception from a ``tell`` does: ``restart`` (a fresh instance, the
    mailbox kept), ``resume`` (keep state, skip the message), ``stop``, or
    ``escalate`` (the parent handles it as its own failure; this actor
    stops).  At most ``max_restarts`` restarts within ``within`` seconds
    (Erlang's default, 1 in 5 s), else the actor stops and its watchers get
    ``Terminated``.  ``backoff=(first, most)``: wait ``first`` seconds before
    a restart, doubling up to ``most``, with jitter.  ``overflow``: what
    ``tell`` does on a full mailbox (``block``, ``drop`` to the dead letters,
    ``raise`` Full).

    ``lookup(name)``, ``dead_letters`` (``(ref, msg)`` pairs),
    ``shutdown(timeout=None)``; ``with`` shuts down.
    """

    def __init__(self, max_workers: int | None = None, *, backend: Any = None) -> None:
        """``backend``: the primitives to build on, one of the namespaces of
        ``fastconc.implementations()`` (default: the backend fastconc selected)."""
        self._channel_type: Callable[[int], Any] = (
            Channel if backend is None else backend.Channel)
        pool_type = WorkStealingPool if backend is None else backend.WorkStealingPool
        self._pool = pool_type(max_workers, thread_name_prefix="ActorSystem")
        self._timers = _Timers("ActorSystem-timers")
        self._lock = threading.Lock()
        self._all_stopped = threading.Condition(self._lock)  # notified when _actors empties
        self._actors: dict[str, _Cell] = {}
        self._dead: deque[tuple[ActorRef, Any]] = deque(maxlen=DEAD_LETTERS_KEPT)
        self._counter = 0
        self._closed = False

    def spawn(self, factory: Callable[..., Actor], *args: Any, name: str | None = None,
              mailbox_size: int = 1000, supervision: str = "restart", max_restarts: int = 1,
              within: float = 5.0, backoff: tuple[float, float] = (0.0, 0.0),
              overflow: str = "block", **kwargs: Any) -> ActorRef:
        """Start an actor; see the class docstring for the options."""
        return self._spawn(factory, args, kwargs, None, name=name, mailbox_size=mailbox_size,
                           supervision=supervision, max_restarts=max_restarts, within=within,
                           backoff=backoff, overflow=overflow)

    def _spawn(self, factory: Callable[..., Actor], args: tuple[Any, ...],
               kwargs: dict[str, Any], parent: _Cell | None, *, name: str | None = None,
               mailbox_size: int = 1000, supervision: str = "restart", max_restarts: int = 1,
               within: float = 5.0, backoff: tuple[float, float] = (0.0, 0.0),
               overflow: str = "block") -> ActorRef:
        if not callable(factory):
            raise TypeError("factory must be an Actor subclass or a callable returning an Actor")
        if supervision not in STRATEGIES:
            raise ValueError(f"supervision must be one of {STRATEGIES}, not {supervision!r}")
        if overflow not in OVERFLOW:
            raise ValueError(f"overflow must be one of {OVERFLOW}, not {overflow!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError("max_restarts must be an int >= 0")
        int_arg(mailbox_size, "mailbox_size", 1)
        within = seconds_arg(within, "within", zero_ok=False)
        first, most = backoff
        if first < 0 or most < first:
            raise ValueError("backoff must be (first, most) with 0 <= first <= most")
        spec = _Spec(factory, args, kwargs or _NO_KWARGS, supervision, max_restarts, within,
                     (float(first), float(most)), overflow)
        with self._lock:
            if self._closed:
                raise ActorStopped("the actor system is shut down")
            self._counter += 1
            if name is None:
                name = f"{getattr(factory, '__name__', 'actor')}-{self._counter}"
            if name in self._actors:
                raise ValueError(f"an actor named {name!r} is already running")
            cell = _Cell(self, name, spec, mailbox_size, parent)
            self._actors[name] = cell
        try:
            cell.start()
        except BaseException:
            self._unregister(cell)
            raise
        if parent is not None:
            parent.add_child(cell)
        return cell.ref

    def lookup(self, name: str) -> ActorRef | None:
        """The running actor with that name, or None."""
        with self._lock:
            cell = self._actors.get(name)
        return cell.ref if cell is not None else None

    @property
    def dead_letters(self) -> list[tuple[ActorRef, Any]]:
        """Messages that reached no actor, oldest first (the last 10,000)."""
        return list(self._dead)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop every actor once the messages already accepted are handled;
        True when all stopped within the timeout.

        ``timeout`` bounds the whole call.  When it passes, shutdown returns
        False and stops waiting, and every actor still running stops as soon
        as its current handler returns (what is still queued then goes to
        the dead letters, as with ``context.stop()``)."""
        timeout = _timeout_arg(timeout)
        deadline = _deadline(timeout)
        with self._lock:
            self._closed = True
            cells = list(self._actors.values())
        for cell in cells:
            cell.request_stop()  # never blocks: takes no mailbox slot
        idle = self._pool.join(timeout)
        if idle:
            # An idle pool is not enough: a tell may have marked an actor
            # scheduled and not yet handed its turn to the pool (or an actor
            # waits out a restart back-off).  Wait until every actor stopped.
            with self._lock:
                idle = self._all_stopped.wait_for(lambda: not self._actors, _left(deadline))
        if idle:
            self._timers.close(_left(deadline))
        else:
            # Given up: stop at the next chance instead.  The timers stay on
            # for actors waiting out a back-off; the last actor to stop
            # closes them (see _unregister).
            with self._lock:
                cells = list(self._actors.values())
            for cell in cells:
                cell.give_up()
        self._pool.shutdown(wait=idle)
        return idle

    def __enter__(self) -> ActorSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _dead_letter(self, ref: ActorRef, msg: Any) -> None:
        self._dead.append((ref, msg))

    def _unregister(self, cell: _Cell) -> None:
        with self._lock:
            if self._actors.get(cell.name) is cell:
                del self._actors[cell.name]
                if not self._actors:
                    self._all_stopped.notify_all()
            last = self._closed and not self._actors
        if last:
            self._timers.close(0.0)  # shut down and nothing left to time
