"""Actors on the work-stealing pool: tell/ask, lifecycle, supervision,
deadlock detection.  Written once on the public primitives (Channel,
WorkStealingPool), so it runs on either backend.

M:N scheduling: each actor owns a bounded Channel as its mailbox and a
"scheduled" flag.  A tell that finds the actor idle schedules one turn on the
pool; a turn handles up to ``THROUGHPUT`` messages, then yields the worker.
An actor never runs two handlers at once, and messages from one sender
arrive in the order sent.

Timers (``receive_timeout``, restart back-off) run on one timer thread per
system that sleeps on a condition variable until the next deadline.
"""

from __future__ import annotations

import concurrent.futures as _futures
import heapq
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from fastconc import Channel, WorkStealingPool
from fastconc._args import int_arg, seconds_arg
from fastconc._report import report_uncaught as _report
from fastconc.errors import (
    ActorStopped,
    ChannelClosed,
    Deadlock,
    Empty,
    Full,
    PoolClosed,
    Timeout,
)

__all__ = ["Actor", "ActorRef", "ActorSystem", "Context", "Terminated"]

# Messages one turn handles before the actor yields its worker.
THROUGHPUT = 64
# Dead letters kept for inspection (oldest dropped first).
DEAD_LETTERS_KEPT = 10_000

STRATEGIES = ("restart", "resume", "stop", "escalate")
_SPAWN_OPTIONS = ("name", "mailbox_size", "supervision", "max_restarts", "within", "backoff",
                  "overflow")
OVERFLOW = ("block", "drop", "raise")

# Restart-backoff jitter draws from a generator of its own: the random
# module's shared one belongs to the application (a seeded sequence must not
# shift because an actor restarted).
_jitter = random.Random()


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


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _timeout_arg(timeout: object) -> float | None:
    """A ``timeout`` argument checked: None (or inf) waits forever."""
    if timeout is None:
        return None
    seconds = seconds_arg(timeout, "timeout", zero_ok=True)
    return None if seconds == float("inf") else seconds


def _left(deadline: float | None) -> float | None:
    """Seconds left until deadline (None: no deadline), never negative."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


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


def _check_and_add_edge(asker: _Cell, target: _Cell) -> None:
    """Raise Deadlock if asker -> target would close a cycle, else add it."""
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
        _waits_on.setdefault(asker, []).append(target)


# ---------------------------------------------------------------- the runtime


class _Envelope:
    __slots__ = ("msg", "reply")

    def __init__(self, msg: Any, reply: Future[Any] | _ReplySlot | None) -> None:
        self.msg = msg
        self.reply = reply




class _Timeout:
    __slots__ = ("generation",)

    def __init__(self, generation: int) -> None:
        self.generation = generation


class _ChildFailed:
    __slots__ = ("child", "exc")

    def __init__(self, child: _Cell, exc: BaseException) -> None:
        self.child = child
        self.exc = exc


_NO_KWARGS: dict[str, Any] = {}  # shared, never mutated: most actors take no kwargs


class _ReplySlot:
    """Where the handler's answer to an ask() from outside the pool goes: the
    three Future methods _handle and _reject use, over a one-slot Channel."""

    __slots__ = ("channel",)

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def set_running_or_notify_cancel(self) -> bool:
        return not self.channel.closed  # closed: the asker timed out and left

    def set_result(self, result: Any) -> None:
        self._put((True, result))

    def set_exception(self, exc: BaseException) -> None:
        self._put((False, exc))

    def _put(self, answer: tuple[bool, Any]) -> None:
        try:
            self.channel.try_send(answer)
        except ChannelClosed:
            pass


def _settle(reply: Future[Any] | _ReplySlot, ok: bool, value: Any) -> None:
    """Answer an ask.  A Future runs its done callbacks here and lets their
    BaseExceptions (KeyboardInterrupt...) through: reported instead, or they
    would escape the actor's turn and leave it scheduled forever."""
    try:
        if ok:
            reply.set_result(value)
        else:
            reply.set_exception(value)
    except BaseException as exc:
        _report(exc)


