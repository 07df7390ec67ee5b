# cython: language_level=3, freethreading_compatible=True, autotestdict=False, binding=False
# cython: embedsignature=True, embedsignature.format=clinic
"""Compiled RingBuffer: Vyukov's bounded MPMC queue (Dmitry Vyukov, "Bounded
MPMC queue"; crossbeam's ArrayQueue): a sequence number per slot, one CAS on
head or tail per operation, never a lock.

An item is written before the release store that publishes its slot, and
read after the acquire load that observed that store.  Nothing here blocks:
push on a full ring and pop on an empty one return at once.  Layout:
_ring_mpmc_c.pxd; the argument checks it shares with the SPSC rings: _ring_c.
"""
cimport cython
from cpython.list cimport PyList_New
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport intptr_t
from libc.stdlib cimport free, malloc

from fastconc._ring_c cimport max_items_arg, ring_size, ring_used
from fastconc._support.atomic cimport (
    fc_size_cas_weak_relaxed,
    fc_size_init,
    fc_size_load_acquire,
    fc_size_load_relaxed,
    fc_size_store_release,
)
from fastconc._support.gc cimport (
    gc_clear_t,
    gc_traverse_t,
    gc_visit_t,
    set_gc_hooks,
    visit_heap_type,
)

import types

from fastconc._support.args import check_ring_memory, ring_alloc_error
from fastconc.errors import Empty

cdef extern from "Python.h":
    void Py_SET_SIZE(object o, Py_ssize_t size)
    void list_steal_item "PyList_SET_ITEM" (object lst, Py_ssize_t i, PyObject *o)

cdef object _MISSING = object()


