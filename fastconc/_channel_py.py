"""Pure-Python backend of Channel and Queue.

Same API and semantics as the compiled ``_channel_c``: a deque behind one
lock with a condition variable per direction, as in CPython's Lib/queue.py.
"""

from __future__ import annotations

import math
import operator
import sys
import threading
import types
from collections import deque
from collections.abc import Iterable, Iterator
from time import monotonic
from typing import Any

from fastconc._args import int_arg
from fastconc.errors import ChannelClosed, Empty, Full, Timeout

__all__ = ["Channel", "Queue"]

# Past ~30 years a timeout is as good as none (matches the compiled backend).
_MAX_TIMEOUT_S = 1e9


def _deadline(timeout: float | None) -> float | None:
    """None -> None (wait forever); otherwise validate and make it absolute."""
    if timeout is None:
        return None
    if isinstance(timeout, (str, bytes)):
        raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
    try:
        t = float(timeout)
    except TypeError:
        raise TypeError(
            f"timeout must be a number or None, not {type(timeout).__name__}"
        ) from None
    if math.isnan(t):
        raise ValueError("timeout must not be NaN")
    if t < 0:
        raise ValueError("timeout must be a non-negative number")
    if t > _MAX_TIMEOUT_S:
        return None
    return monotonic() + t


def _wait(cond: threading.Condition, deadline: float | None) -> bool:
    """Wait on cond (held); False once the deadline has passed."""
    if deadline is None:
        cond.wait()
        return True
    remaining = deadline - monotonic()
    if remaining <= 0:
        return False
    cond.wait(remaining)
    return True