class _StopMarker:
    __slots__ = ()


_CONTROL = frozenset({_Envelope, _StopMarker, _Timeout, _ChildFailed})
# Queued by request_stop() when the mailbox has room: the actor stops after
# what came before it.
_STOP = _StopMarker()


def _is_control(msg: object) -> bool:
    """A user message that happens to be one of our own wrapper types must
    still travel wrapped, or it would be taken for a control item."""
    return type(msg) in _CONTROL


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


class _Cell:
    """One actor's runtime state.  Kept small: 100,000 idle actors should
    cost little more than their mailboxes (lists are made on first use)."""

    __slots__ = ("actor", "children", "generation", "lock", "mailbox", "name", "parent",
                 "ref", "restarts", "scheduled", "spec", "stop_requested", "stopped",
                 "suspended", "system", "system_msgs", "watchers", "__weakref__")

    def __init__(self, system: ActorSystem, name: str, spec: _Spec, mailbox_size: int,
                 parent: _Cell | None) -> None:
        self.system = system
        self.name = name
        self.spec = spec
        self.parent = parent
        self.mailbox: Channel[Any] = system._channel_type(mailbox_size)
        self.lock = threading.Lock()
        self.scheduled = False
        self.stopped = False
        # Stop after the current handler, dropping what is queued: set by
        # context.stop() in a handler, and by a shutdown whose timeout passed.
        self.stop_requested = False
        self.suspended = False  # waiting out a restart back-off
        self.generation = 0  # messages handled; a receive timeout checks it did not move
        self.restarts: deque[float] | None = None
        self.children: list[_Cell] | None = None
        self.watchers: list[_Cell] | None = None
        # Terminated and child failures that found the mailbox full: they
        # never wait for room (the sender may be the very thread this actor
        # waits on) and are never dropped; the turn takes them first.
        # Made on first use, under ``lock``.
        self.system_msgs: deque[Any] | None = None
        self.ref = ActorRef(self)
        self.actor: Actor | None = None

    @property
    def context(self) -> Context:
        return Context(self)

    # -- sending --------------------------------------------------------

    def tell(self, msg: Any) -> None:
        overflow = self.spec.overflow
        if overflow == "block":
            self.post(msg, None, block=True)
        elif not self.post(msg, None, block=False, dead_letter=False):
            # Refused, as full or closed: a stop may come between the two, so
            # the dead letter is written here, once, whichever it was.
            if overflow == "raise" and not self.mailbox.closed:
                raise Full(f"mailbox of actor {self.name!r} is full")
            self.system._dead_letter(self.ref, msg)

    def post(self, msg: Any, reply: Future[Any] | _ReplySlot | None, block: bool,
             dead_letter: bool = True, timeout: float | None = None) -> bool:
        """Queue msg (False: full without block, or stopping -> dead letter,
        unless ``dead_letter`` is false; Timeout: still full after
        ``timeout``).  A tell is queued as the bare message (no wrapper to
        allocate); an ask as an _Envelope carrying the reply future."""
        envelope = msg if reply is None and not _is_control(msg) else _Envelope(msg, reply)
        try:
            if block:
                self.mailbox.send(envelope, timeout)
            elif not self.mailbox.try_send(envelope):
                return False
        except ChannelClosed:
            if reply is None and dead_letter:
                self.system._dead_letter(self.ref, msg)
            return False
        self.schedule()
        return True

    def post_control(self, item: object, block: bool = True) -> bool:
        """Queue a control item; False when it was not (full without block,
        or stopping)."""
        try:
            if block:
                self.mailbox.send(item)
            elif not self.mailbox.try_send(item):
                return False
        except ChannelClosed:
            return False
        self.schedule()
        return True

    def post_system(self, item: object) -> bool:
        """Queue Terminated or a child's failure without ever blocking or
        dropping it: into the mailbox when it has room, else beside it.
        False when the actor has stopped."""
        try:
            if not self.mailbox.try_send(item):
                with self.lock:
                    if self.stopped:
                        return False
                    if self.system_msgs is None:
                        self.system_msgs = deque()
                    self.system_msgs.append(item)
        except ChannelClosed:
            return False
        self.schedule()
        return True

    def schedule(self) -> None:
        with self.lock:
            # Stopped: its mailbox is closed and was drained, nothing to run
            # (and the system's pool may be shut down already).
            if self.scheduled or self.suspended or self.stopped:
                return
            self.scheduled = True
        self._execute_turn()

    def _execute_turn(self) -> None:
        """Hand a turn to the pool (``scheduled`` already set)."""
        try:
            self.system._pool.execute(self.turn)
        except PoolClosed:
            # A shutdown gave up waiting and shut the pool down: no turn will
            # ever run again, so nothing else can be handled.
            self._stop_now()
            with self.lock:
                self.scheduled = False

    # -- running --------------------------------------------------------

    def start(self) -> None:
        spec = self.spec
        actor = spec.factory(*spec.args, **spec.kwargs)
        if not isinstance(actor, Actor):
            raise TypeError(f"the factory must return an Actor, not {type(actor).__name__}")
        actor._fc_cell = self
        self.actor = actor
        self._call_hook(actor.on_start)
        self._arm_timeout()

    def turn(self) -> None:
        """Handle up to THROUGHPUT messages, then give the worker back."""
        stack = _current.stack
        outer = stack[-1] if stack else None
        if outer is not None:
            _add_edge(outer, self)  # outer's blocked handler resumes after this turn
        stack.append(self)
        handled = 0
        try:
            recv = self.mailbox.try_recv
            while handled < THROUGHPUT and not self.suspended:
                if self.stop_requested:
                    self._stop_now()
                    break
                try:
                    # Taken first: what waits beside a full mailbox.
                    waiting = self.system_msgs
                    item = waiting.popleft() if waiting else recv()
                except Empty:
                    break
                except ChannelClosed:
                    # Closed by request_stop() on a full mailbox (or
                    # stopped) and drained: every message it had accepted
                    # was handled.
                    self._stop_now()
                    break
                handled += 1
                kind = type(item)
                if kind not in _CONTROL:  # a tell: the bare message
                    if self.stopped:
                        self.system._dead_letter(self.ref, item)
                        continue
                    self.generation += 1
                    try:
                        self.actor.handle_message(item)  # type: ignore[union-attr]
                    except BaseException as exc:
                        self._failed(exc)
                elif item is _STOP:
                    self._stop_now()
                elif kind is _Envelope:
                    if self.stopped:
                        self._reject(item)
                    else:
                        self.generation += 1
                        self._handle(item)
                elif self.stopped:
                    pass
                elif kind is _Timeout:
                    if item.generation == self.generation and self.actor is not None:
                        self._guarded(self.actor.handle_timeout)
                elif kind is _ChildFailed:
                    self._failed(item.exc)
            if self.stop_requested:
                self._stop_now()
        finally:
            stack.pop()
            if outer is not None:
                _remove_edge(outer, self)
        if handled and not self.stopped:
            self._arm_timeout()
        self._end_turn()

    def _end_turn(self) -> None:
        """After a turn: idle again, or another turn for what came meanwhile
        (or for a stop() that closed the mailbox after this turn looked: that
        turn finds it closed and drained and stops the actor)."""
        if self.stop_requested and not self.stopped:
            self._stop_now()
        with self.lock:
            if self.stopped or self.suspended or (
                    len(self.mailbox) == 0 and not self.mailbox.closed
                    and not self.system_msgs):
                # A tell or stop() from now on finds the actor idle and
                # schedules a turn itself.
                self.scheduled = False
                return
        self._execute_turn()

    def try_run_inline(self) -> bool:
        """Take the actor's turn for the calling thread if it is idle and its
        mailbox empty (then no other thread can run it until end_inline)."""
        with self.lock:
            if (self.scheduled or self.suspended or self.stopped or self.mailbox.closed
                    or len(self.mailbox) or self.system_msgs):
                return False
            self.scheduled = True
            return True

    def handle_inline(self, msg: Any) -> Any:
        """One ask handled on the asking thread, as a turn would handle it."""
        stack = _current.stack
        stack.append(self)
        try:
            self.generation += 1
            return self.actor.handle_message(msg)  # type: ignore[union-attr]
        finally:
            stack.pop()

    def end_inline(self) -> None:
        if self.stop_requested:
            self._stop_now()
        if not self.stopped:
            self._arm_timeout()
        self._end_turn()

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
                _settle(reply, False, exc)
            else:
                self._failed(exc)
        else:
            if reply is not None:
                _settle(reply, True, result)

    def _guarded(self, fn: Callable[[], object]) -> None:
        """A hook that counts as a handler: its failure is supervised."""
        try:
            fn()
        except BaseException as exc:
            self._failed(exc)

    def _arm_timeout(self) -> None:
        actor = self.actor
        # Stopping: no more timeouts, or a shutdown that gave up would leave
        # the timer thread re-arming them until the actor's last turn.
        if (actor is not None and actor.receive_timeout is not None
                and not self.stop_requested):
            self.system._timers.call_later(actor.receive_timeout, self._timed_out,
                                           self.generation)

    def _timed_out(self, generation: int) -> None:
        # Never blocks the timer thread: a full mailbox means the actor is
        # busy, so there is no timeout to report anyway.
        if generation == self.generation and not self.stopped:
            self.post_control(_Timeout(generation), block=False)

    # -- supervision ----------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        actor = self.actor
        assert actor is not None
        self._call_hook(actor.on_failure, exc)
        strategy = self.spec.strategy
        if strategy == "resume":
            return
        if strategy == "escalate":
            if (self.parent is None
                    or not self.parent.post_system(_ChildFailed(self, exc))):
                _report(exc)  # no parent left to handle it
            self._stop_now()
            return
        if strategy == "restart":
            delay = self._restart_delay()
            if delay is not None:
                self._call_hook(actor.on_stop)
                self.actor = None
                if delay <= 0:
                    self._restart()
                elif self.stop_requested:
                    self._stop_now()  # stopping anyway: no back-off to wait out
                else:
                    with self.lock:
                        self.suspended = True
                    self.system._timers.call_later(delay, self._resume_after_backoff, None)
                return
        self._stop_now()

    def _restart_delay(self) -> float | None:
        """None when over the limit, else the back-off before restarting:
        exponential in the restarts within the window, with jitter."""
        spec = self.spec
        now = time.monotonic()
        if self.restarts is None:
            self.restarts = deque()
        while self.restarts and now - self.restarts[0] > spec.within:
            self.restarts.popleft()
        if len(self.restarts) >= spec.max_restarts:
            return None
        self.restarts.append(now)
        first, most = spec.backoff
        if first <= 0:
            return 0.0
        delay = min(most, first * 2.0 ** (len(self.restarts) - 1))
        return float(delay * _jitter.uniform(0.5, 1.0))  # jitter: restarts do not march in step

    def _restart(self) -> bool:
        """start() again after a failure.  If that fails too (the factory
        or the new instance raised), the actor cannot run: report it and stop
        the actor, rejecting what its mailbox holds, rather than leave it
        looking alive with no instance to handle anything."""
        try:
            self.start()
        except BaseException as exc:
            _report(exc)
            self._stop_now()
            return False
        return True

    def _resume_after_backoff(self, _: object) -> None:
        if self.stopped:
            return
        if self.stop_requested:  # a shutdown gave up waiting meanwhile
            self._stop_now()
            return
        if not self._restart():
            return
        with self.lock:
            self.suspended = False
            self.scheduled = False
        self.schedule()

    def _call_hook(self, hook: Callable[..., object], *args: Any) -> None:
        try:
            hook(*args)
        except BaseException as exc:
            _report(exc)

    # -- stopping -------------------------------------------------------

    def request_stop(self) -> None:
        """Stop after the messages already queued; never blocks.

        With room in the mailbox, a stop marker is queued behind them.  A
        full mailbox has no slot for one, and waiting for a slot lasts as
        long as the handler running (forever, for one that never returns):
        closing the mailbox is the request then.  It takes nothing more
        (later senders, and those waiting for room, get the dead letters or
        ActorStopped); the turn handles what it holds, finds it closed and
        drained, and stops the actor.  Either way the actor gets a turn, in
        case it is idle."""
        try:
            if not self.mailbox.try_send(_STOP):
                self.mailbox.close()
        except ChannelClosed:
            pass  # stopping already
        self.schedule()

    def give_up(self) -> None:
        """A shutdown's timeout passed: stop as soon as the current handler
        returns, what is still queued going to the dead letters (as
        context.stop() does).  A turn already queued or running sees the
        flag; an actor waiting out a restart back-off stops on the timer
        thread now rather than when the back-off ends."""
        self.stop_requested = True
        if self.suspended:
            self.system._timers.call_later(0.0, self._resume_after_backoff, None)

    def _stop_now(self) -> None:
        with self.lock:
            if self.stopped:
                return
            self.stopped = True
        self.mailbox.close()
        for child in self.children or ():
            child.request_stop()
        if self.actor is not None:
            self._call_hook(self.actor.on_stop)
        # Whatever is still queued will never be handled.
        while True:
            try:
                item = self.mailbox.try_recv()
            except (Empty, ChannelClosed):
                break
            if type(item) is _Envelope:
                self._reject(item)
            elif type(item) not in _CONTROL:
                self.system._dead_letter(self.ref, item)
        with self.lock:
            watchers, self.watchers = self.watchers or [], None
            system_msgs, self.system_msgs = self.system_msgs or (), None
        for item in system_msgs:
            if type(item) is _ChildFailed:
                _report(item.exc)  # no parent left to handle it
            else:
                self.system._dead_letter(self.ref, item)
        for watcher in watchers:
            watcher.post_system(Terminated(self.ref))
        self.system._unregister(self)

    def _reject(self, envelope: _Envelope) -> None:
        if envelope.reply is not None:
            if envelope.reply.set_running_or_notify_cancel():
                _settle(envelope.reply, False, ActorStopped(f"actor {self.name!r} has stopped"))
        else:
            self.system._dead_letter(self.ref, envelope.msg)

    def add_watcher(self, watcher: _Cell) -> None:
        with self.lock:
            if not self.stopped:
                if self.watchers is None:
                    self.watchers = []
                self.watchers.append(watcher)
                return
        watcher.post_system(Terminated(self.ref))

    def add_child(self, child: _Cell) -> None:
        if self.children is None:
            self.children = []
        self.children.append(child)


class _Timers:
    """One thread per system running callbacks at deadlines (receive
    timeouts, restart back-offs); started on first use, asleep on a
    condition variable until the next deadline."""

    def __init__(self, name: str) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Callable[[Any], object], Any]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._name = name

    def call_later(self, delay: float, fn: Callable[[Any], object], arg: Any) -> None:
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn, arg))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                _, _, fn, arg = heapq.heappop(self._heap)
            try:
                fn(arg)
            except BaseException as exc:  # a timer callback must not kill the timer
                _report(exc)

    def close(self, timeout: float | None = None) -> None:
        """Run nothing more; wait up to ``timeout`` seconds for a callback
        that is running (a restart runs the actor's factory) to return."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)


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