cdef class RingBuffer:
    """Lock-free bounded multi-producer multi-consumer ring of objects.

    Never blocks: ``push`` returns False when full, ``pop`` raises Empty (or
    returns the default) when empty.  The capacity is rounded up to a power
    of two (at least 2).  As in any Vyukov queue, while another thread is
    between claiming a slot and finishing with it, ``push``/``pop`` may report
    full/empty for that slot even though ``len()`` disagrees: retry.
    """

    # Storage is allocated in __cinit__, so no instance exists without it
    # (not even one made by __new__ alone).
    def __cinit__(self, capacity, *args, **kwargs):
        cdef size_t size = ring_size(capacity)
        cdef size_t i
        # The same limit as the fallback's (it grows on demand): refuse what
        # this machine could never hold, before malloc and the writes below.
        check_ring_memory(size, sizeof(Cell))
        self.cells = <Cell *>malloc(size * sizeof(Cell))
        if self.cells == NULL:
            raise ring_alloc_error(size)
        for i in range(size):
            fc_size_init(&self.cells[i].seq, i)
            self.cells[i].item = NULL
        self.mask = size - 1
        fc_size_init(&self.head.v, 0)
        fc_size_init(&self.tail.v, 0)
        self._capacity = size

    def __init__(self, capacity):
        if self._init_done:
            raise RuntimeError("RingBuffer is already initialised")
        self._init_done = True

    def __dealloc__(self):
        cdef PyObject *p
        if self.cells == NULL:
            return
        while True:
            p = self._pop()
            if p == NULL:
                break
            Py_DECREF(<object>p)
        free(self.cells)

    def __reduce__(self):
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    cdef bint _push(self, object item) noexcept:
        cdef Cell *cell
        cdef size_t seq
        # relaxed: tail is only a hint of where to try; the cell's sequence
        # number (acquire below) is what orders us after the consumer that
        # freed the cell (Vyukov's enqueue).
        cdef size_t pos = fc_size_load_relaxed(&self.tail.v)
        cdef intptr_t dif
        while True:
            cell = &self.cells[pos & self.mask]
            # acquire: pairs with the consumer's release store of seq, so its
            # read of the old item happened before we overwrite it.
            seq = fc_size_load_acquire(&cell.seq)
            dif = <intptr_t>(seq - pos)
            if dif == 0:
                # relaxed CAS: claiming the position needs no ordering; the
                # release store of seq below publishes the item.
                if fc_size_cas_weak_relaxed(&self.tail.v, &pos, pos + 1):
                    break
            elif dif < 0:
                return False    # the cell still holds an item from a lap ago: full
            else:
                pos = fc_size_load_relaxed(&self.tail.v)
        Py_INCREF(item)
        cell.item = <PyObject *>item
        # release: the item pointer is visible before the cell reads as full.
        fc_size_store_release(&cell.seq, pos + 1)
        return True

    cdef PyObject *_pop(self) noexcept:
        """Take the oldest item (a new reference) or NULL when empty."""
        cdef Cell *cell
        cdef size_t seq
        cdef PyObject *p
        # relaxed: as in _push, the cell's seq carries the ordering.
        cdef size_t pos = fc_size_load_relaxed(&self.head.v)
        cdef intptr_t dif
        while True:
            cell = &self.cells[pos & self.mask]
            # acquire: pairs with the producer's release store; the item
            # pointer written before it is visible to us.
            seq = fc_size_load_acquire(&cell.seq)
            dif = <intptr_t>(seq - (pos + 1))
            if dif == 0:
                # relaxed CAS, as in _push.
                if fc_size_cas_weak_relaxed(&self.head.v, &pos, pos + 1):
                    break
            elif dif < 0:
                return NULL     # not yet written: empty
            else:
                pos = fc_size_load_relaxed(&self.head.v)
        p = cell.item
        cell.item = NULL
        # release: our read of the item happens before the producer of the
        # next lap (pos + size) may reuse the cell.
        fc_size_store_release(&cell.seq, pos + self.mask + 1)
        return p

    @property
    def capacity(self):
        """Slots in the ring (the requested capacity rounded up to a power of two)."""
        return self._capacity

    @cython.always_allow_keywords(False)   # METH_O, like deque.append
    def push(self, item):
        """Add item; return False (and keep no reference) if the ring is full."""
        return self._push(item)

    def pop(self, default=_MISSING):
        """Remove and return the oldest item.  When empty, return ``default``
        if given, else raise Empty."""
        cdef PyObject *p = self._pop()
        if p == NULL:
            if default is _MISSING:
                raise Empty("ring buffer is empty")
            return default
        item = <object>p
        Py_DECREF(item)
        return item

    def push_many(self, items):
        """Push items in order until one does not fit; return how many were
        pushed.  A non-sequence iterable is read to the end first, so no item
        is consumed without being pushed."""
        cdef Py_ssize_t n = 0
        # A tuple snapshot: without the GIL another thread may change a list
        # while we walk it (tuple(list) copies it atomically on 3.13t).
        if type(items) is not tuple:
            items = tuple(items)
        for item in items:
            if not self._push(item):
                break
            n += 1
        return n

    def pop_many(self, max_items):
        """Pop up to ``max_items`` of the items there now (fewer when the ring
        runs empty, or when other consumers take them first)."""
        cdef Py_ssize_t want = max_items_arg(max_items)
        cdef Py_ssize_t i, n = len(self)
        cdef PyObject *p
        cdef list out
        if want < n:
            n = want
        out = PyList_New(n)
        for i in range(n):
            p = self._pop()
            if p == NULL:
                Py_SET_SIZE(out, i)
                break
            list_steal_item(out, i, p)
        return out

    def __len__(self):
        # head first: tail is read later, so tail >= head for what we saw.
        # relaxed: a snapshot; head first, so tail >= head for what we saw.
        cdef size_t h = fc_size_load_relaxed(&self.head.v)
        return ring_used(h, fc_size_load_relaxed(&self.tail.v), self.mask + 1)

    def is_empty(self):
        """True when nothing is in the ring (a snapshot)."""
        return len(self) == 0

    def is_full(self):
        """True when every slot is taken (a snapshot)."""
        return len(self) == <Py_ssize_t>(self.mask + 1)

    def __repr__(self):
        return f"<fastconc.RingBuffer len={len(self)} capacity={self._capacity}>"

    __class_getitem__ = classmethod(types.GenericAlias)


# A push or pop runs entirely with the GIL held (or, free-threaded, without
# reaching a stop-the-world safe point), so a collector never sees a cell in
# the middle of a change: items are exactly the cells whose seq says "full".

cdef int _ring_traverse(RingBuffer self, gc_visit_t visit, void *arg) noexcept:
    cdef size_t pos, head, tail
    cdef Cell *cell
    cdef int e = visit_heap_type(<PyObject *>self, visit, arg, <gc_traverse_t>_ring_traverse)
    if e or self.cells == NULL:
        return e
    # acquire: pairs with the release stores of the cells' seq (and orders
    # our reads after any push/pop that completed before the collection).
    head = fc_size_load_acquire(&self.head.v)
    tail = fc_size_load_acquire(&self.tail.v)
    pos = head
    while pos != tail:
        cell = &self.cells[pos & self.mask]
        if fc_size_load_acquire(&cell.seq) == pos + 1 and cell.item != NULL:
            e = visit(cell.item, arg)
            if e:
                return e
        pos += 1
    return 0


cdef int _ring_clear(RingBuffer self) noexcept:
    cdef PyObject *p
    if self.cells == NULL:
        return 0
    while True:
        p = self._pop()
        if p == NULL:
            return 0
        Py_DECREF(<object>p)


set_gc_hooks(RingBuffer, <gc_traverse_t>_ring_traverse, <gc_clear_t>_ring_clear)
