# C-level layout of the compiled work-stealing deque.
#
# Chase & Lev's growable circular deque with the C11 memory orders of
# Le, Pop, Cohen & Zappa Nardelli, "Correct and Efficient Work-Stealing for
# Weak Memory Models" (PPoPP 2013), figure 1.  The owner pushes and takes at
# `bottom`; thieves CAS `top`.  Live items are slots [top, bottom) of `array`,
# each an owned reference.  A grown-out array stays allocated (linked through
# `older`) until the deque is freed: a thief that loaded the old pointer may
# still read a slot from it.
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF
from libc.stdint cimport int64_t

from fastconc._support.atomic cimport fc_atomic_ptr, fc_atomic_uptr, fc_padded_i64


cdef enum:
    # First array of a deque; at least the pool's INJECTOR_BATCH, so a batch
    # taken from the injector into an empty deque never needs to grow it.
    DEQUE_FIRST_SLOTS = 64


cdef struct DequeArray:
    int64_t mask              # slots - 1; slots is a power of two
    fc_atomic_ptr *slots      # PyObject *, indexed by position & mask
    DequeArray *older         # the array this one replaced, or NULL


cdef struct Deque:
    fc_padded_i64 top         # next position to steal; only ever grows (CAS)
    fc_padded_i64 bottom      # next position to push; written by the owner only
    fc_atomic_ptr array       # DequeArray *, replaced by the owner on growth


cdef class WorkStealingDeque:
    cdef Deque deque
    cdef fc_atomic_uptr owner          # thread id of the owner, 0 until the first push/pop
    cdef bint initialised
    # Always None.  Cython makes a type collectable only when it has an
    # object field; set_gc_hooks() then installs the traverse/clear that
    # visit the items in `deque`.
    cdef object _gc_anchor
    cdef object __weakref__

    cdef int _claim(self) except -1


# The deque proper, for its owner (push, take) and thieves (steal).  All
# return without raising: -1 / NULL say "out of memory" or "empty".
cdef int deque_init(Deque *d) noexcept nogil
cdef int deque_push(Deque *d, PyObject *x) noexcept nogil
cdef PyObject *deque_take(Deque *d) noexcept nogil
cdef PyObject *deque_steal(Deque *d, bint *lost) noexcept nogil
cdef PyObject *deque_steal_retrying(Deque *d, Py_ssize_t retries) noexcept nogil
cdef Py_ssize_t deque_len(Deque *d) noexcept nogil
cdef void deque_free_arrays(Deque *d) noexcept nogil
cdef void deque_free(Deque *d) noexcept


cdef inline object steal_ref(PyObject *x):
    """An object from an owned reference, without a second INCREF."""
    cdef object o = <object>x
    Py_DECREF(o)
    return o
