"""_Cell, one actor's runtime: its mailbox and state, sending to it,
scheduling its turns on the pool, running them, and stopping it."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from fastconc._support.report import report_uncaught as _report
from fastconc.actors.actor import Actor, Context, Terminated
from fastconc.actors.deadlock import _add_edge, _current, _remove_edge
from fastconc.actors.mailbox import (
    _CONTROL,
    _STOP,
    _ChildFailed,
    _Envelope,
    _is_control,
    _ReplySlot,
    _settle,
    _Timeout,
)
from fastconc.actors.ref import ActorRef
from fastconc.actors.supervision import _Spec, handle_failure, resume_after_backoff
from fastconc.errors import ActorStopped, ChannelClosed, Empty, Full, PoolClosed

if TYPE_CHECKING:
    from fastconc import Channel
    from fastconc.actors.system import ActorSystem

# Messages one turn handles before the actor yields its worker.
THROUGHPUT = 64


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
                        handle_failure(self, exc)
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
                    handle_failure(self, item.exc)
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
                handle_failure(self, exc)
        else:
            if reply is not None:
                _settle(reply, True, result)

    def _guarded(self, fn: Callable[[], object]) -> None:
        """A hook that counts as a handler: its failure is supervised."""
        try:
            fn()
        except BaseException as exc:
            handle_failure(self, exc)

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
            self.system._timers.call_later(0.0, resume_after_backoff, self)

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
