"""What user code sees of an actor: the Actor base class, its Context, and
the Terminated message watchers get."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastconc.actors.deadlock import _current

if TYPE_CHECKING:
    from fastconc.actors.cell import _Cell
    from fastconc.actors.ref import ActorRef
    from fastconc.actors.system import ActorSystem

# The keyword arguments of spawn() that configure the actor (the rest go to
# its factory).
_SPAWN_OPTIONS = ("name", "mailbox_size", "supervision", "max_restarts", "within", "backoff",
                  "overflow")


class Terminated:
    """Sent to watchers when the watched actor has stopped."""

    __slots__ = ("ref",)

    def __init__(self, ref: ActorRef) -> None:
        self.ref = ref

    def __repr__(self) -> str:
        return f"Terminated({self.ref.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Terminated) and other.ref is self.ref

    def __hash__(self) -> int:
        return hash(self.ref)


class Actor:
    """Base class: implement ``handle_message(self, msg)``; its return value
    is the reply to ``ask``.  Optional hooks: ``on_start``, ``on_stop``,
    ``on_failure(exc)``, and ``handle_timeout()``, called when no message
    arrived for ``receive_timeout`` seconds (a class attribute, or set it on
    the instance; None: never).  ``self.context`` is available in every hook
    and handler.  Subclasses need not call ``super().__init__()``."""

    _fc_cell: _Cell
    receive_timeout: float | None = None

    def handle_timeout(self) -> None:
        """Called when no message arrived within ``receive_timeout`` seconds."""

    def handle_message(self, msg: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not handle messages")

    def on_start(self) -> None:
        """Called before the first message (and after each restart)."""

    def on_stop(self) -> None:
        """Called once the actor has stopped (or before a restart)."""

    def on_failure(self, exc: BaseException) -> None:
        """Called when a handler raised for a tell (before supervision acts)."""

    @property
    def context(self) -> Context:
        return self._fc_cell.context


class Context:
    """What a running actor can do: ``self_ref``, ``system``, ``spawn``
    (children), ``watch``, ``stop``."""

    __slots__ = ("_cell",)

    def __init__(self, cell: _Cell) -> None:
        self._cell = cell

    @property
    def self_ref(self) -> ActorRef:
        return self._cell.ref

    @property
    def system(self) -> ActorSystem:
        return self._cell.system

    def spawn(self, factory: Callable[..., Actor], *args: Any, **kwargs: Any) -> ActorRef:
        """Spawn a child (same options as ActorSystem.spawn): it stops when
        this actor stops, and its failures come here when it is spawned with
        ``supervision="escalate"``."""
        options = {k: kwargs.pop(k) for k in _SPAWN_OPTIONS if k in kwargs}
        return self._cell.system._spawn(factory, args, kwargs, self._cell, **options)

    def watch(self, ref: ActorRef) -> None:
        """Receive ``Terminated(ref)`` as a message once ``ref`` stops.

        It never waits for mailbox room and is never dropped while this
        actor runs: a full mailbox keeps it aside, and it is then handled
        before the messages queued earlier (so is a child's escalated
        failure)."""
        ref._cell.add_watcher(self._cell)

    def stop(self) -> None:
        """Stop this actor after the current message."""
        cell = self._cell
        if cell in _current.stack:
            # From its own handler: the turn stops it once the handler
            # returns (what is still queued goes to the dead letters).
            cell.stop_requested = True
        else:
            cell.request_stop()
