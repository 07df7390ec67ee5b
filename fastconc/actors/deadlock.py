"""Deadlock detection: the per-thread stack of running actors and the
waits-for graph between actors, checked by every ask from a handler."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from fastconc.errors import Deadlock

if TYPE_CHECKING:
    from fastconc.actors.cell import _Cell

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
