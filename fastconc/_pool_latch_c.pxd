# The compiled pool's count of tasks queued or running, and the wait for it
# to reach zero (join()): rayon-core's CountLatch, with a mutex and condition
# variable to sleep on.  A task is counted before it becomes visible and
# uncounted once it has run (or was abandoned), so a count of zero means idle.
#
# Inline, compiled into _pool_c; nothing here calls into Python, so all of it
# runs without the GIL (the locking rule of _pool_c.pxd).
from libc.stdint cimport int64_t

from fastconc._support.atomic cimport (
    fc_atomic_i64,
    fc_atomic_size,
    fc_i64_fetch_add_seq_cst,
    fc_i64_init,
    fc_i64_load_relaxed,
    fc_i64_load_seq_cst,
    fc_size_fetch_add_seq_cst,
    fc_size_fetch_sub_seq_cst,
    fc_size_init,
    fc_size_load_seq_cst,
)
from fastconc._support.deadline cimport FOREVER
from fastconc._support.sync cimport (
    FC_WAIT_CHECK_SIGNALS,
    fc_cond,
    fc_cond_broadcast,
    fc_cond_destroy,
    fc_cond_init,
    fc_cond_wait,
    fc_monotonic_ns,
    fc_mutex,
    fc_mutex_destroy,
    fc_mutex_init,
    fc_mutex_lock,
    fc_mutex_unlock,
)


# latch_wait() outcomes.
cdef enum:
    LATCH_ZERO
    LATCH_TIMEOUT
    LATCH_SIGNALS      # a signal is pending: the caller runs the handlers and waits again


cdef struct CountLatch:
    fc_atomic_i64 pending
    fc_mutex mutex
    fc_cond cond
    fc_atomic_size waiters     # threads in latch_wait_begin .. latch_wait_end


cdef inline int latch_init(CountLatch *l) noexcept nogil:
    """-1 when the mutex cannot be created (nothing to destroy then)."""
    if fc_mutex_init(&l.mutex) != 0:
        return -1
    fc_cond_init(&l.cond)
    fc_i64_init(&l.pending, 0)
    fc_size_init(&l.waiters, 0)
    return 0


cdef inline void latch_destroy(CountLatch *l) noexcept nogil:
    fc_cond_destroy(&l.cond)
    fc_mutex_destroy(&l.mutex)


cdef inline void latch_add(CountLatch *l) noexcept nogil:
    # seq_cst: counted before the task is visible, so a waiter never sees
    # zero while it is queued; the decrement pairs in latch_done.
    fc_i64_fetch_add_seq_cst(&l.pending, 1)


cdef inline void latch_done(CountLatch *l) noexcept nogil:
    # seq_cst: the decrement and the read of waiters form a Dekker pair with
    # latch_wait_begin's increment of waiters and latch_wait's read of
    # pending: one of the two sees the other, so no waiter misses zero.
    if fc_i64_fetch_add_seq_cst(&l.pending, -1) == 1:
        if fc_size_load_seq_cst(&l.waiters):
            # Through the mutex: a waiter between its check and its sleep
            # holds it, so the broadcast cannot fall in that gap.
            fc_mutex_lock(&l.mutex)
            fc_mutex_unlock(&l.mutex)
            fc_cond_broadcast(&l.cond)


cdef inline bint latch_is_zero(CountLatch *l) noexcept nogil:
    # seq_cst: see latch_done.
    return fc_i64_load_seq_cst(&l.pending) == 0


cdef inline int64_t latch_count(CountLatch *l) noexcept nogil:
    # relaxed: a snapshot for statistics, no ordering wanted.
    return fc_i64_load_relaxed(&l.pending)


cdef inline void latch_wait_begin(CountLatch *l) noexcept nogil:
    # seq_cst: see latch_done.
    fc_size_fetch_add_seq_cst(&l.waiters, 1)


cdef inline void latch_wait_end(CountLatch *l) noexcept nogil:
    # seq_cst: as the increment.
    fc_size_fetch_sub_seq_cst(&l.waiters, 1)


cdef inline int latch_wait(CountLatch *l, int64_t deadline, int spin) noexcept nogil:
    """Between latch_wait_begin and latch_wait_end: sleep until the count is
    zero, the deadline (FOREVER: none) passes, or a signal is pending.
    spin: whether the first sleep may spin first (fc_cond_wait)."""
    cdef int64_t remaining = -1
    cdef int st = LATCH_TIMEOUT
    fc_mutex_lock(&l.mutex)
    while True:
        if latch_is_zero(l):
            st = LATCH_ZERO
            break
        if deadline != FOREVER:
            remaining = deadline - fc_monotonic_ns()
            if remaining <= 0:
                break
        if fc_cond_wait(&l.cond, &l.mutex, remaining, spin) == FC_WAIT_CHECK_SIGNALS:
            st = LATCH_SIGNALS
            break
        spin = 0
    fc_mutex_unlock(&l.mutex)
    return st
