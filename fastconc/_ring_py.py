"""Pure-Python backend of SpscRingBuffer and TypedRingBuffer, and what
RingBuffer (``_ring_mpmc_py``) shares with them.

Same API and semantics as the compiled ``_ring_c`` (capacity rounded up to a
power of two, never blocking, single-producer/single-consumer ownership
checks), built on deques and locks instead of atomics.
"""

from __future__ import annotations

import array
import operator
import struct
import sys
import threading
import types
from collections import deque
from collections.abc import Iterable
from typing import Any

from fastconc._support.args import check_ring_memory, ring_alloc_error
from fastconc._support.owner import Owner
from fastconc._support.typecodes import check_buffer, check_typecode
from fastconc.errors import Empty

__all__ = ["SpscRingBuffer", "TypedRingBuffer"]

_MISSING: Any = object()

# Bytes per slot of the compiled rings (a RingBuffer cell is a sequence number
# and a pointer, an SpscRingBuffer slot a pointer): the fallback refuses the
# capacities they refuse (fastconc._support.args.check_ring_memory).
_POINTER = struct.calcsize("P")
_CELL_BYTES = 2 * _POINTER


def _ring_size(capacity: Any) -> int:
    if isinstance(capacity, bool):
        raise TypeError("capacity must be an int, not bool")
    try:
        n = operator.index(capacity)
    except TypeError:
        raise TypeError(f"capacity must be an int, not {type(capacity).__name__}") from None
    if n < 1:
        raise ValueError(f"capacity must be >= 1, got {n!r}")
    if n > sys.maxsize >> 4:  # PY_SSIZE_T_MAX >> 4, as in _ring_c
        raise ValueError(f"capacity too large: {n!r}")
    return max(2, 1 << (n - 1).bit_length())  # at least 2, as in _ring_c


def _max_items(max_items: Any) -> int:
    if isinstance(max_items, bool):
        raise TypeError("max_items must be an int, not bool")
    try:
        n = operator.index(max_items)
    except TypeError:
        raise TypeError(f"max_items must be an int, not {type(max_items).__name__}") from None
    if n < 0:
        raise ValueError(f"max_items must be >= 0, got {n!r}")
    return n


class _DequeRing:
    """What RingBuffer and SpscRingBuffer share: a deque of items and a
    capacity."""

    __slots__ = ("_capacity", "_items", "__weakref__")
    _capacity: int
    _items: deque[Any]

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    @property
    def capacity(self) -> int:
        """Slots in the ring (the requested capacity rounded up to a power of two)."""
        return self._capacity

    def __len__(self) -> int:
        return len(self._items)

    def is_empty(self) -> bool:
        """True when nothing is in the ring (a snapshot)."""
        return not self._items

    def is_full(self) -> bool:
        """True when every slot is taken (a snapshot)."""
        return len(self._items) >= self._capacity

    def __repr__(self) -> str:
        return f"<fastconc.{type(self).__name__} len={len(self)} capacity={self._capacity}>"

    __class_getitem__: Any = classmethod(types.GenericAlias)


class SpscRingBuffer(_DequeRing):
    """Single-producer single-consumer ring of objects (fallback: a deque;
    with one producer the room check cannot race).  The first thread that
    pushes is the producer, the first that pops the consumer; other threads
    get RuntimeError."""

    __slots__ = ("_producer", "_consumer")

    def __init__(self, capacity: int) -> None:
        if hasattr(self, "_items"):
            raise RuntimeError("SpscRingBuffer is already initialised")
        self._capacity = _ring_size(capacity)
        check_ring_memory(self._capacity, _POINTER)
        self._items: deque[Any] = deque()
        self._producer = Owner()
        self._consumer = Owner()

    def push(self, item: Any) -> bool:
        """Add item (producer thread only); return False if the ring is full."""
        self._producer.claim("SpscRingBuffer", "push")
        if len(self._items) >= self._capacity:
            return False
        self._items.append(item)
        return True

    def push_many(self, items: Iterable[Any]) -> int:
        """Push items in order until one does not fit; return how many were
        pushed (producer thread only)."""
        self._producer.claim("SpscRingBuffer", "push")
        batch = items if type(items) is tuple else tuple(items)  # see RingBuffer.push_many
        n = min(len(batch), self._capacity - len(self._items))
        self._items.extend(batch[:n])
        return n

    def pop(self, default: Any = _MISSING) -> Any:
        """Remove and return the oldest item (consumer thread only).  When
        empty, return ``default`` if given, else raise Empty."""
        self._consumer.claim("SpscRingBuffer", "pop")
        try:
            return self._items.popleft()
        except IndexError:
            if default is _MISSING:
                raise Empty("ring buffer is empty") from None
            return default

    def pop_many(self, max_items: int) -> list[Any]:
        """Pop up to ``max_items`` items (consumer thread only)."""
        want = _max_items(max_items)
        self._consumer.claim("SpscRingBuffer", "pop")
        popleft = self._items.popleft
        return [popleft() for _ in range(min(want, len(self._items)))]



