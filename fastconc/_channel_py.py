"""Pure-Python backend of Channel, and the parking core it shares with Queue
(``_channel_queue_py``).

Same API and semantics as the compiled ``_channel_c``: a deque behind one
lock, as in CPython's Lib/queue.py, with waiters parked on locks of their own.

Re-entrant use.  A finalizer (``__del__``, a weakref callback) or a signal
handler runs on top of whatever its thread was doing, so it may call this
channel while the same thread is inside one of its operations (the cyclic GC
can run at any allocation, bpo-14976).  The compiled twin never runs Python
code under its mutex; here the lock is held while Python code runs, so:

- the lock is a ``threading.RLock``: a nested call takes it again instead of
  deadlocking on it (its owner is recorded in C, in the same step as the
  acquisition, so no moment exists when the lock is held but not yet owned);
- CPython runs signal handlers, the cyclic GC and so finalizers only at a
  call, an allocation, a backward jump or a function's start.  Every
  check-then-act below has none of these between the check and the act (or
  is one C call: ``deque.insert`` on a bounded deque, ``list.extend`` over a
  ``map`` of deque methods), and counters change by attribute arithmetic
  only, so a nested call always finds the state consistent and its change
  is never overwritten: no item is lost or duplicated, capacities hold;
- a nested call never waits (it would wait on its own thread): when it cannot
  complete at once it does what a zero timeout does (Timeout, Full, Empty;
  ``Queue.join`` raises Deadlock).  A call is nested when its thread holds the
  lock or is parked in a call on the same object.

Waiters park on a lock of their own, listed in a deque; a waker pops one and
releases it (each lock is released by exactly one waker, so no wake-up is
counted twice, unlike a re-entered ``threading.Condition.notify``; a
select's lock, listed in several deques, is the exception, see
``_channel_select_py``).  A waiter
registers, tries again, then sleeps; a woken one always tries again before
it gives up, and one leaving with a wake-up it did not use passes it on.
"""

from __future__ import annotations

import _thread
import os
import sys
import threading
import types
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import repeat
from time import monotonic
from typing import Any

from fastconc._support.args import int_arg
from fastconc._support.waits import deadline as _deadline
from fastconc.errors import ChannelClosed, Empty, Timeout

__all__ = ["Channel"]

# recv_many() takes at most this many items per call (as the compiled one).
_MAX_BATCH = 65536
# deque.insert(_END, x) appends, or raises IndexError on a full bounded deque.
_END = sys.maxsize
_TIMEOUT_MAX = threading.TIMEOUT_MAX
_allocate_lock = _thread.allocate_lock
_get_ident = _thread.get_ident
_popleft = deque.popleft
_AGAIN: Any = object()   # an attempt that could not complete yet
_release = _thread.LockType.release
_drain: Callable[[Iterable[Any]], None] = deque(maxlen=0).extend  # consumes an iterator


def _wake(waiters: deque[Any], n: int = 1) -> None:
    """Wake up to n parked waiters (n < 0: all of them)."""
    # One C call: nothing (no signal handler) runs between a pop and its release.
    try:
        _drain(map(_release, map(_popleft, repeat(waiters) if n < 0 else repeat(waiters, n))))
    except IndexError:   # no more waiters
        pass
    except RuntimeError as exc:
        # An unlocked lock: a select's (_channel_select_py), listed in several
        # channels and already released by another.  That select passes this
        # wake-up on; the ones after it in this call still go out (a few too
        # many when some went out before it: harmless, each re-checks).
        if type(exc) is not RuntimeError:   # RecursionError: not ours to hide
            raise
        if n != 1:
            _wake(waiters, n - 1 if n > 0 else n)


# Every object a thread has blocked on, so that a child process can forget
# the parent's waiters (below).  Added to only on the way to sleep.
_blocked_on: weakref.WeakSet[_Parking] = weakref.WeakSet()
_blocked_on_lock = _allocate_lock()


def _forget_waiters_in_child() -> None:
    """After fork(): the threads parked in the parent did not come along.
    Their locks would take wake-ups meant for the child's own waiters."""
    global _blocked_on_lock
    _blocked_on_lock = _allocate_lock()   # another thread may have held it
    for obj in list(_blocked_on):
        for waiters in obj._waiter_lists():
            waiters.clear()
        obj._parked.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_waiters_in_child)


