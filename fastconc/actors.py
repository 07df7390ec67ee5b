"""Actors on the work-stealing pool: tell/ask, lifecycle, supervision,
deadlock detection.  Written once on the public primitives (Channel,
WorkStealingPool), so it runs on either backend.

M:N scheduling: each actor owns a bounded Channel as its mailbox and a
"scheduled" flag.  A tell that finds the actor idle schedules one turn on the
pool; a turn handles up to ``THROUGHPUT`` messages, then yields the worker.
An actor never runs two handlers at once, and messages from one sender
arrive in the order sent.

Work in progress (issue 6): restart back-off, receive_timeout, mailbox
overflow policies other than blocking, the escalate strategy and the
benchmarks against pykka are not done yet.
"""

from __future__ import annotations

import concurrent.futures as _futures
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from fastconc import Channel, WorkStealingPool
from fastconc.errors import ActorStopped, ChannelClosed, Deadlock, Empty, Timeout

__all__ = ["Actor", "ActorRef", "ActorSystem", "Context", "Terminated"]

# Messages one turn handles before the actor yields its worker.
THROUGHPUT = 64
# Dead letters kept for inspection (oldest dropped first).
DEAD_LETTERS_KEPT = 10_000

STRATEGIES = ("restart", "resume", "stop")


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
    ``on_failure(exc)``.  ``self.context`` is available in every hook and
    handler.  Subclasses need not call ``super().__init__()``."""

    _fc_cell: _Cell

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
        """Spawn a child: it stops when this actor stops."""
        ref = self._cell.system.spawn(factory, *args, **kwargs)
        self._cell.children.append(ref._cell)
        return ref

    def watch(self, ref: ActorRef) -> None:
        """Receive ``Terminated(ref)`` as a message once ``ref`` stops."""
        ref._cell.add_watcher(self._cell)

    def stop(self) -> None:
        """Stop this actor after the current message."""
        self._cell.request_stop()


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
        """Send msg; blocks while the mailbox is full.  To a stopped actor it
        goes to the system's dead letters."""
        self._cell.post(msg, None, block=True)

    def try_tell(self, msg: Any) -> bool:
        """Send msg if the mailbox has room; False when full (or stopped:
        the message then goes to the dead letters)."""
        return self._cell.post(msg, None, block=False)

    def ask_async(self, msg: Any) -> Future[Any]:
        """Send msg; the Future gets the handler's return value or exception."""
        future: Future[Any] = self._cell.system._pool.create_future()
        if not self._cell.post(msg, future, block=True):
            future.set_exception(ActorStopped(f"actor {self.name!r} has stopped"))
        return future

    def ask(self, msg: Any, timeout: float | None = None) -> Any:
        """Send msg and wait for the reply; re-raises the handler's exception.
        Raises Timeout, ActorStopped, or Deadlock when called from a handler
        whose actor this ask would (transitively) wait on."""
        stack = _current.stack
        asker = stack[-1] if stack else None
        if asker is not None:
            _deadlock_check(asker, self._cell)
        future = self.ask_async(msg)
        if asker is not None:
            _add_edge(asker, self._cell)
        try:
            return future.result(timeout)
        except _futures.TimeoutError:
            future.cancel()
            raise Timeout(f"no reply from {self.name!r} within {timeout} s") from None
        finally:
            if asker is not None:
                _remove_edge(asker, self._cell)

    def stop(self) -> None:
        """Stop the actor once the messages already in its mailbox are handled."""
        self._cell.request_stop()

    def __repr__(self) -> str:
        return f"<ActorRef {self.name!r} {'alive' if self.is_alive else 'stopped'}>"


# ---------------------------------------------------------------- deadlock detection

# The waits-for graph between actors.  An edge A -> B means A cannot go on
# until B does something: A's handler is blocked in ask() on B, or B's turn
# runs nested on top of A's blocked handler on the same thread (a worker
# helps while it waits, so A resumes only after B's turn returns).  An ask
# that would close a cycle can never be answered: it raises Deadlock.
_waits_lock = threading.Lock()
_waits_on: dict[_Cell, list[_Cell]] = {}


class _Current(threading.local):
    def __init__(self) -> None:
        self.stack: list[_Cell] = []  # actors whose turn runs on this thread, innermost last


_current = _Current()


def _add_edge(waiter: _Cell, on: _Cell) -> None:
    with _waits_lock:
        _waits_on.setdefault(waiter, []).append(on)


def _remove_edge(waiter: _Cell, on: _Cell) -> None:
    with _waits_lock:
        edges = _waits_on.get(waiter)
        if edges is not None:
            edges.remove(on)
            if not edges:
                del _waits_on[waiter]


