"""Pure-Python backend of Channel and Queue.

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
counted twice, unlike a re-entered ``threading.Condition.notify``).  A waiter
registers, tries again, then sleeps; a woken one always tries again before
it gives up, and one leaving with a wake-up it did not use passes it on.
"""

from __future__ import annotations

import _thread
import sys
import threading
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import repeat
from time import monotonic
from typing import Any

from fastconc._support.args import int_arg, maxsize_arg
from fastconc._support.waits import deadline as _deadline
from fastconc.errors import ChannelClosed, Deadlock, Empty, Full, Timeout

__all__ = ["Channel", "Queue"]

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


class _Parking:
    """What Channel and Queue share: the lock, the parked threads, and the
    loop of a blocking call."""

    __slots__ = ()
    _lock: Any   # a threading.RLock
    _parked: set[int]

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
                parked.discard(me)


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


class Queue(_Parking):
    """Drop-in replacement for :class:`queue.Queue` (including Python 3.13's
    ``shutdown``, on every Python version).

    If maxsize is <= 0, the queue size is infinite.
    """

    def __init__(self, maxsize: int = 0) -> None:
        if hasattr(self, "_mutex"):
            raise RuntimeError("Queue is already initialised")
        self._maxsize = maxsize_arg(maxsize)
        self._bound = self._bound_of(self._maxsize)
        self._limit = self._bound or sys.maxsize
        self._items: deque[Any] = deque()
        # _count is len(_items) at every point where a finalizer may run: the
        # room check compares it (no call between the check and the append).
        self._count = 0
        self._mutex = self._lock = threading.RLock()
        self._parked: set[int] = set()
        self._putters: deque[Any] = deque()
        self._getters: deque[Any] = deque()
        self._joiners: deque[Any] = deque()
        self._unfinished = 0
        self._shutdown = False

    @staticmethod
    def _bound_of(size: int) -> int:
        # An exact int (an int subclass could run Python code in a comparison);
        # 0 = unbounded, as is a maxsize the compiled Queue cannot hold.
        bound = int.__index__(size)
        return bound if 0 < bound < sys.maxsize else 0

    @property
    def maxsize(self) -> int:
        """The bound (<= 0: unbounded); assignable, as in queue.Queue."""
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value: int) -> None:
        """Change the bound at run time; <= 0 means unbounded.

        Raising it lets blocked put() calls proceed at once.  Lowering it
        below qsize() drops nothing: put() waits until the queue drains
        below the new bound.
        """
        size = maxsize_arg(value)
        bound = self._bound_of(size)
        with self._lock:
            # `_old` outlives the lock: the previous value's last reference must
            # not go (and run an int subclass's __del__) while it is held.
            _old = self._maxsize
            self._maxsize = size
            self._bound = bound
            self._limit = bound or sys.maxsize
        # Blocked puts try again; queue.Queue wakes nobody here, leaving
        # put() blocked below a raised bound until some get().
        _wake(self._putters, -1)

    @property
    def is_shutdown(self) -> bool:
        """True once shutdown() has been called."""
        return self._shutdown

    @property
    def unfinished_tasks(self) -> int:
        """Items put and not yet marked done with task_done()."""
        return self._unfinished

    def __repr__(self) -> str:
        return f"<fastconc.Queue qsize={len(self._items)} maxsize={self._maxsize!r}>"

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def task_done(self) -> None:
        """Indicate that a formerly enqueued task is complete.

        Raises a ValueError if called more times than there were items placed
        in the queue.
        """
        with self._lock:
            if self._unfinished > 0:      # act on the fall-through (3.10)
                self._unfinished -= 1
                done = not self._unfinished
            else:
                raise ValueError("task_done() called too many times")
        if done:
            _wake(self._joiners, -1)

    def _all_done(self, _: Any) -> Any:
        return None if not self._unfinished else _AGAIN

    def join(self) -> None:
        """Block until every item put has been marked done with task_done()."""
        if self._all_done(None) is _AGAIN and \
                self._block(self._all_done, None, self._joiners, None) is _AGAIN:
            raise Deadlock("join() from inside an operation of the same queue on this "
                           "thread (a finalizer or signal handler) would wait for itself")

    def qsize(self) -> int:
        """Return the approximate size of the queue."""
        return len(self._items)

    def empty(self) -> bool:
        """Return True if the queue is empty (racy, as in queue.Queue)."""
        return not self._items

    def full(self) -> bool:
        """Return True if the queue is full (racy, as in queue.Queue)."""
        return 0 < self._bound <= len(self._items)

    def _put_once(self, item: Any) -> Any:
        with self._lock:
            if not self._shutdown and self._count < self._limit:
                self._count += 1
                self._unfinished += 1
                self._items.append(item)
            elif self._shutdown:
                raise ChannelClosed("queue is closed")
            else:
                return _AGAIN
        if self._getters:
            _wake(self._getters)
        return None

    def _get_once(self, _: Any) -> Any:
        with self._lock:
            if self._count:
                self._count -= 1
                item = self._items.popleft()
            elif self._shutdown:
                raise ChannelClosed("queue is closed")
            else:
                return _AGAIN
        if self._putters:
            _wake(self._putters)
        return item

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put an item into the queue.

        With ``block`` true and ``timeout`` None, wait for a free slot; with a
        non-negative timeout, raise Full after that many seconds; with
        ``block`` false, raise Full at once if there is no room.  Raises
        ChannelClosed (a queue.ShutDown) once the queue is shut down.
        """
        # block and timeout are read as the compiled Queue reads them: at once
        # when the queue is bounded, only once it turns out full when not
        # (queue.Queue never reads them there).
        unread = False
        deadline = None
        if timeout is None and (block is True or block is False):
            wait = block
        elif self._bound:
            wait = bool(block)
            if wait and timeout is not None:
                deadline = _deadline(timeout)
        else:
            wait = False
            unread = True
        if self._put_once(item) is not _AGAIN:
            return
        if unread:
            # maxsize was lowered (and reached) since: now they count.
            wait = bool(block)
            if wait and timeout is not None:
                deadline = _deadline(timeout)
        if not wait or self._block(self._put_once, item, self._putters, deadline) is _AGAIN:
            raise Full("queue is full")

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return an item from the queue.

        With ``block`` true and ``timeout`` None, wait for an item; with a
        non-negative timeout, raise Empty after that many seconds; with
        ``block`` false, raise Empty at once if there is none.  Raises
        ChannelClosed (a queue.ShutDown) once the queue is shut down and empty.
        """
        wait = bool(block)
        deadline = _deadline(timeout) if wait else None
        item = self._get_once(None)
        if item is _AGAIN:
            if wait:
                item = self._block(self._get_once, None, self._getters, deadline)
            if item is _AGAIN:
                raise Empty("queue is empty")
        return item

    def put_nowait(self, item: Any) -> None:
        """Put an item only if a slot is free right now, else raise Full."""
        return self.put(item, False)

    def get_nowait(self) -> Any:
        """Get an item only if one is there right now, else raise Empty."""
        return self.get(False)

    def shutdown(self, immediate: bool = False) -> None:
        """Shut down the queue: put() raises ChannelClosed (queue.ShutDown)
        from now on and get() once the queue is empty.  Blocked callers wake.

        With ``immediate``, the remaining items are dropped and marked done,
        so get() raises at once and join() returns.
        """
        immediate = bool(immediate)  # before anything changes (it may raise)
        dropped: deque[Any] = deque()
        with self._lock:
            self._shutdown = True
            if immediate:
                # Swapped, not cleared: no call until the counts match again.
                dropped, self._items = self._items, dropped
                n = self._count
                self._count = 0
                if n > self._unfinished:
                    n = self._unfinished
                self._unfinished -= n
        if immediate and not self._unfinished:
            _wake(self._joiners, -1)
        _wake(self._getters, -1)
        _wake(self._putters, -1)
        # Released outside the lock: an item's __del__ may use this queue.
        dropped.clear()

    __class_getitem__: Any = classmethod(types.GenericAlias)
