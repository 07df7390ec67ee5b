# cython: language_level=3, freethreading_compatible=True, autotestdict=False, binding=False
# cython: boundscheck=False, wraparound=False, auto_pickle=False
# cython: embedsignature=True, embedsignature.format=clinic
"""Compiled WorkStealingDeque: Chase & Lev's growable circular deque with
the C11 memory orders of Le et al. 2013.  The C-level deque (deque_push,
deque_take, deque_steal...) is also what each worker of the compiled pool
(fastconc._pool_c) owns.  Layout and invariants: _deque_c.pxd.
"""
cimport cython
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport calloc, free

from fastconc._support.atomic cimport (
    fc_fence_seq_cst,
    fc_i64_cas_strong_seq_cst,
    fc_i64_init,
    fc_i64_load_acquire,
    fc_i64_load_relaxed,
    fc_i64_store_relaxed,
    fc_i64_store_release,
    fc_ptr_init,
    fc_ptr_load_acquire,
    fc_ptr_load_relaxed,
    fc_ptr_store_relaxed,
    fc_ptr_store_release,
    fc_uptr_cas_strong_relaxed,
    fc_uptr_init,
    fc_uptr_load_relaxed,
)
from fastconc._support.gc cimport (
    gc_clear_t,
    gc_traverse_t,
    gc_visit_t,
    set_gc_hooks,
    visit_heap_type,
)
from fastconc._support.sync cimport fc_thread_id


cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX

import types

from fastconc.errors import Empty


# ---------------------------------------------------------------- Chase-Lev deque

cdef DequeArray *array_new(int64_t slots) noexcept nogil:
    cdef DequeArray *a
    if slots <= 0 or <size_t>slots > (PY_SSIZE_T_MAX - sizeof(DequeArray)) // sizeof(fc_atomic_ptr):
        return NULL
    # libc calloc: may run without the GIL attached (the nogil race test);
    # zeroed so a thief that loses its race never even reads garbage.
    a = <DequeArray *>calloc(1, sizeof(DequeArray) + <size_t>slots * sizeof(fc_atomic_ptr))
    if a == NULL:
        return NULL
    a.mask = slots - 1
    a.slots = <fc_atomic_ptr *>(a + 1)
    a.older = NULL
    return a


cdef int deque_init(Deque *d) noexcept nogil:
    cdef DequeArray *a = array_new(DEQUE_FIRST_SLOTS)
    if a == NULL:
        return -1
    fc_i64_init(&d.top.v, 0)
    fc_i64_init(&d.bottom.v, 0)
    fc_ptr_init(&d.array, a)
    return 0


cdef DequeArray *deque_grow(Deque *d, DequeArray *a, int64_t t, int64_t b) noexcept nogil:
    """Owner only: copy the live slots [t, b) into an array twice the size."""
    cdef DequeArray *bigger = array_new(2 * (a.mask + 1))
    cdef int64_t i
    if bigger == NULL:
        return NULL
    for i in range(t, b):
        # relaxed: the owner is the only writer of these slots, and the new
        # array is published by the release store below.
        fc_ptr_store_relaxed(&bigger.slots[i & bigger.mask],
                             fc_ptr_load_relaxed(&a.slots[i & a.mask]))
    bigger.older = a
    # release: a thief that acquires the new array pointer sees the copied
    # slots (crossbeam-deque's Worker::resize swaps the buffer with Release).
    fc_ptr_store_release(&d.array, bigger)
    return bigger


cdef int deque_push(Deque *d, PyObject *x) noexcept nogil:
    """Owner only.  Stores an owned reference; -1 when out of memory."""
    # relaxed: bottom is written by this thread only (Le et al., push).
    cdef int64_t b = fc_i64_load_relaxed(&d.bottom.v)
    # acquire: pairs with the thieves' CAS on top, so the slots they have
    # emptied may be reused (Le et al., push: load_acquire(&q->top)).
    cdef int64_t t = fc_i64_load_acquire(&d.top.v)
    # relaxed: the array pointer is replaced by this thread only.
    cdef DequeArray *a = <DequeArray *>fc_ptr_load_relaxed(&d.array)
    if b - t > a.mask:
        a = deque_grow(d, a, t, b)
        if a == NULL:
            return -1
    # relaxed slot store, published by the release fence + bottom store below.
    fc_ptr_store_relaxed(&a.slots[b & a.mask], x)
    # release: the slot write happens-before any thief's acquire load of the
    # new bottom.  Le et al. put a release fence before a relaxed store; a
    # release store orders the same here (crossbeam-deque's push stores
    # `back` with Release), and ThreadSanitizer, which does not model
    # stand-alone fences, sees this edge.
    fc_i64_store_release(&d.bottom.v, b + 1)
    return 0


