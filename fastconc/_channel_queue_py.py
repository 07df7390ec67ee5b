"""Pure-Python backend of Queue: queue.Queue's API on the fallback Channel's
parking core (``_channel_py._Parking``, whose notes on re-entrant use hold
here too), plus task_done()/join() and a maxsize that can change at run time.

Same API and semantics as the compiled ``_channel_queue_c``.
"""

from __future__ import annotations

import sys
import threading
import types
from collections import deque
from typing import Any

from fastconc._channel_py import _AGAIN, _Parking, _wake
from fastconc._support.args import maxsize_arg
from fastconc._support.waits import deadline as _deadline
from fastconc.errors import ChannelClosed, Deadlock, Empty, Full

__all__ = ["Queue"]


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

    def _waiter_lists(self) -> tuple[deque[Any], ...]:
        return (self._putters, self._getters, self._joiners)

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
