# C-level layout of the compiled SPSC ring buffers, the public nogil C API of
# TypedRingBuffer, and the checks RingBuffer (_ring_mpmc_c) shares.
#
# Other Cython extensions move numbers without the GIL, from `with nogil:`
# blocks or from threads of their own:
#
#     from fastconc._ring_c cimport TypedRingBuffer, TypedCore, typed_push_n, typed_pop_n
#     ring = fastconc.TypedRingBuffer(4096, "d")
#     cdef TypedCore *core = (<TypedRingBuffer>ring).core_c()    # with the GIL
#     with nogil:                                   # or in any C thread
#         sent = typed_push_n(core, values, n)      # how many were copied in
#         got = typed_pop_n(core, out, n)           # how many were copied out
#
# (typed_push / typed_pop move one number; typed_size counts.)  Build such an
# extension with include_dirs=[fastconc.get_include()].  The caller keeps a
# reference to the ring while `core` is in use, and keeps the SPSC contract:
# at most one thread pushes and one thread pops at a time (the C API does not
# check it; the Python methods do).  Numbers are in the ring's C type
# (ring.typecode / ring.itemsize).
cimport cython
from cpython.object cimport PyObject
from libc.stdint cimport intptr_t, uintptr_t
from libc.string cimport memcpy

from fastconc._support.atomic cimport (
    fc_atomic_size,
    fc_atomic_uptr,
    fc_size_load_acquire,
    fc_size_load_relaxed,
    fc_size_store_release,
)


# Argument checks and counting shared by every ring of this package.
cdef size_t ring_size(object capacity) except 0
cdef Py_ssize_t max_items_arg(object max_items) except -1


cdef inline size_t ring_used(size_t head, size_t tail, size_t capacity) noexcept nogil:
    """Items between two positions, for len(): positions wrap modulo 2**64
    together, so the difference is exact; a racing reader may see head past
    tail for a moment: clamp."""
    cdef size_t n = tail - head
    if <intptr_t>n < 0:
        return 0
    return n if n < capacity else capacity


cdef struct SpscSide:
    # What one side (producer or consumer) writes, alone on its cache lines.
    fc_atomic_size index     # next position this side uses; the other reads it
    size_t cache             # last seen value of the other side's index
    fc_atomic_uptr owner     # thread bound to this side (0: none yet)
    char pad[128]


@cython.final
cdef class SpscRingBuffer:
    cdef char _pad0[128]
    cdef SpscSide prod
    cdef SpscSide cons
    cdef PyObject **slots
    cdef size_t mask
    cdef bint _init_done
    cdef object _capacity
    cdef object __weakref__

    cdef bint _room(self, size_t tail, size_t want) noexcept
    cdef size_t _available(self, size_t head, size_t want) noexcept


cdef struct TypedCore:
    # The SPSC ring of C numbers, usable without any Python object.
    SpscSide prod
    SpscSide cons
    char *data
    size_t mask                 # slots - 1 (slots is a power of two)
    size_t itemsize


cdef inline Py_ssize_t typed_push_n(TypedCore *r, const void *items, Py_ssize_t n) noexcept nogil:
    """Copy up to n numbers in from items; return how many (producer side)."""
    cdef size_t cap = r.mask + 1
    # relaxed: only the producer writes its own index.
    cdef size_t tail = fc_size_load_relaxed(&r.prod.index)
    cdef size_t room, k, off, first
    if n <= 0:
        return 0
    room = cap - (tail - r.prod.cache)
    if room < <size_t>n:
        # acquire: pairs with the consumer's release of its index, so its
        # copies out of the slots we now reuse are complete.
        r.prod.cache = fc_size_load_acquire(&r.cons.index)
        room = cap - (tail - r.prod.cache)
    k = room if room < <size_t>n else <size_t>n
    if k == 0:
        return 0
    off = tail & r.mask
    first = k if k < cap - off else cap - off
    memcpy(r.data + off * r.itemsize, items, first * r.itemsize)
    if k > first:
        memcpy(r.data, <const char *>items + first * r.itemsize, (k - first) * r.itemsize)
    # release: the bytes are in place before the consumer can see them.
    fc_size_store_release(&r.prod.index, tail + k)
    return k


cdef inline Py_ssize_t typed_pop_n(TypedCore *r, void *out, Py_ssize_t n) noexcept nogil:
    """Copy up to n numbers out into out; return how many (consumer side)."""
    cdef size_t cap = r.mask + 1
    # relaxed: only the consumer writes its own index.
    cdef size_t head = fc_size_load_relaxed(&r.cons.index)
    cdef size_t avail, k, off, first
    if n <= 0:
        return 0
    avail = r.cons.cache - head
    if avail < <size_t>n:
        # acquire: pairs with the producer's release of its index; the bytes
        # it copied in before are visible.
        r.cons.cache = fc_size_load_acquire(&r.prod.index)
        avail = r.cons.cache - head
    k = avail if avail < <size_t>n else <size_t>n
    if k == 0:
        return 0
    off = head & r.mask
    first = k if k < cap - off else cap - off
    memcpy(out, r.data + off * r.itemsize, first * r.itemsize)
    if k > first:
        memcpy(<char *>out + first * r.itemsize, r.data, (k - first) * r.itemsize)
    # release: our copies are done before the producer reuses the slots.
    fc_size_store_release(&r.cons.index, head + k)
    return k


cdef inline bint typed_push(TypedCore *r, const void *item) noexcept nogil:
    """Push one number; 1 if pushed, 0 if full."""
    return typed_push_n(r, item, 1) == 1


cdef inline bint typed_pop(TypedCore *r, void *out) noexcept nogil:
    """Pop one number; 1 if popped, 0 if empty."""
    return typed_pop_n(r, out, 1) == 1


cdef inline Py_ssize_t typed_size(TypedCore *r) noexcept nogil:
    """Numbers in the ring (a snapshot)."""
    # relaxed: a snapshot; head first so that tail >= head for what we saw.
    cdef size_t head = fc_size_load_relaxed(&r.cons.index)
    cdef size_t n = fc_size_load_relaxed(&r.prod.index) - head
    if <Py_ssize_t>n < 0:
        return 0
    return n if n <= r.mask + 1 else r.mask + 1


@cython.final
cdef class TypedRingBuffer:
    cdef char _pad0[128]
    cdef TypedCore core
    cdef char kind              # 'i' signed, 'u' unsigned, 'f' float
    cdef bint _init_done
    cdef object _typecode
    cdef object _capacity
    cdef object __weakref__

    cdef TypedCore *core_c(self) noexcept nogil

    cdef int _to_c(self, object x, char *out) except -1
    cdef object _to_py(self, const char *p)
    cdef int _get_view(self, object obj, Py_buffer *view, bint writable) except -1
