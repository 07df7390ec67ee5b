"""ActorRef, the handle to an actor: tell, ask (with deadlock detection
for asks from a handler), stop."""

from __future__ import annotations

import concurrent.futures as _futures
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from fastconc._support.waits import deadline as _deadline
from fastconc.actors.deadlock import _check_and_add_edge, _current, _remove_edge
from fastconc.actors.mailbox import _ReplySlot
from fastconc.actors.timers import _left, _timeout_arg
from fastconc.errors import ActorStopped, Timeout

if TYPE_CHECKING:
    from fastconc.actors.cell import _Cell


class ActorRef:
    """The handle to an actor: ``tell``, ``try_tell``, ``ask``,
    ``ask_async``, ``stop``, ``is_alive``, ``name``."""

    __slots__ = ("_cell", "__weakref__")

    def __init__(self, cell: _Cell) -> None:
        self._cell = cell

    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def is_alive(self) -> bool:
        return not self._cell.stopped

    def tell(self, msg: Any) -> None:
        """Send msg.  When the mailbox is full: wait (overflow="block", the
        default), drop it to the dead letters ("drop") or raise Full
        ("raise").  To a stopped actor it goes to the dead letters."""
        self._cell.tell(msg)

    def try_tell(self, msg: Any) -> bool:
        """Send msg if the mailbox has room; False when full (or stopped:
        the message then goes to the dead letters)."""
        return self._cell.post(msg, None, block=False)

    def ask_async(self, msg: Any) -> Future[Any]:
        """Send msg; the Future gets the handler's return value or exception.
        Waits while the mailbox is full, as ``tell`` does by default."""
        return self._ask_async(msg, None)

    def _ask_async(self, msg: Any, timeout: float | None) -> Future[Any]:
        """ask_async, with a bound on the wait for room in a full mailbox
        (Timeout: nothing was queued)."""
        future: Future[Any] = self._cell.system._pool.create_future()
        if not self._cell.post(msg, future, block=True, timeout=timeout):
            future.set_exception(ActorStopped(f"actor {self.name!r} has stopped"))
        return future

    def ask(self, msg: Any, timeout: float | None = None) -> Any:
        """Send msg and wait for the reply; re-raises the handler's exception.
        Raises Timeout, ActorStopped, or Deadlock when called from a handler
        whose actor this ask would (transitively) wait on.  ``timeout``
        bounds the whole call: the wait for room in a full mailbox as well as
        the wait for the reply.

        Asked without a timeout from a thread outside the pool, an idle actor
        with an empty mailbox answers on the asking thread (one handler at a
        time and sender order still hold): that saves the two thread
        hand-offs a round trip through a worker costs."""
        timeout = _timeout_arg(timeout)
        stack = _current.stack
        asker = stack[-1] if stack else None
        if asker is not None:
            # Check and record in one step, before the message can be seen:
            # two handlers asking each other at the same moment (really at
            # once without the GIL) must not both pass the check.
            _check_and_add_edge(asker, self._cell)
        elif not self._cell.system._pool.is_worker_thread():
            return self._ask_from_outside(msg, timeout)
        deadline = _deadline(timeout)
        try:
            future = self._ask_async(msg, timeout)
        except Timeout:
            if asker is not None:
                _remove_edge(asker, self._cell)
            raise Timeout(f"no reply from {self.name!r} within {timeout} s "
                          "(its mailbox stayed full)") from None
        except BaseException:
            if asker is not None:
                _remove_edge(asker, self._cell)
            raise
        try:
            return future.result(_left(deadline))
        except _futures.TimeoutError:
            future.cancel()
            raise Timeout(f"no reply from {self.name!r} within {timeout} s") from None
        finally:
            if asker is not None:
                _remove_edge(asker, self._cell)

    def _ask_from_outside(self, msg: Any, timeout: float | None) -> Any:
        """ask() from a thread that is not one of the pool's workers (it has
        no other tasks to help with): the reply comes through a one-slot
        Channel, whose blocking recv watches for it a few microseconds
        without the GIL before it sleeps, so a quick reply costs no thread
        wake-up."""
        cell = self._cell
        # Only without a timeout: a handler running on this thread could not
        # be given up on.
        if timeout is None and cell.try_run_inline():
            # The actor was idle with an empty mailbox, and this thread now
            # holds its turn: answer right here, no hand-off to a worker
            # (nothing queued before it, so sender order is kept).
            try:
                return cell.handle_inline(msg)
            finally:
                cell.end_inline()
        deadline = _deadline(timeout)
        slot = _ReplySlot(cell.system._channel_type(1))
        try:
            posted = cell.post(msg, slot, block=True, timeout=timeout)
        except Timeout:
            raise Timeout(f"no reply from {self.name!r} within {timeout} s "
                          "(its mailbox stayed full)") from None
        if not posted:
            raise ActorStopped(f"actor {self.name!r} has stopped")
        try:
            ok, value = slot.channel.recv(_left(deadline))
        except Timeout:
            slot.channel.close()  # the handler, if it still runs, answers no one
            raise Timeout(f"no reply from {self.name!r} within {timeout} s") from None
        if ok:
            return value
        try:
            raise value
        finally:
            value = None

    def stop(self) -> None:
        """Stop the actor once the messages already in its mailbox are
        handled.  Never blocks, not even on a full mailbox (the request needs
        no mailbox slot), and returns before the actor has stopped: watch it
        (``Terminated``) to know when.  Tells sent after it go to the dead
        letters and asks raise ActorStopped, and so do senders still waiting
        for room in a full mailbox."""
        self._cell.request_stop()

    def __repr__(self) -> str:
        return f"<ActorRef {self.name!r} {'alive' if self.is_alive else 'stopped'}>"