class _Parking:
    """What Channel and Queue share: the lock, the parked threads, and the
    loop of a blocking call."""

    __slots__ = ()
    _lock: Any   # a threading.RLock
    _parked: set[int]

    def _waiter_lists(self) -> tuple[deque[Any], ...]:
        raise NotImplementedError

    def _note_blocking(self) -> None:
        if self not in _blocked_on:
            with _blocked_on_lock:
                _blocked_on.add(self)

    def _nested(self) -> bool:
        """True when this thread is already inside an operation of this object
        (a finalizer or signal handler called us from there)."""
        return bool(self._lock._is_owned()) or _get_ident() in self._parked

    def _block(self, attempt: Callable[[Any], Any], arg: Any, waiters: deque[Any],
               deadline: float | None) -> Any:
        """After attempt(arg) returned _AGAIN: repeat it until it returns
        anything else, parked on waiters in between.  Returns _AGAIN when the
        deadline passes first, or at once when this call is nested (it must
        not wait on its own thread)."""
        if self._nested() or (deadline is not None and deadline <= monotonic()):
            return _AGAIN
        me = _get_ident()
        parked = self._parked
        w: Any = None    # our registration while it may be in waiters
        self._note_blocking()
        try:
            parked.add(me)
            while True:
                if w is None:
                    # Register, then try again before sleeping: a change made
                    # after that try finds us in waiters and wakes us.
                    w = _allocate_lock()
                    w.acquire()
                    waiters.append(w)
                result = attempt(arg)
                if result is not _AGAIN:
                    return result
                if deadline is None:
                    w.acquire()
                    w = None      # popped and released: the next try uses it
                    continue
                remaining = deadline - monotonic()
                if remaining <= 0:
                    return _AGAIN
                if not w.acquire(True, min(remaining, _TIMEOUT_MAX)):
                    # Timed out.  If a waker popped us meanwhile, its wake-up
                    # is ours: the next try (made before giving up) uses it.
                    try:
                        waiters.remove(w)
                    except ValueError:
                        pass
                w = None
        finally:
            try:
                if w is not None:
                    try:
                        waiters.remove(w)
                    except ValueError:
                        _wake(waiters)
            finally:
                # This try is no-op but for Python 3.10: its eval loop runs a
                # pending signal handler on entry to an exception handler
                # unless the handler starts with SETUP_FINALLY (ceval.c's
                # main loop skips the check there).  A KeyboardInterrupt
                # raised on entry to this finally would skip the discard and
                # leave the thread marked parked for good.
                try:
                    parked.discard(me)
                finally:
                    pass


