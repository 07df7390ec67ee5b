"""Argument checks shared by the modules: one wording for every bad value."""

from __future__ import annotations

import math
import operator
import os

# Threads one pool (or pipeline stage) may ask for: each is a real OS thread
# started at construction, so a mistyped huge count must be refused at once
# rather than exhaust memory starting them.
MAX_THREADS = 4096


def int_arg(value: object, name: str, minimum: int, maximum: int | None = None) -> int:
    """value as an int (anything with __index__, but not a bool), >= minimum
    (and <= maximum when given)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n!r}")
    if maximum is not None and n > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {n!r}")
    return n


def maxsize_arg(value: object) -> int:
    """A Queue's maxsize, as queue.Queue takes it: any int (anything with
    __index__, bool included); <= 0 means unbounded."""
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"maxsize must be an int, not {type(value).__name__}") from None


def seconds_arg(value: object, name: str, *, zero_ok: bool, inf_ok: bool = True) -> float:
    """value as seconds (an int or float, not a bool, not nan, not negative);
    0 only when zero_ok, inf only when inf_ok."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:
        raise timeout_overflow(value, name) from None
    if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not zero_ok):
        raise ValueError(f"{name} must be {'>= 0' if zero_ok else '> 0'}, got {value!r}")
    if math.isinf(seconds) and not inf_ok:
        raise ValueError(f"{name} must be finite, got {value!r}")
    return seconds


def timeout_overflow(value: object, name: str = "timeout") -> Exception:
    """The error for a number of seconds too large for a float (``10**400``).

    Both Channel/Queue backends (and the pools, through their deadline
    helper) raise this, so the exception names the argument: a ValueError for
    a negative one, as for any negative timeout, else an OverflowError.
    """
    if isinstance(value, int) and value < 0:
        return ValueError(f"{name} must be a non-negative number")
    return OverflowError(f"{name} is too large to be a number of seconds")


_PHYSICAL_MEMORY: list[int | None] = []


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where the OS does not say."""
    if not _PHYSICAL_MEMORY:
        try:
            total: int | None = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            total = None
        _PHYSICAL_MEMORY.append(total if total is None or total > 0 else None)
    return _PHYSICAL_MEMORY[0]


def check_ring_memory(slots: int, slot_bytes: int) -> None:
    """Refuse a ring whose storage could never fit in this machine's memory.

    The compiled rings allocate all their slots up front (RingBuffer also
    writes every one); the fallback rings grow on demand.  Both call this with
    the compiled layout's slot size before they allocate, so a capacity is
    accepted or refused alike on both backends: MemoryError naming capacity.
    """
    limit = physical_memory()
    nbytes = slots * slot_bytes
    if limit is not None and nbytes > limit:
        raise MemoryError(
            f"capacity too large: a ring of {slots} slots needs {nbytes} bytes, "
            f"more than this machine's memory ({limit} bytes)")


def ring_alloc_error(slots: int) -> MemoryError:
    """The error for a ring's storage the allocator refused (both backends)."""
    return MemoryError(f"capacity too large: cannot allocate a ring of {slots} slots")
