# Blocking primitives for the compiled backend: a mutex, a condition variable
# whose waits can be cut short by a signal, and a monotonic clock.  All of it
# lives in fc_sync.h beside it; this file only makes it visible to Cython.
from libc.stdint cimport int64_t, uint32_t, uintptr_t

cdef extern from "fc_sync.h" nogil:
    ctypedef struct fc_mutex:
        pass
    ctypedef struct fc_cond:
        pass
    ctypedef struct fc_parker:
        pass

    enum:
        FC_BACKOFF_STEPS
    enum:
        FC_WAIT_OK
        FC_WAIT_CHECK_SIGNALS

    int64_t fc_monotonic_ns()
    uintptr_t fc_thread_id()

    int fc_mutex_init(fc_mutex *m)
    void fc_mutex_destroy(fc_mutex *m)
    void fc_mutex_lock(fc_mutex *m)
    bint fc_mutex_trylock(fc_mutex *m)
    void fc_mutex_unlock(fc_mutex *m)

    int fc_cond_init(fc_cond *c)
    void fc_cond_destroy(fc_cond *c)
    int fc_cond_wait(fc_cond *c, fc_mutex *m, int64_t timeout_ns, int spin)
    void fc_cond_signal_n(fc_cond *c, int n)
    void fc_cond_broadcast(fc_cond *c)

    void fc_parker_init(fc_parker *p)
    void fc_parker_destroy(fc_parker *p)
    int fc_park(fc_parker *p, int64_t timeout_ns, int spin)
    void fc_unpark(fc_parker *p)

    void fc_cpu_relax()
    void fc_yield()

    uint32_t fc_random_below(uint32_t n)
    void fc_backoff_snooze(int *step)
    long fc_process_id()