class Channel(_Parking):
    """Bounded multi-producer multi-consumer channel.

    ``send`` blocks while the channel holds ``capacity`` items (backpressure);
    ``recv`` blocks while it is empty.  ``close()`` stops senders at once
    (:class:`ChannelClosed`) and lets receivers drain what is left before they
    get :class:`ChannelClosed` too.
    """

    __slots__ = ("_capacity", "_items", "_lock", "_closed", "_parked", "_senders",
                 "_receivers", "__weakref__")

    def __init__(self, capacity: int) -> None:
        if hasattr(self, "_lock"):
            raise RuntimeError("Channel is already initialised")
        # Clamped like the compiled Channel's (a Py_ssize_t there).
        self._capacity = min(int_arg(capacity, "capacity", 1), sys.maxsize)
        # Bounded: insert(_END, x) is the whole "append if there is room".
        self._items: deque[Any] = deque(maxlen=self._capacity)
        self._lock = threading.RLock()
        self._closed = False
        self._parked: set[int] = set()
        self._senders: deque[Any] = deque()     # parked senders' locks
        self._receivers: deque[Any] = deque()   # parked receivers' locks

    @property
    def capacity(self) -> int:
        """The most items the channel holds at once."""
        return self._capacity

    def _waiter_lists(self) -> tuple[deque[Any], ...]:
        return (self._senders, self._receivers)

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (f"<fastconc.Channel len={len(self._items)} capacity={self._capacity}"
                f"{' closed' if self._closed else ''}>")

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    # One attempt each, under the lock; _AGAIN when it would have to wait.

    def _send_once(self, item: Any) -> Any:
        with self._lock:
            if self._closed:
                raise ChannelClosed("channel is closed")
            try:
                self._items.insert(_END, item)
            except IndexError:
                return _AGAIN
        if self._receivers:
            _wake(self._receivers)
        return None

    def _send_batch(self, batch: tuple[Any, ...]) -> Any:
        """Send a prefix of batch (as much as fits, at least one item)."""
        done: list[None] = []
        # Built before the check: an allocation may run a finalizer.
        inserts = map(self._items.insert, repeat(_END), batch)
        with self._lock:
            if self._closed:
                raise ChannelClosed("channel is closed")
            try:
                done.extend(inserts)     # one C call: stops when full
            except IndexError:
                pass
        n = len(done)
        if not n:
            return _AGAIN
        if self._receivers:
            _wake(self._receivers, n)
        return n

    def _recv_once(self, _: Any) -> Any:
        with self._lock:
            try:
                item = self._items.popleft()
            except IndexError:
                if self._closed:
                    raise ChannelClosed("channel is closed") from None
                return _AGAIN
        if self._senders:
            _wake(self._senders)
        return item

    def _recv_batch(self, want: int) -> Any:
        got: list[Any] = []
        pops = map(_popleft, repeat(self._items, want))
        with self._lock:
            try:
                got.extend(pops)         # one C call: stops when empty
            except IndexError:
                pass
            if not got:
                if self._closed:
                    raise ChannelClosed("channel is closed")
                return _AGAIN
        if self._senders:
            _wake(self._senders, len(got))
        return got

    def send(self, item: Any, timeout: float | None = None) -> None:
        """Put item in, blocking while the channel is full.

        Raises Timeout when ``timeout`` seconds pass first, ChannelClosed when
        the channel is (or gets) closed.
        """
        deadline = _deadline(timeout)
        if self._send_once(item) is _AGAIN and \
                self._block(self._send_once, item, self._senders, deadline) is _AGAIN:
            raise Timeout("timed out waiting on the channel")

    def try_send(self, item: Any) -> bool:
        """Put item in if there is room now; return False when full.

        Raises ChannelClosed when the channel is closed.
        """
        return self._send_once(item) is not _AGAIN

    def send_many(self, items: Iterable[Any], timeout: float | None = None) -> int:
        """Send every item of ``items`` in order, blocking for room as needed.

        Returns how many were sent.  That is fewer than ``len(items)`` only when
        the timeout passed or the channel was closed part-way; when nothing at
        all could be sent, Timeout or ChannelClosed is raised instead.  A
        non-sequence iterable is read to the end before anything is sent.
        """
        deadline = _deadline(timeout)
        batch = items if type(items) is tuple else tuple(items)
        n = len(batch)
        done = 0
        while done < n:
            rest = batch[done:] if done else batch
            try:
                sent = self._send_batch(rest)
                if sent is _AGAIN:
                    sent = self._block(self._send_batch, rest, self._senders, deadline)
            except ChannelClosed:
                if done:
                    return done
                raise
            if sent is _AGAIN:
                if done:
                    return done
                raise Timeout("timed out waiting on the channel")
            done += sent
        return done

    def recv(self, timeout: float | None = None) -> Any:
        """Take the oldest item, blocking while the channel is empty.

        Raises Timeout when ``timeout`` seconds pass first, ChannelClosed once
        the channel is closed and drained.
        """
        deadline = _deadline(timeout)
        item = self._recv_once(None)
        if item is _AGAIN:
            item = self._block(self._recv_once, None, self._receivers, deadline)
            if item is _AGAIN:
                raise Timeout("timed out waiting on the channel")
        return item

    def try_recv(self) -> Any:
        """Take the oldest item if there is one; raise Empty if not.

        Raises ChannelClosed once the channel is closed and drained.
        """
        item = self._recv_once(None)
        if item is _AGAIN:
            raise Empty("channel is empty")
        return item

    def recv_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        """Wait for at least one item, then take up to ``max_items`` at once.

        Returns a non-empty list.  Raises Timeout if nothing arrived in time,
        ChannelClosed once the channel is closed and drained.
        """
        want = min(int_arg(max_items, "max_items", 1), self._capacity, _MAX_BATCH)
        deadline = _deadline(timeout)
        got = self._recv_batch(want)
        if got is _AGAIN:
            got = self._block(self._recv_batch, want, self._receivers, deadline)
            if got is _AGAIN:
                raise Timeout("timed out waiting on the channel")
        return got  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the channel: wake every waiter; senders get ChannelClosed,
        receivers drain what is left first.  Closing twice is harmless."""
        with self._lock:
            self._closed = True
        _wake(self._receivers, -1)
        _wake(self._senders, -1)

    def __iter__(self) -> Iterator[Any]:
        """Yield received items until the channel is closed and drained."""
        while True:
            try:
                item = self.recv()
            except ChannelClosed:
                return
            yield item

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    __class_getitem__: Any = classmethod(types.GenericAlias)
