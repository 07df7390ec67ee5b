# C-level layout of the compiled ring buffers, and the public nogil C API of
# TypedRingBuffer.
#
# Other Cython extensions can move numbers without the GIL:
#
#     from fastconc._ring_c cimport TypedRingBuffer
#     cdef TypedRingBuffer ring = fastconc.TypedRingBuffer(4096, "d")
#     cdef double x = 1.5
#     with nogil:
#         ring.push_c(&x)                 # 1 if pushed, 0 if full
#         n = ring.pop_n_c(out, 4096)     # how many were copied into out
#
# Build such an extension with include_dirs=[fastconc.get_include()].  The
# caller keeps a reference to the ring while it uses it, and keeps the SPSC
# contract: at most one thread pushes and one thread pops at a time (the C
# API does not check it; the Python methods do).
cimport cython
from cpython.object cimport PyObject
from libc.stdint cimport uintptr_t

from fastconc._atomic cimport fc_atomic_size, fc_atomic_uptr, fc_padded_size


cdef struct Cell:
    # One slot of Vyukov's bounded MPMC queue: `seq` says whose turn it is
    # (== pos: free for the producer of pos; == pos + 1: full, for the
    # consumer of pos).
    fc_atomic_size seq
    PyObject *item


cdef struct SpscSide:
    # What one side (producer or consumer) writes, alone on its cache lines.
    fc_atomic_size index     # next position this side uses; the other reads it
    size_t cache             # last seen value of the other side's index
    fc_atomic_uptr owner     # thread bound to this side (0: none yet)
    char pad[128]


@cython.final
cdef class RingBuffer:
    cdef char _pad0[128]           # keep the object header off head's line
    cdef fc_padded_size head       # next position to pop
    cdef fc_padded_size tail       # next position to push
    cdef Cell *cells
    cdef size_t mask
    cdef object _capacity
    cdef object __weakref__

    cdef bint _push(self, object item) noexcept
    cdef PyObject *_pop(self) noexcept


@cython.final
cdef class SpscRingBuffer:
    cdef char _pad0[128]
    cdef SpscSide prod
    cdef SpscSide cons
    cdef PyObject **slots
    cdef size_t mask
    cdef object _capacity
    cdef object __weakref__

    cdef bint _room(self, size_t tail, size_t want) noexcept
    cdef size_t _available(self, size_t head, size_t want) noexcept


@cython.final
cdef class TypedRingBuffer:
    cdef char _pad0[128]
    cdef SpscSide prod
    cdef SpscSide cons
    cdef char *data
    cdef size_t mask
    cdef size_t itemsize
    cdef char kind              # 'i' signed, 'u' unsigned, 'f' float
    cdef object _typecode
    cdef object _capacity
    cdef object __weakref__

    # Public C API (SPSC; no GIL needed, never blocks).
    cdef bint push_c(self, const void *item) noexcept nogil
    cdef bint pop_c(self, void *out) noexcept nogil
    cdef Py_ssize_t push_n_c(self, const void *items, Py_ssize_t n) noexcept nogil
    cdef Py_ssize_t pop_n_c(self, void *out, Py_ssize_t n) noexcept nogil
    cdef Py_ssize_t size_c(self) noexcept nogil

    cdef int _to_c(self, object x, char *out) except -1
    cdef object _to_py(self, const char *p)
