"""Pure-Python backend of WorkStealingDeque: a ``collections.deque`` whose
append, pop and popleft are atomic (under the GIL, and under the deque's own
lock on free-threaded builds), which is all a work-stealing deque needs here.
The owner (first thread to push or pop) works at one end, thieves at the
other, as in the compiled Chase-Lev deque (fastconc/_deque_c.pyx)."""

from __future__ import annotations

from collections import deque
from typing import Any, Generic, TypeVar

from fastconc._support.owner import Owner
from fastconc.errors import Empty

__all__ = ["WorkStealingDeque"]

T = TypeVar("T")


class WorkStealingDeque(Generic[T]):
    """Work-stealing deque of Python objects.

    The owner thread (the first to call :meth:`push` or :meth:`pop`) pushes
    and pops at one end, LIFO; any thread may :meth:`steal` from the other
    end, FIFO.  Each item is returned exactly once.
    """

    __slots__ = ("_items", "_owner", "__weakref__")

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._owner = Owner()

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def _claim(self) -> None:
        try:
            self._owner.claim("WorkStealingDeque", "push")
        except RuntimeError:
            raise RuntimeError(
                "WorkStealingDeque.push/pop belong to the owner thread (the first "
                "thread that pushed or popped); other threads may only steal()") from None

    def push(self, item: T) -> None:
        """Add item at the owner's end.  Owner thread only."""
        self._claim()
        self._items.append(item)

    def pop(self) -> T:
        """Remove and return the newest item (LIFO).  Owner thread only.
        Raises :class:`fastconc.Empty` when there is none."""
        self._claim()
        try:
            return self._items.pop()
        except IndexError:
            raise Empty("pop from an empty WorkStealingDeque") from None

    def steal(self) -> T:
        """Remove and return the oldest item (FIFO).  Any thread.  Raises
        :class:`fastconc.Empty` when the deque is empty."""
        try:
            return self._items.popleft()
        except IndexError:
            raise Empty("steal from an empty WorkStealingDeque") from None

    def __len__(self) -> int:
        return len(self._items)

    def is_empty(self) -> bool:
        """True when no item is left (a snapshot, like len())."""
        return not self._items

    def __repr__(self) -> str:
        return f"<{type(self).__name__} len={len(self._items)}>"
