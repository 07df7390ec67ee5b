"""Timeouts as absolute deadlines on the monotonic clock, and waiting for
them: what the pure-Python primitives' blocking calls do with ``timeout``."""

from __future__ import annotations

import math
import threading
from time import monotonic

from fastconc._support.args import timeout_overflow

# Past ~30 years a timeout is as good as none (matches the compiled backend).
MAX_TIMEOUT_S = 1e9


def deadline(timeout: float | None) -> float | None:
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
    except OverflowError:
        raise timeout_overflow(timeout) from None
    if math.isnan(t):
        raise ValueError("timeout must not be NaN")
    if t < 0:
        raise ValueError("timeout must be a non-negative number")
    if t > MAX_TIMEOUT_S:
        return None
    return monotonic() + t


def wait(cond: threading.Condition, deadline: float | None) -> bool:
    """Wait on cond (held); False once the deadline has passed."""
    if deadline is None:
        cond.wait()
        return True
    remaining = deadline - monotonic()
    if remaining <= 0:
        return False
    cond.wait(remaining)
    return True