def _deadlock_check(asker: _Cell, target: _Cell) -> None:
    with _waits_lock:
        seen: set[_Cell] = set()
        path: list[_Cell] = []

        def reaches(node: _Cell) -> bool:
            if node is asker:
                path.append(node)
                return True
            if node in seen:
                return False
            seen.add(node)
            for nxt in _waits_on.get(node, ()):
                if reaches(nxt):
                    path.append(node)
                    return True
            return False

        if reaches(target):
            names = [asker.name] + [c.name for c in reversed(path)]
            raise Deadlock("Deadlock detected: " + " -> ".join(names))


# ---------------------------------------------------------------- the runtime


class _Envelope:
    __slots__ = ("msg", "reply")

    def __init__(self, msg: Any, reply: Future[Any] | None) -> None:
        self.msg = msg
        self.reply = reply


_STOP = object()  # queued by request_stop(): handled after what came before


class _Cell:
    """One actor's runtime state."""

    __slots__ = ("actor", "args", "children", "context", "factory", "kwargs", "lock",
                 "mailbox", "max_restarts", "name", "ref", "restarts", "scheduled", "stopped",
                 "strategy", "system", "watchers", "within", "__weakref__")

    def __init__(self, system: ActorSystem, name: str, factory: Callable[..., Actor],
                 args: tuple[Any, ...], kwargs: dict[str, Any], mailbox_size: int,
                 strategy: str, max_restarts: int, within: float) -> None:
        self.system = system
        self.name = name
        self.factory = factory
        self.args = args
        self.kwargs = kwargs
        self.mailbox: Channel[Any] = system._channel_type(mailbox_size)
        self.lock = threading.Lock()
        self.scheduled = False
        self.stopped = False
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.within = within
        self.restarts: deque[float] = deque()
        self.children: list[_Cell] = []
        self.watchers: list[_Cell] = []
        self.context = Context(self)
        self.ref = ActorRef(self)
        self.actor: Actor | None = None

    # -- sending --------------------------------------------------------

    def post(self, msg: Any, reply: Future[Any] | None, block: bool) -> bool:
        envelope = _Envelope(msg, reply)
        try:
            if block:
                self.mailbox.send(envelope)
            elif not self.mailbox.try_send(envelope):
                return False
        except ChannelClosed:
            self.system._dead_letter(self.ref, msg)
            return False
        self.schedule()
        return True

    def schedule(self) -> None:
        with self.lock:
            if self.scheduled:
                return
            self.scheduled = True
        self.system._pool.execute(self.turn)

    # -- running --------------------------------------------------------

    def start(self) -> None:
        actor = self.factory(*self.args, **self.kwargs)
        if not isinstance(actor, Actor):
            raise TypeError(f"the factory must return an Actor, not {type(actor).__name__}")
        actor._fc_cell = self
        self.actor = actor
        self._call_hook(actor.on_start)

    def turn(self) -> None:
        """Handle up to THROUGHPUT messages, then give the worker back."""
        stack = _current.stack
        outer = stack[-1] if stack else None
        if outer is not None:
            _add_edge(outer, self)  # outer's blocked handler resumes after this turn
        stack.append(self)
        try:
            try:
                batch = self.mailbox.recv_many(THROUGHPUT, timeout=0)
            except (Timeout, Empty, ChannelClosed):
                batch = []
            for envelope in batch:
                if envelope is _STOP or self.stopped:
                    self._finish_stop(envelope)
                else:
                    self._handle(envelope)
        finally:
            stack.pop()
            if outer is not None:
                _remove_edge(outer, self)
        with self.lock:
            if len(self.mailbox) == 0:
                self.scheduled = False
                return
        self.system._pool.execute(self.turn)

    def _handle(self, envelope: _Envelope) -> None:
        actor = self.actor
        assert actor is not None
        reply = envelope.reply
        if reply is not None and not reply.set_running_or_notify_cancel():
            return
        try:
            result = actor.handle_message(envelope.msg)
        except BaseException as exc:
            if reply is not None:
                reply.set_exception(exc)
            else:
                self._failed(exc)
        else:
            if reply is not None:
                reply.set_result(result)

    def _failed(self, exc: BaseException) -> None:
        actor = self.actor
        assert actor is not None
        self._call_hook(actor.on_failure, exc)
        if self.strategy == "resume":
            return
        if self.strategy == "restart" and self._may_restart():
            self._call_hook(actor.on_stop)
            self.start()
            return
        self.request_stop(now=True)

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self.restarts and now - self.restarts[0] > self.within:
            self.restarts.popleft()
        if len(self.restarts) >= self.max_restarts:
            return False
        self.restarts.append(now)
        return True

    def _call_hook(self, hook: Callable[..., object], *args: Any) -> None:
        try:
            hook(*args)
        except BaseException as exc:
            self.system._report(self.ref, exc)

    # -- stopping -------------------------------------------------------

    def request_stop(self, now: bool = False) -> None:
        if now:
            with self.lock:
                already = self.stopped
                self.stopped = True
            if not already:
                self._stopped()
            return
        try:
            self.mailbox.send(_STOP)
        except ChannelClosed:
            return
        self.schedule()

    def _finish_stop(self, envelope: Any) -> None:
        if envelope is _STOP:
            with self.lock:
                already = self.stopped
                self.stopped = True
            if not already:
                self._stopped()
            return
        self._reject(envelope)

    def _reject(self, envelope: _Envelope) -> None:
        if envelope.reply is not None:
            if envelope.reply.set_running_or_notify_cancel():
                envelope.reply.set_exception(ActorStopped(f"actor {self.name!r} has stopped"))
        else:
            self.system._dead_letter(self.ref, envelope.msg)

    def _stopped(self) -> None:
        self.mailbox.close()
        for child in list(self.children):
            child.request_stop()
        if self.actor is not None:
            self._call_hook(self.actor.on_stop)
        # Whatever is still queued will never be handled.
        while True:
            try:
                envelope = self.mailbox.try_recv()
            except (Empty, ChannelClosed):
                break
            if envelope is not _STOP:
                self._reject(envelope)
        with self.lock:
            watchers, self.watchers = self.watchers, []
        for watcher in watchers:
            watcher.post(Terminated(self.ref), None, block=False)
        self.system._unregister(self)

    def add_watcher(self, watcher: _Cell) -> None:
        with self.lock:
            if not self.stopped:
                self.watchers.append(watcher)
                return
        watcher.post(Terminated(self.ref), None, block=False)