class TypedRingBuffer:
    """Single-producer single-consumer ring of C numbers of one ``array``
    typecode (fallback: a bytearray ring behind a lock)."""

    __slots__ = ("_capacity", "_typecode", "_itemsize", "_store", "_head", "_tail",
                 "_lock", "_producer", "_consumer", "__weakref__")

    def __init__(self, capacity: int, typecode: str) -> None:
        size = _ring_size(capacity)
        _, itemsize = check_typecode(typecode)
        if hasattr(self, "_store"):
            raise RuntimeError("TypedRingBuffer is already initialised")
        self._capacity = size
        self._typecode = typecode
        self._itemsize = itemsize
        check_ring_memory(size, itemsize)
        try:
            store = bytearray(size * itemsize)
        except MemoryError:
            raise ring_alloc_error(size) from None
        self._store = memoryview(store)
        self._head = 0      # positions, not wrapped
        self._tail = 0
        self._lock = threading.Lock()
        self._producer = Owner()
        self._consumer = Owner()

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    @property
    def capacity(self) -> int:
        """Slots in the ring (the requested capacity rounded up to a power of two)."""
        return self._capacity

    @property
    def typecode(self) -> str:
        """The array-module typecode of the numbers held."""
        return self._typecode

    @property
    def itemsize(self) -> int:
        """Bytes per number."""
        return self._itemsize

    def _copy_in(self, src: memoryview, n: int) -> int:
        """Copy n numbers from a flat byte view; return how many fitted."""
        with self._lock:
            k = min(n, self._capacity - (self._tail - self._head))
            size = self._itemsize
            off = self._tail % self._capacity
            first = min(k, self._capacity - off)
            self._store[off * size:(off + first) * size] = src[:first * size]
            self._store[:(k - first) * size] = src[first * size:k * size]
            self._tail += k
            return k

    def _copy_out(self, dst: memoryview, n: int) -> int:
        with self._lock:
            k = min(n, self._tail - self._head)
            size = self._itemsize
            off = self._head % self._capacity
            first = min(k, self._capacity - off)
            dst[:first * size] = self._store[off * size:(off + first) * size]
            dst[first * size:k * size] = self._store[:(k - first) * size]
            self._head += k
            return k

    def push(self, x: Any) -> bool:
        """Push one number (producer thread only); False if the ring is full.
        Converts like array.array: TypeError / OverflowError for bad values."""
        self._producer.claim("TypedRingBuffer", "push")
        one = array.array(self._typecode)
        one.append(x)
        return self._copy_in(memoryview(one).cast("B"), 1) == 1

    def pop(self, default: Any = _MISSING) -> Any:
        """Pop one number (consumer thread only).  When empty, return
        ``default`` if given, else raise Empty."""
        self._consumer.claim("TypedRingBuffer", "pop")
        one = array.array(self._typecode, bytes(self._itemsize))
        if self._copy_out(memoryview(one).cast("B"), 1) == 0:
            if default is _MISSING:
                raise Empty("ring buffer is empty")
            return default
        return one[0]

    def push_many(self, buffer: Any) -> int:
        """Copy numbers in from a buffer of the ring's type until the ring is
        full; return how many.  Producer thread only."""
        self._producer.claim("TypedRingBuffer", "push")
        flat = check_buffer(buffer, self._typecode, "buffer", False)
        return self._copy_in(flat, len(flat) // self._itemsize)

    def pop_into(self, buffer: Any) -> int:
        """Copy up to len(buffer) numbers out into a writable buffer of the
        ring's type; return how many.  Consumer thread only."""
        self._consumer.claim("TypedRingBuffer", "pop")
        flat = check_buffer(buffer, self._typecode, "buffer", True)
        return self._copy_out(flat, len(flat) // self._itemsize)

    def pop_many(self, n: int) -> array.array[Any]:
        """Pop up to n numbers into a new array.array.  Consumer thread only."""
        want = _max_items(n)
        self._consumer.claim("TypedRingBuffer", "pop")
        k = min(want, len(self))
        out = array.array(self._typecode, bytes(k * self._itemsize))
        got = self._copy_out(memoryview(out).cast("B"), k)
        del out[got:]
        return out

    def __len__(self) -> int:
        # Head first: read from a third thread, tail read later can only be
        # larger, so the difference never goes negative (without the GIL the
        # two reads are not one step); clamp the other end the same way.
        head = self._head
        return min(self._tail - head, self._capacity)

    def is_empty(self) -> bool:
        """True when nothing is in the ring (a snapshot)."""
        return len(self) == 0

    def is_full(self) -> bool:
        """True when every slot is taken (a snapshot)."""
        return len(self) >= self._capacity

    def __repr__(self) -> str:
        return (f"<fastconc.TypedRingBuffer typecode={self._typecode!r} "
                f"len={len(self)} capacity={self._capacity}>")
