# C-level layout of the compiled Channel and Queue (_channel_queue_c).
#
# Both are one ring of owned object pointers behind one mutex, with a
# condition variable per direction.  Invariants, all guarded by `mutex`:
#   0 <= ring.count <= bound, except after Queue.maxsize was lowered
#   below the count (nothing is dropped; put() waits for the drain)
#   recv_waiters / send_waiters count the threads asleep on not_empty / not_full,
#   so an operation that finds nobody asleep skips the wake-up syscall.
# Locking rule: a thread holding `mutex` never takes the GIL nor calls into
# Python.  That is what makes it safe to block on `mutex` while holding the
# GIL, and waits (which can be long) always release the GIL first.
from cpython.object cimport PyObject
from libc.stdint cimport int64_t

from fastconc._support.gc cimport gc_visit_t
from fastconc._support.sync cimport fc_cond, fc_mutex


# Results of _send / _recv and their nogil slow paths.
cdef enum:
    ST_OK = 0
    ST_TIMEOUT
    ST_CLOSED
    ST_SIGNALS
    ST_NOMEM


cdef struct ObjRing:
    # FIFO of owned references; storage doubles on demand up to max_slots.
    PyObject **slots
    Py_ssize_t size        # allocated slots: 0 or a power of two
    Py_ssize_t head        # slot of the oldest item
    Py_ssize_t count
    Py_ssize_t max_slots   # power of two >= the bound, and >= size


cdef class _BlockingRing:
    cdef fc_mutex mutex
    cdef fc_cond not_empty
    cdef fc_cond not_full
    cdef ObjRing ring
    cdef Py_ssize_t bound          # most items held at once (Queue: maxsize may change it)
    cdef Py_ssize_t recv_waiters
    cdef Py_ssize_t send_waiters
    cdef Py_ssize_t unfinished     # items put and not yet task_done() (Queue)
    cdef bint closed
    cdef bint counts_tasks         # Queue: keep `unfinished` for task_done/join
    cdef bint initialised
    cdef object _size_arg          # capacity / maxsize (an int), None until __init__
    cdef object __weakref__

    cdef int _init_ring(self, Py_ssize_t bound, object size_arg, bint counts_tasks) except -1
    cdef int _wait(self, fc_cond *cv, Py_ssize_t *waiters, int64_t deadline,
                   int spin) noexcept nogil
    cdef int _send_nogil(self, PyObject **items, Py_ssize_t n, Py_ssize_t *done,
                         int64_t deadline, int spin) noexcept nogil
    cdef int _wait_for_items(self, int64_t deadline, int spin) noexcept nogil
    cdef int _send(self, PyObject **items, Py_ssize_t n, Py_ssize_t *done,
                   int64_t deadline) except -1
    cdef int _recv(self, PyObject **out, Py_ssize_t max_n, Py_ssize_t *got,
                   int64_t deadline) except -1
    cdef void _close(self, bint drop_items) noexcept
    cdef Py_ssize_t _count(self) noexcept
    cdef bint _is_closed(self) noexcept


cdef class Channel(_BlockingRing):
    pass


# For Queue (fastconc._channel_queue_c), which is built on the same core.
cdef Py_ssize_t ring_max_slots(ObjRing *r, Py_ssize_t bound) noexcept nogil
cdef ObjRing ring_detach(ObjRing *r) noexcept nogil
cdef void ring_release(ObjRing *r) noexcept
cdef raise_status(int st, object timeout_exc, str what)
cdef int blocking_ring_traverse(_BlockingRing self, gc_visit_t visit, void *arg) noexcept
cdef int blocking_ring_clear(_BlockingRing self) noexcept
