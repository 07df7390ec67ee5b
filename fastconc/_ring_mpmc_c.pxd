# C-level layout of the compiled RingBuffer (Vyukov's bounded MPMC queue).
cimport cython
from cpython.object cimport PyObject

from fastconc._support.atomic cimport fc_atomic_size, fc_padded_size


cdef struct Cell:
    # One slot: `seq` says whose turn it is (== pos: free for the producer
    # of pos; == pos + 1: full, for the consumer of pos).
    fc_atomic_size seq
    PyObject *item


@cython.final
cdef class RingBuffer:
    cdef char _pad0[128]           # keep the object header off head's line
    cdef fc_padded_size head       # next position to pop
    cdef fc_padded_size tail       # next position to push
    cdef Cell *cells
    cdef size_t mask
    cdef bint _init_done
    cdef object _capacity
    cdef object __weakref__

    cdef bint _push(self, object item) noexcept
    cdef PyObject *_pop(self) noexcept
