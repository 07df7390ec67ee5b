# The growable ring of a big Channel and of every Queue (_BlockingRing in
# _channel_c.pxd, whose mutex guards every call here): a FIFO of owned object
# pointers whose storage doubles on demand.  Inline, like the other cores.
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF
from libc.stdlib cimport free, malloc


cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX


cdef enum:
    FIRST_ALLOCATION = 16


cdef struct ObjRing:
    # FIFO of owned references; storage doubles on demand up to max_slots.
    PyObject **slots
    Py_ssize_t size        # allocated slots: 0 or a power of two
    Py_ssize_t head        # slot of the oldest item
    Py_ssize_t count
    Py_ssize_t max_slots   # power of two >= the bound, and >= size


cdef inline Py_ssize_t ring_max_slots(ObjRing *r, Py_ssize_t bound) noexcept nogil:
    cdef Py_ssize_t cap = 1
    # Largest power of two a Py_ssize_t holds; ring_grow also checks bytes.
    while cap < bound and cap <= (PY_SSIZE_T_MAX >> 1):
        cap <<= 1
    # A lowered bound keeps the storage already allocated (it may be full).
    return cap if cap > r.size else r.size


cdef inline int ring_init(ObjRing *r, Py_ssize_t bound) noexcept nogil:
    r.slots = NULL
    r.size = 0
    r.head = 0
    r.count = 0
    r.max_slots = ring_max_slots(r, bound)
    return 0


cdef inline int ring_grow(ObjRing *r) noexcept nogil:
    cdef Py_ssize_t new_size = r.size * 2 if r.size else FIRST_ALLOCATION
    cdef Py_ssize_t i
    cdef PyObject **slots
    if new_size > r.max_slots:
        new_size = r.max_slots
    if new_size <= r.size or <size_t>new_size > (<size_t>-1) // sizeof(PyObject *):
        return -1
    # libc malloc, not PyMem_RawMalloc: this runs with the mutex held and
    # tracemalloc's raw-allocator hook would take the GIL (locking rule).
    slots = <PyObject **>malloc(<size_t>new_size * sizeof(PyObject *))
    if slots == NULL:
        return -1
    for i in range(r.count):
        slots[i] = r.slots[(r.head + i) & (r.size - 1)]
    free(r.slots)
    r.slots = slots
    r.size = new_size
    r.head = 0
    return 0


cdef inline Py_ssize_t ring_push_many(ObjRing *r, PyObject **items, Py_ssize_t n) noexcept nogil:
    """Append up to n items; fewer only when memory runs out."""
    cdef Py_ssize_t i
    for i in range(n):
        if r.count == r.size and ring_grow(r) < 0:
            return i
        r.slots[(r.head + r.count) & (r.size - 1)] = items[i]
        r.count += 1
    return n


cdef inline Py_ssize_t ring_pop_many(ObjRing *r, PyObject **out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if n > r.count:
        n = r.count
    for i in range(n):
        out[i] = r.slots[r.head]
        r.head = (r.head + 1) & (r.size - 1)
    r.count -= n
    return n


cdef inline ObjRing ring_detach(ObjRing *r) noexcept nogil:
    """Take every item out at once (the caller releases them without the mutex)."""
    cdef ObjRing taken = r[0]
    r.slots = NULL
    r.size = 0
    r.head = 0
    r.count = 0
    return taken


cdef inline void ring_release(ObjRing *r) noexcept:
    """Drop the references of a detached ring and free it.  Needs the GIL."""
    cdef Py_ssize_t i
    for i in range(r.count):
        Py_DECREF(<object>r.slots[(r.head + i) & (r.size - 1)])
    free(r.slots)
    r.slots = NULL
    r.count = 0
