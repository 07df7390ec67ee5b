"""Argument checks shared by the modules: one wording for every bad value."""

from __future__ import annotations

import math
import operator

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


def seconds_arg(value: object, name: str, *, zero_ok: bool, inf_ok: bool = True) -> float:
    """value as seconds (an int or float, not a bool, not nan, not negative);
    0 only when zero_ok, inf only when inf_ok."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not zero_ok):
        raise ValueError(f"{name} must be {'>= 0' if zero_ok else '> 0'}, got {value!r}")
    if math.isinf(seconds) and not inf_ok:
        raise ValueError(f"{name} must be finite, got {value!r}")
    return seconds
