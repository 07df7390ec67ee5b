# C-level layout of the compiled Channel and Queue (_channel_queue_c).
#
# _BlockingRing, the core Queue and a big Channel share: one ring of owned
# object pointers behind one mutex.  Invariants, all guarded by `mutex`:
#   0 <= ring.count <= bound, except after Queue.maxsize was lowered
#   below the count (nothing is dropped; put() waits for the drain)
# Blocked callers wait in `senders` (while full) and `receivers` (while
# empty), the SyncWakers of _channel_waker_c.pxd: an operation that finds
# nobody waiting takes no waker lock and makes no syscall.
# Locking rule: a thread holding `mutex` (or a waker's) never takes the GIL
# nor calls into Python.  That is what makes it safe to block on `mutex`
# while holding the GIL, and waits (which can be long) always release the
# GIL first.  Lock order: `mutex`, then a waker's mutex.
#
# Channel(capacity <= ARRAY_MAX_CAP) instead keeps its items in the
# lock-free ArrayCore of _channel_array_c.pxd (`lockfree`), on the same
# wakers; `mutex` and `ring` then stay unused.
from cpython.object cimport PyObject
from libc.stdint cimport int64_t

from fastconc._channel_array_c cimport (
    ARRAY_CLOSED,
    ARRAY_NOMEM,
    ARRAY_NOT_READY,
    ARRAY_OK,
    ArrayCore,
)
from fastconc._channel_ring_c cimport ObjRing
from fastconc._channel_waker_c cimport SyncWaker
from fastconc._support.gc cimport gc_visit_t
from fastconc._support.sync cimport fc_mutex


# Results of _send / _recv and of one attempt.  The first four are the
# array core's own results, so they pass through unchanged.
cdef enum:
    ST_OK = ARRAY_OK
    ST_NOT_READY = ARRAY_NOT_READY    # an attempt found it full / empty
    ST_CLOSED = ARRAY_CLOSED
    ST_NOMEM = ARRAY_NOMEM
    ST_TIMEOUT


cdef class _BlockingRing:
    cdef fc_mutex mutex
    cdef SyncWaker senders         # blocked while full
    cdef SyncWaker receivers       # blocked while empty
    cdef ObjRing ring
    cdef Py_ssize_t bound          # most items held at once (Queue: maxsize may change it)
    cdef Py_ssize_t unfinished     # items put and not yet task_done() (Queue)
    cdef bint closed
    cdef bint counts_tasks         # Queue: keep `unfinished` for task_done/join
    cdef bint initialised
    cdef object _size_arg          # capacity / maxsize (an int), None until __init__
    cdef object __weakref__

    cdef int _init_ring(self, Py_ssize_t bound, object size_arg, bint counts_tasks) except -1
    # One attempt, never waiting, GIL held: ST_OK / ST_NOT_READY / ST_CLOSED /
    # ST_NOMEM; wakes the other side's waiters for what it moved.
    cdef int _attempt_send(self, PyObject **items, Py_ssize_t n, Py_ssize_t *done) noexcept
    cdef int _attempt_recv(self, PyObject **out, Py_ssize_t max_n, Py_ssize_t *got) noexcept
    # The re-check of a just-registered waiter: could the operation proceed now?
    cdef bint _ready(self, bint sending) noexcept
    cdef int _block(self, SyncWaker *waker, bint sending, int64_t deadline, int spin,
                    bint front) noexcept
    cdef int _send(self, PyObject **items, Py_ssize_t n, Py_ssize_t *done,
                   int64_t deadline) except -1
    cdef int _recv(self, PyObject **out, Py_ssize_t max_n, Py_ssize_t *got,
                   int64_t deadline) except -1
    cdef void _close(self, bint drop_items) noexcept
    cdef Py_ssize_t _count(self) noexcept
    cdef bint _is_closed(self) noexcept


cdef class Channel(_BlockingRing):
    # Keeps the wakers' is_empty words, read by every operation, off the
    # head's cache line (crossbeam's CachePadded head and tail).
    cdef char _pad[128]
    cdef ArrayCore core
    cdef bint lockfree


# For Queue (fastconc._channel_queue_c), which is built on the same core.
cdef raise_status(int st, object timeout_exc, str what)
cdef int blocking_ring_traverse(_BlockingRing self, gc_visit_t visit, void *arg) noexcept
cdef int blocking_ring_clear(_BlockingRing self) noexcept