cdef PyObject *deque_take(Deque *d) noexcept nogil:
    """Owner only: the newest item (an owned reference), or NULL if empty."""
    # relaxed: bottom and array are written by this thread only (Le et al., take).
    cdef int64_t b = fc_i64_load_relaxed(&d.bottom.v) - 1
    cdef DequeArray *a = <DequeArray *>fc_ptr_load_relaxed(&d.array)
    cdef int64_t t
    cdef PyObject *x = NULL
    # relaxed store, then a seq_cst fence: the reservation of slot b must be
    # ordered before the read of top, against a thief's read of top then
    # bottom (the store-load pair only a full fence orders; Le et al., take).
    fc_i64_store_relaxed(&d.bottom.v, b)
    fc_fence_seq_cst()
    # relaxed: ordered by the fence above.
    t = fc_i64_load_relaxed(&d.top.v)
    if t <= b:
        # relaxed: this slot was written by this thread.
        x = <PyObject *>fc_ptr_load_relaxed(&a.slots[b & a.mask])
        if t == b:
            # The last item: race the thieves for it with a seq_cst CAS on top
            # (Le et al., take); losing means a thief owns it now.
            if not fc_i64_cas_strong_seq_cst(&d.top.v, &t, t + 1):
                x = NULL
            # release (relaxed would do on hardware): restores bottom == top
            # (empty); release keeps the slots published by earlier pushes
            # ordered before every later store of bottom in the C11 model too
            # (C++20 dropped same-thread release sequences).
            fc_i64_store_release(&d.bottom.v, b + 1)
    else:
        # Was already empty: undo the reservation (release: as above).
        fc_i64_store_release(&d.bottom.v, b + 1)
    return x


cdef PyObject *deque_steal(Deque *d, bint *lost) noexcept nogil:
    """Any thread: the oldest item (owned reference), or NULL.  *lost is set
    when another thread won the race for it (the caller may retry)."""
    cdef int64_t t, b
    cdef DequeArray *a
    cdef PyObject *x
    lost[0] = False
    # acquire load of top, seq_cst fence, acquire load of bottom (Le et al.,
    # steal): the fence orders our read of top before bottom against the
    # owner's store of bottom before its read of top in take().
    t = fc_i64_load_acquire(&d.top.v)
    fc_fence_seq_cst()
    b = fc_i64_load_acquire(&d.bottom.v)
    if t >= b:
        return NULL
    # acquire (the paper's consume): pairs with the release store in
    # deque_grow, so the slots of a new array are visible.  An old array is
    # never freed before the deque, so reading one late is harmless.
    a = <DequeArray *>fc_ptr_load_acquire(&d.array)
    # relaxed: the acquire of bottom made this slot's store visible.
    x = <PyObject *>fc_ptr_load_relaxed(&a.slots[t & a.mask])
    # seq_cst CAS on top (Le et al., steal): only its success makes x ours;
    # a failure means the owner or another thief took position t.
    if not fc_i64_cas_strong_seq_cst(&d.top.v, &t, t + 1):
        lost[0] = True
        return NULL
    return x


cdef PyObject *deque_steal_retrying(Deque *d, Py_ssize_t retries) noexcept nogil:
    """deque_steal, retrying lost races up to `retries` times."""
    cdef bint lost = True
    cdef PyObject *x = NULL
    while lost and retries >= 0:
        x = deque_steal(d, &lost)
        retries -= 1
    return x


cdef Py_ssize_t deque_len(Deque *d) noexcept nogil:
    # relaxed: a snapshot; both words may move right after.
    cdef int64_t n = fc_i64_load_relaxed(&d.bottom.v) - fc_i64_load_relaxed(&d.top.v)
    return <Py_ssize_t>n if n > 0 else 0


cdef void deque_free_arrays(Deque *d) noexcept nogil:
    """Free every array, ignoring what the slots hold."""
    # relaxed: no other thread touches a deque being freed.
    cdef DequeArray *a = <DequeArray *>fc_ptr_load_relaxed(&d.array)
    cdef DequeArray *older
    fc_ptr_store_relaxed(&d.array, NULL)
    while a != NULL:
        older = a.older
        free(a)
        a = older


cdef void deque_free(Deque *d) noexcept:
    """Release the items still held and every array.  Needs the GIL, and no
    other thread may use the deque any more."""
    cdef DequeArray *a = <DequeArray *>fc_ptr_load_relaxed(&d.array)
    cdef int64_t i
    # relaxed: no other thread touches a deque being freed.
    cdef int64_t t = fc_i64_load_relaxed(&d.top.v)
    cdef int64_t b = fc_i64_load_relaxed(&d.bottom.v)
    if a == NULL:
        return
    fc_i64_store_relaxed(&d.top.v, b)
    for i in range(t, b):
        Py_DECREF(<object><PyObject *>fc_ptr_load_relaxed(&a.slots[i & a.mask]))
    deque_free_arrays(d)


