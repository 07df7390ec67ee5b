"""Pure-Python backend of RingBuffer: a deque behind a lock.

Same API and semantics as the compiled ``_ring_mpmc_c`` (capacity rounded up
to a power of two, never blocking).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from fastconc._ring_py import _CELL_BYTES, _MISSING, _DequeRing, _max_items, _ring_size
from fastconc._support.args import check_ring_memory
from fastconc.errors import Empty

__all__ = ["RingBuffer"]


class RingBuffer(_DequeRing):
    """Bounded multi-producer multi-consumer ring of objects (fallback: a
    deque behind a lock).  Never blocks; capacity rounds up to a power of two."""

    __slots__ = ("_lock",)

    def __init__(self, capacity: int) -> None:
        if hasattr(self, "_lock"):
            raise RuntimeError("RingBuffer is already initialised")
        self._capacity = _ring_size(capacity)
        check_ring_memory(self._capacity, _CELL_BYTES)
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()

    def push(self, item: Any) -> bool:
        """Add item; return False (and keep no reference) if the ring is full."""
        with self._lock:
            if len(self._items) >= self._capacity:
                return False
            self._items.append(item)
            return True

    def pop(self, default: Any = _MISSING) -> Any:
        """Remove and return the oldest item.  When empty, return ``default``
        if given, else raise Empty."""
        try:
            return self._items.popleft()
        except IndexError:
            if default is _MISSING:
                raise Empty("ring buffer is empty") from None
            return default

    def push_many(self, items: Iterable[Any]) -> int:
        """Push items in order until one does not fit; return how many were
        pushed.  A non-sequence iterable is read to the end first."""
        # A tuple snapshot: len() and the slice must see the same items even
        # if another thread changes a list argument meanwhile (no GIL).
        batch = items if type(items) is tuple else tuple(items)
        with self._lock:
            n = min(len(batch), self._capacity - len(self._items))
            self._items.extend(batch[:n])
            return n

    def pop_many(self, max_items: int) -> list[Any]:
        """Pop up to ``max_items`` items (fewer when the ring runs empty)."""
        want = _max_items(max_items)
        out: list[Any] = []
        popleft = self._items.popleft
        try:
            while len(out) < want:
                out.append(popleft())
        except IndexError:
            pass
        return out