class Channel:
    """Bounded multi-producer multi-consumer channel.

    ``send`` blocks while the channel holds ``capacity`` items (backpressure);
    ``recv`` blocks while it is empty.  ``close()`` stops senders at once
    (:class:`ChannelClosed`) and lets receivers drain what is left before they
    get :class:`ChannelClosed` too.
    """

    __slots__ = ("_capacity", "_items", "_lock", "_not_empty", "_not_full", "_closed",
                 "__weakref__")

    def __init__(self, capacity: int) -> None:
        if hasattr(self, "_lock"):
            raise RuntimeError("Channel is already initialised")
        # Clamped like the compiled Channel's (a Py_ssize_t there).
        self._capacity = min(int_arg(capacity, "capacity", 1), sys.maxsize)
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False

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

    def send(self, item: Any, timeout: float | None = None) -> None:
        """Put item in, blocking while the channel is full.

        Raises Timeout when ``timeout`` seconds pass first, ChannelClosed when
        the channel is (or gets) closed.
        """
        deadline = _deadline(timeout)
        with self._lock:
            while True:
                if self._closed:
                    raise ChannelClosed("channel is closed")
                if len(self._items) < self._capacity:
                    self._items.append(item)
                    self._not_empty.notify()
                    return
                if not _wait(self._not_full, deadline):
                    raise Timeout("timed out waiting on the channel")

    def try_send(self, item: Any) -> bool:
        """Put item in if there is room now; return False when full.

        Raises ChannelClosed when the channel is closed.
        """
        with self._lock:
            if self._closed:
                raise ChannelClosed("channel is closed")
            if len(self._items) >= self._capacity:
                return False
            self._items.append(item)
            self._not_empty.notify()
            return True

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
        with self._lock:
            while done < n:
                if self._closed:
                    if done:
                        return done
                    raise ChannelClosed("channel is closed")
                room = self._capacity - len(self._items)
                if room > 0:
                    take = min(room, n - done)
                    self._items.extend(batch[done:done + take])
                    done += take
                    self._not_empty.notify(take)
                    continue
                if not _wait(self._not_full, deadline):
                    if done:
                        return done
                    raise Timeout("timed out waiting on the channel")
        return done

    def recv(self, timeout: float | None = None) -> Any:
        """Take the oldest item, blocking while the channel is empty.

        Raises Timeout when ``timeout`` seconds pass first, ChannelClosed once
        the channel is closed and drained.
        """
        deadline = _deadline(timeout)
        with self._lock:
            while True:
                if self._items:
                    item = self._items.popleft()
                    self._not_full.notify()
                    return item
                if self._closed:
                    raise ChannelClosed("channel is closed")
                if not _wait(self._not_empty, deadline):
                    raise Timeout("timed out waiting on the channel")

    def try_recv(self) -> Any:
        """Take the oldest item if there is one; raise Empty if not.

        Raises ChannelClosed once the channel is closed and drained.
        """
        with self._lock:
            if self._items:
                item = self._items.popleft()
                self._not_full.notify()
                return item
            if self._closed:
                raise ChannelClosed("channel is closed")
            raise Empty("channel is empty")

    def recv_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        """Wait for at least one item, then take up to ``max_items`` at once.

        Returns a non-empty list.  Raises Timeout if nothing arrived in time,
        ChannelClosed once the channel is closed and drained.
        """
        want = int_arg(max_items, "max_items", 1)
        deadline = _deadline(timeout)
        with self._lock:
            while True:
                if self._items:
                    take = min(want, len(self._items))
                    popleft = self._items.popleft
                    result = [popleft() for _ in range(take)]
                    self._not_full.notify(take)
                    return result
                if self._closed:
                    raise ChannelClosed("channel is closed")
                if not _wait(self._not_empty, deadline):
                    raise Timeout("timed out waiting on the channel")

    def close(self) -> None:
        """Close the channel: wake every waiter; senders get ChannelClosed,
        receivers drain what is left first.  Closing twice is harmless."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

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


class Queue:
    """Drop-in replacement for :class:`queue.Queue` (including Python 3.13's
    ``shutdown``, on every Python version).

    If maxsize is <= 0, the queue size is infinite.
    """

    def __init__(self, maxsize: int = 0) -> None:
        if hasattr(self, "_mutex"):
            raise RuntimeError("Queue is already initialised")
        try:
            self._maxsize = operator.index(maxsize)
        except TypeError:
            raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}") from None
        self._items: deque[Any] = deque()
        self._mutex = threading.Lock()
        self._not_empty = threading.Condition(self._mutex)
        self._not_full = threading.Condition(self._mutex)
        self._all_tasks_done = threading.Condition(self._mutex)
        self._unfinished = 0
        self._shutdown = False

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
        try:
            size = operator.index(value)
        except TypeError:
            raise TypeError(f"maxsize must be an int, not {type(value).__name__}") from None
        with self._mutex:
            # `_old` outlives the lock: the previous value's last reference must
            # not go (and run an int subclass's __del__) while it is held.
            _old = self._maxsize
            self._maxsize = size
            # Waiters re-check under the lock; queue.Queue wakes nobody here,
            # leaving put() blocked below a raised bound until some get().
            self._not_full.notify_all()

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
        with self._mutex:
            if self._unfinished <= 0:
                raise ValueError("task_done() called too many times")
            self._unfinished -= 1
            if self._unfinished == 0:
                self._all_tasks_done.notify_all()

    def join(self) -> None:
        """Block until every item put has been marked done with task_done()."""
        with self._mutex:
            while self._unfinished:
                self._all_tasks_done.wait()

    def qsize(self) -> int:
        """Return the approximate size of the queue."""
        return len(self._items)

    def empty(self) -> bool:
        """Return True if the queue is empty (racy, as in queue.Queue)."""
        return not self._items

    def full(self) -> bool:
        """Return True if the queue is full (racy, as in queue.Queue)."""
        return 0 < self._maxsize <= len(self._items)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put an item into the queue.

        With ``block`` true and ``timeout`` None, wait for a free slot; with a
        non-negative timeout, raise Full after that many seconds; with
        ``block`` false, raise Full at once if there is no room.  Raises
        ChannelClosed (a queue.ShutDown) once the queue is shut down.
        """
        with self._mutex:
            # maxsize is read under the lock only: its setter may change it
            # (and wake us) at any time.  A maxsize the compiled Queue cannot
            # hold (>= sys.maxsize) is unbounded there, so it is here too
            # (block/timeout then unread).
            bounded = 0 < self._maxsize < sys.maxsize
            deadline = _deadline(timeout) if bounded and block else None
            if self._shutdown:
                raise ChannelClosed("queue is closed")
            while 0 < self._maxsize <= len(self._items):
                if not block or not _wait(self._not_full, deadline):
                    raise Full("queue is full")
                if self._shutdown:
                    raise ChannelClosed("queue is closed")
            self._items.append(item)
            self._unfinished += 1
            self._not_empty.notify()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return an item from the queue.

        With ``block`` true and ``timeout`` None, wait for an item; with a
        non-negative timeout, raise Empty after that many seconds; with
        ``block`` false, raise Empty at once if there is none.  Raises
        ChannelClosed (a queue.ShutDown) once the queue is shut down and empty.
        """
        deadline = _deadline(timeout) if block else None
        with self._mutex:
            while not self._items:
                if self._shutdown:
                    raise ChannelClosed("queue is closed")
                if not block or not _wait(self._not_empty, deadline):
                    raise Empty("queue is empty")
            item = self._items.popleft()
            self._not_full.notify()
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
        with self._mutex:
            self._shutdown = True
            if immediate:
                dropped, self._items = self._items, dropped
                self._unfinished -= min(self._unfinished, len(dropped))
                self._all_tasks_done.notify_all()
            self._not_empty.notify_all()
            self._not_full.notify_all()
        # Released outside the lock: an item's __del__ may use this queue.
        dropped.clear()

    __class_getitem__: Any = classmethod(types.GenericAlias)
