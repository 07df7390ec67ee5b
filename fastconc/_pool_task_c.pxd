# C-level layout of the compiled pool's tasks: what a worker's deque or the
# injector holds for one submission, and the token deciding who runs it.
cimport cython
from libc.stdint cimport uintptr_t

from fastconc._support.atomic cimport fc_atomic_uptr, fc_uptr_cas_strong_relaxed


# Tasks are not tracked by the garbage collector (no_gc): nothing outside
# the pool ever refers to a task, so no reference cycle can run through one,
# and with tens of thousands queued, tracking them made every collection
# slower (measured: a third of submit+result's time went to the collector).
@cython.no_gc
cdef class _Task:
    cdef object fn
    cdef object future                 # what a failing call() must settle, or None
    # A _FutureTask's token (see take_task): 0 until its owner takes it.
    # Zeroed by tp_alloc and set to 0 again by fc_uptr_init before it is queued.
    cdef fc_atomic_uptr taken

    cdef bint start(self) except -1
    cdef int call(self, object error_handler) except -1
    cdef void abandon(self, object error) noexcept


@cython.no_gc
cdef class _Call(_Task):
    cdef tuple args
    cdef dict kwargs


@cython.no_gc
cdef class _FutureTask(_Task):
    pass


@cython.no_gc
cdef class _FutureCall(_FutureTask):
    cdef tuple args
    cdef dict kwargs


@cython.no_gc
cdef class _BatchCall(_FutureTask):
    cdef list items
    cdef bint star


# What the pool queues for execute() with arguments, submit() and one chunk
# of map(); each future task's token is free.
cdef _Task call_task(object fn, tuple args, dict kwargs)
cdef _FutureTask future_call_task(object future, object fn, tuple args, dict kwargs)
cdef _FutureTask batch_task(object future, object fn, list items, bint star)


cdef inline bint take_task(_Task task) noexcept nogil:
    """A future task's token: of its queue entry and a waiter that found it
    through future._task (help_until), exactly one takes it, and owns the
    task from then on: it runs or abandons it, settles its future and counts
    it done.  The other finds it taken and drops its reference (a skipped
    queue entry, counted nowhere).  A C-level CAS: it cannot fail half-way."""
    cdef uintptr_t free_ = 0
    # relaxed CAS: it only has to pick one winner, which any RMW does; the
    # task's fields were published to both parties before (by the deque or
    # injector, or by the future's attribute under the GIL / its lock), and
    # what the owner does next is ordered by the future's own lock.
    return fc_uptr_cas_strong_relaxed(&task.taken, &free_, 1)
