# Timeouts as deadlines for the compiled primitives: what every blocking call
# does with its ``timeout`` argument, the same checks and wording as the
# fallback's fastconc/_support/waits.py.  Inline, so each module that cimports
# it compiles its own copy and no module imports another for it.
from libc.stdint cimport int64_t

from fastconc._support.sync cimport fc_monotonic_ns

cdef enum:
    # Deadlines are monotonic nanoseconds; -1 means none, 0 is already past
    # (a try-only call: never waits).
    FOREVER = -1
    NO_WAIT = 0


cdef inline int64_t deadline_ns(object timeout) except -2:
    """None -> FOREVER; otherwise validate and turn into an absolute deadline."""
    cdef double t
    if timeout is None:
        return FOREVER
    if isinstance(timeout, (str, bytes)):
        raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
    try:
        t = timeout
    except TypeError:
        raise TypeError(
            f"timeout must be a number or None, not {type(timeout).__name__}") from None
    except OverflowError:
        # 10**400: name the argument, with the fallback's wording (imported
        # here, on the error path only: a .pxd holds no module state).
        from fastconc._support.args import timeout_overflow
        raise timeout_overflow(timeout) from None
    if t != t:
        raise ValueError("timeout must not be NaN")
    if t < 0:
        raise ValueError("timeout must be a non-negative number")
    # Past ~30 years a timeout is as good as none, and int64 ns would overflow.
    if t > 1e9:
        return FOREVER
    return fc_monotonic_ns() + <int64_t>(t * 1e9)
