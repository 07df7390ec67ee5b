"""Pure-Python backend of select(): the reference the compiled one
(``_channel_select_c``) is tested against.

Each round tries every operation once, in an order shuffled per call, and
completes the first that can proceed.  If none can, the select parks one
lock of its own in the waiter list of every operation's channel (a receive
in its receivers, a send in its senders), tries again, and sleeps on the
lock.  Whichever channel wakes it (a waker pops the lock and releases it),
the select takes its lock back out of every list; where it is gone, a waker
popped it and spent a wake-up on the select, so the select passes one on to
that list.  A wake-up may so reach a waiter that finds nothing (it tries
again and sleeps), but none is ever lost.
"""

from __future__ import annotations

import _thread
import random
import threading
from collections import deque
from collections.abc import Iterable
from itertools import repeat
from time import monotonic
from typing import Any

from fastconc._channel_py import _AGAIN, Channel, _drain, _wake
from fastconc._support.waits import deadline as _deadline
from fastconc.errors import ChannelClosed, Timeout

__all__ = ["select"]

_TIMEOUT_MAX = threading.TIMEOUT_MAX
_allocate_lock = _thread.allocate_lock
_get_ident = _thread.get_ident
_shuffle = random.shuffle


def _attempt_all(ops: list[tuple[Channel, bool, Any]], order: list[int]) -> Any:
    """One try of every operation in order; (channel, value) or _AGAIN."""
    for i in order:
        ch, sending, item = ops[i]
        try:
            result = ch._send_once(item) if sending else ch._recv_once(None)
        except ChannelClosed:
            raise ChannelClosed(f"{ch!r} is closed") from None
        if result is not _AGAIN:
            return (ch, None if sending else result)
    return _AGAIN


def select(recv: Iterable[Channel] = (),
           send: Iterable[tuple[Channel, Any]] = (), *,
           timeout: float | None = None) -> tuple[Channel, Any]:
    """Complete exactly one of several channel operations.

    ``recv`` is an iterable of channels to receive from; ``send`` an iterable
    of ``(channel, item)`` pairs to send.  Returns ``(channel, value)``: the
    channel whose operation completed, with the item received, or None for
    a send.  Ready operations are chosen at random, so none starves.
    ``timeout=0`` never blocks; when ``timeout`` seconds pass first, raises
    Timeout.  A closed channel (drained, for a receive) is ready: its
    operation raises ChannelClosed naming it.
    """
    ops: list[tuple[Channel, bool, Any]] = []
    for ch in recv:
        if not isinstance(ch, Channel):
            raise TypeError(f"select() receives from Channels, not {type(ch).__name__}")
        ops.append((ch, False, None))
    for pair in send:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise TypeError("select() sends take (channel, item) pairs")
        if not isinstance(pair[0], Channel):
            raise TypeError(f"select() sends to Channels, not {type(pair[0]).__name__}")
        ops.append((pair[0], True, pair[1]))
    if not ops:
        raise ValueError("select() needs at least one operation")
    deadline = _deadline(timeout)
    order = list(range(len(ops)))
    _shuffle(order)
    result = _attempt_all(ops, order)
    if result is not _AGAIN:
        return result  # type: ignore[no-any-return]
    # A call nested in one of these channels' operations on this thread (a
    # finalizer, a signal handler) must not wait on its own thread.
    if any(ch._nested() for ch, _, _ in ops):
        raise Timeout("timed out waiting in select()")
    lists: list[deque[Any]] = [ch._senders if sending else ch._receivers for ch, sending, _ in ops]
    parked_sets = [ch._parked for ch, _, _ in ops]
    for ch, _, _ in ops:
        ch._note_blocking()
    me = _get_ident()
    while True:
        if deadline is not None and deadline <= monotonic():
            raise Timeout("timed out waiting in select()")
        w = _allocate_lock()
        w.acquire()
        registered = 0
        try:
            _drain(map(set.add, parked_sets, repeat(me)))
            for waiters in lists:
                # Counted first: a signal handler raising right after the
                # append must still find the lock to take out below.
                registered += 1
                waiters.append(w)
            # Registered, then tried: a change made after this try finds the
            # lock listed and releases it.
            result = _attempt_all(ops, order)
            if result is not _AGAIN:
                return result  # type: ignore[no-any-return]
            if deadline is None:
                w.acquire()
            else:
                remaining = deadline - monotonic()
                if remaining > 0:
                    w.acquire(True, min(remaining, _TIMEOUT_MAX))
        finally:
            _unregister(w, lists[:registered])
            _drain(map(set.discard, parked_sets, repeat(me)))


def _unregister(w: Any, lists: list[deque[Any]]) -> None:
    """Take the select's lock out of every list.  Where a waker popped it,
    that wake-up went to this select, which may not use it: pass one on.
    Every list is seen to even if a signal handler raises in between (the
    first such exception is raised at the end)."""
    pending: BaseException | None = None
    for waiters in lists:
        try:
            try:
                waiters.remove(w)
            except ValueError:
                _wake(waiters)
        except BaseException as exc:  # a signal handler's: finish first
            if pending is None:
                pending = exc
    if pending is not None:
        try:
            raise pending
        finally:
            pending = None