class ActorSystem:
    """Runs actors M:N on a WorkStealingPool.

    ``spawn(factory, *args, name=None, mailbox_size=1000, supervision="restart",
    max_restarts=1, within=5.0, **kwargs)``; ``lookup(name)``;
    ``dead_letters`` (``(ref, msg)`` pairs); ``shutdown(timeout=None)``;
    ``with`` shuts down."""

    def __init__(self, max_workers: int | None = None, *, backend: Any = None) -> None:
        """``backend``: the primitives to build on, one of the namespaces of
        ``fastconc.implementations()`` (default: the backend fastconc selected)."""
        self._channel_type: Callable[[int], Any] = (
            Channel if backend is None else backend.Channel)
        pool_type = WorkStealingPool if backend is None else backend.WorkStealingPool
        self._pool = pool_type(max_workers, thread_name_prefix="ActorSystem")
        self._lock = threading.Lock()
        self._actors: dict[str, _Cell] = {}
        self._dead: deque[tuple[ActorRef, Any]] = deque(maxlen=DEAD_LETTERS_KEPT)
        self._counter = 0
        self._closed = False

    def spawn(self, factory: Callable[..., Actor], *args: Any, name: str | None = None,
              mailbox_size: int = 1000, supervision: str = "restart", max_restarts: int = 1,
              within: float = 5.0, **kwargs: Any) -> ActorRef:
        if not callable(factory):
            raise TypeError("factory must be an Actor subclass or a callable returning an Actor")
        if supervision not in STRATEGIES:
            raise ValueError(f"supervision must be one of {STRATEGIES}, not {supervision!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError("max_restarts must be an int >= 0")
        with self._lock:
            if self._closed:
                raise ActorStopped("the actor system is shut down")
            self._counter += 1
            if name is None:
                name = f"{getattr(factory, '__name__', 'actor')}-{self._counter}"
            if name in self._actors:
                raise ValueError(f"an actor named {name!r} is already running")
            cell = _Cell(self, name, factory, args, kwargs, mailbox_size, supervision,
                         max_restarts, within)
            self._actors[name] = cell
        try:
            cell.start()
        except BaseException:
            self._unregister(cell)
            raise
        return cell.ref

    def lookup(self, name: str) -> ActorRef | None:
        with self._lock:
            cell = self._actors.get(name)
        return cell.ref if cell is not None else None

    @property
    def dead_letters(self) -> list[tuple[ActorRef, Any]]:
        return list(self._dead)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop every actor once the messages already accepted are handled;
        True when all stopped within the timeout."""
        with self._lock:
            self._closed = True
            cells = list(self._actors.values())
        for cell in cells:
            cell.request_stop()
        idle = self._pool.join(timeout)
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

    def _report(self, ref: ActorRef, exc: BaseException) -> None:
        threading.excepthook(threading.ExceptHookArgs(
            [type(exc), exc, exc.__traceback__, threading.current_thread()]))