@cython.final
cdef class WorkStealingDeque:
    """Chase-Lev work-stealing deque of Python objects.

    The owner thread (the first to call :meth:`push` or :meth:`pop`) pushes
    and pops at one end, LIFO; any thread may :meth:`steal` from the other
    end, FIFO.  Lock-free; grows without bound.  Each item is returned
    exactly once, whoever wins a race for it.
    """

    def __cinit__(self, *args, **kwargs):
        if args or kwargs:
            raise TypeError("WorkStealingDeque() takes no arguments")
        if deque_init(&self.deque) < 0:
            raise MemoryError("cannot allocate the deque")
        fc_uptr_init(&self.owner, 0)
        self.initialised = True

    def __dealloc__(self):
        if self.initialised:
            deque_free(&self.deque)

    def __reduce__(self):
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    cdef int _claim(self) except -1:
        cdef uintptr_t me = fc_thread_id()
        cdef uintptr_t expected = 0
        # relaxed: the owner word only says who may push/pop; the deque's own
        # atomics order the data.  The CAS makes exactly one thread the owner.
        if fc_uptr_load_relaxed(&self.owner) == me:
            return 0
        if fc_uptr_cas_strong_relaxed(&self.owner, &expected, me):
            return 0
        raise RuntimeError(
            "WorkStealingDeque.push/pop belong to the owner thread (the first "
            "thread that pushed or popped); other threads may only steal()")

    def push(self, item):
        """Add item at the owner's end.  Owner thread only."""
        self._claim()
        Py_INCREF(item)
        if deque_push(&self.deque, <PyObject *>item) < 0:
            Py_DECREF(item)
            raise MemoryError("cannot grow the deque")

    def pop(self):
        """Remove and return the newest item (LIFO).  Owner thread only.
        Raises :class:`fastconc.Empty` when there is none."""
        self._claim()
        cdef PyObject *x = deque_take(&self.deque)
        if x == NULL:
            raise Empty("pop from an empty WorkStealingDeque")
        return steal_ref(x)

    def steal(self):
        """Remove and return the oldest item (FIFO).  Any thread.  A race
        lost to another thread is retried; raises :class:`fastconc.Empty`
        only when the deque was seen empty."""
        cdef bint lost = True
        cdef PyObject *x = NULL
        while lost:
            x = deque_steal(&self.deque, &lost)
        if x == NULL:
            raise Empty("steal from an empty WorkStealingDeque")
        return steal_ref(x)

    def __len__(self):
        return deque_len(&self.deque)

    def is_empty(self):
        """True when no item is left (a snapshot, like len())."""
        return deque_len(&self.deque) == 0

    def __repr__(self):
        return f"<{type(self).__name__} len={deque_len(&self.deque)}>"

    __class_getitem__ = classmethod(types.GenericAlias)


# The garbage collector must see the items a deque holds (a cycle through a
# deque would otherwise never be freed).  Every deque operation runs with the
# thread attached to the interpreter, so the collector (which holds the GIL,
# or stops the world on free-threaded builds) never races them.
cdef int _deque_traverse(PyObject *o, gc_visit_t visit, void *arg) noexcept:
    cdef WorkStealingDeque self = <WorkStealingDeque>o
    cdef DequeArray *a
    cdef int64_t i, t, b
    cdef int r = visit_heap_type(o, visit, arg, <gc_traverse_t>_deque_traverse)
    if r or not self.initialised:
        return r
    # relaxed: the world is stopped for the collector (see above).
    a = <DequeArray *>fc_ptr_load_relaxed(&self.deque.array)
    t = fc_i64_load_relaxed(&self.deque.top.v)
    b = fc_i64_load_relaxed(&self.deque.bottom.v)
    if a == NULL:
        return 0
    for i in range(t, b):
        r = visit(<PyObject *>fc_ptr_load_relaxed(&a.slots[i & a.mask]), arg)
        if r:
            return r
    return 0


cdef int _deque_clear(PyObject *o) noexcept:
    cdef WorkStealingDeque self = <WorkStealingDeque>o
    cdef PyObject *x
    if self.initialised:
        x = deque_take(&self.deque)
        while x != NULL:
            Py_DECREF(<object>x)
            x = deque_take(&self.deque)
    return 0


set_gc_hooks(WorkStealingDeque, <gc_traverse_t>_deque_traverse, <gc_clear_t>_deque_clear)
