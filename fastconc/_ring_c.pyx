# cython: language_level=3, freethreading_compatible=True, autotestdict=False, binding=False
# cython: embedsignature=True, embedsignature.format=clinic
"""Compiled lock-free single-producer single-consumer ring buffers
(RingBuffer, the multi-producer one, is in _ring_mpmc_c).

SpscRingBuffer  Lamport's single-producer single-consumer ring with cached
                indices (as in rigtorp's SPSCQueue / folly's
                ProducerConsumerQueue): plain loads and one release store per
                operation, no read-modify-write.
TypedRingBuffer the SPSC ring over C numbers, with batch copies done with the
                GIL released and a nogil C API (see _ring_c.pxd).

Memory orders, for every ring (RingBuffer's too): an item (pointer or bytes) is written before
the release store that publishes its slot, and read after the acquire load
that observed that store.  Nothing here blocks: push on a full ring and pop on
an empty one return at once.
"""
cimport cython
from cpython.buffer cimport (
    PyBUF_FORMAT,
    PyBUF_STRIDES,
    PyBuffer_IsContiguous,
    PyBuffer_Release,
    PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from cpython.list cimport PyList_New
from cpython.number cimport PyNumber_Index
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport (
    int8_t,
    int16_t,
    int32_t,
    int64_t,
    uint8_t,
    uint16_t,
    uint32_t,
    uint64_t,
    uintptr_t,
)
from libc.stdlib cimport free, malloc

from fastconc._support.atomic cimport (
    fc_size_init,
    fc_size_load_acquire,
    fc_size_load_relaxed,
    fc_size_store_release,
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

import array
import operator
import types

import sys

from fastconc._support.args import check_ring_memory, ring_alloc_error
from fastconc._support.typecodes import check_typecode
from fastconc.errors import Empty

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
    void Py_SET_SIZE(object o, Py_ssize_t size)
    void list_steal_item "PyList_SET_ITEM" (object lst, Py_ssize_t i, PyObject *o)

cdef object _MISSING = object()

# Large enough to be worth dropping the GIL for a copy.
cdef size_t NOGIL_COPY_BYTES = 16384


cdef size_t ring_size(object capacity) except 0:
    """Validate a capacity and round it up to a power of two, at least 2
    (Vyukov's sequence numbers cannot tell a full 1-slot ring from an empty
    one; the other rings follow the same rule so the three agree)."""
    cdef size_t size = 2
    if isinstance(capacity, bool):
        raise TypeError("capacity must be an int, not bool")
    try:
        n = operator.index(capacity)
    except TypeError:
        raise TypeError(f"capacity must be an int, not {type(capacity).__name__}") from None
    if n < 1:
        raise ValueError(f"capacity must be >= 1, got {n!r}")
    if n > (PY_SSIZE_T_MAX >> 4):
        raise ValueError(f"capacity too large: {n!r}")
    while size < <size_t>n:
        size <<= 1
    return size


cdef Py_ssize_t max_items_arg(object max_items) except -1:
    if isinstance(max_items, bool):
        raise TypeError("max_items must be an int, not bool")
    try:
        n = operator.index(max_items)
    except TypeError:
        raise TypeError(f"max_items must be an int, not {type(max_items).__name__}") from None
    if n < 0:
        raise ValueError(f"max_items must be >= 0, got {n!r}")
    return n if n < PY_SSIZE_T_MAX else PY_SSIZE_T_MAX


# ---------------------------------------------------------------- SPSC sides

cdef void _side_init(SpscSide *side) noexcept:
    fc_size_init(&side.index, 0)
    side.cache = 0
    fc_uptr_init(&side.owner, 0)


cdef int _claim(SpscSide *side, str cls, str role) except -1:
    """Bind this side to the calling thread on first use; refuse other threads.

    A plain relaxed load on the hot path (no read-modify-write); the CAS runs
    once, for the first call."""
    cdef uintptr_t me = fc_thread_id()
    # relaxed: the owner word guards no other data; only equality matters,
    # and the CAS below decides races between first users.
    cdef uintptr_t owner = fc_uptr_load_relaxed(&side.owner)
    if owner == me:
        return 0
    if owner == 0 and fc_uptr_cas_strong_relaxed(&side.owner, &owner, me):
        return 0
    raise RuntimeError(
        f"{cls} is single-{role}: another thread already {role}s to it "
        f"(the first thread to {role} owns that side for the ring's lifetime)")


# ---------------------------------------------------------------- SpscRingBuffer

cdef class SpscRingBuffer:
    """Single-producer single-consumer ring of objects; the fastest ring.

    The first thread that pushes becomes the producer and the first that pops
    the consumer (they may be the same thread); any other thread gets
    RuntimeError, so misuse cannot corrupt the ring.
    """

    def __cinit__(self, capacity, *args, **kwargs):
        cdef size_t size = ring_size(capacity)
        check_ring_memory(size, sizeof(PyObject *))
        self.slots = <PyObject **>malloc(size * sizeof(PyObject *))
        if self.slots == NULL:
            raise ring_alloc_error(size)
        self.mask = size - 1
        _side_init(&self.prod)
        _side_init(&self.cons)
        self._capacity = size

    def __init__(self, capacity):
        if self._init_done:
            raise RuntimeError("SpscRingBuffer is already initialised")
        self._init_done = True

    def __dealloc__(self):
        cdef size_t pos, tail
        if self.slots == NULL:
            return
        # relaxed: dealloc runs with no other reference to the ring left.
        tail = fc_size_load_relaxed(&self.prod.index)
        pos = fc_size_load_relaxed(&self.cons.index)
        while pos != tail:
            Py_DECREF(<object>self.slots[pos & self.mask])
            pos += 1
        free(self.slots)

    def __reduce__(self):
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    @property
    def capacity(self):
        """Slots in the ring (the requested capacity rounded up to a power of two)."""
        return self._capacity

    cdef bint _room(self, size_t tail, size_t want) noexcept:
        """Producer side: is there room for `want` more items at `tail`?"""
        if tail - self.prod.cache + want <= self.mask + 1:
            return True
        # acquire: pairs with the consumer's release of head, so its reads of
        # the slots we are about to overwrite are done.
        self.prod.cache = fc_size_load_acquire(&self.cons.index)
        return tail - self.prod.cache + want <= self.mask + 1

    @cython.always_allow_keywords(False)   # METH_O, like deque.append
    def push(self, item):
        """Add item (producer thread only); return False if the ring is full."""
        _claim(&self.prod, "SpscRingBuffer", "push")
        # relaxed: only this thread writes the producer index.
        cdef size_t tail = fc_size_load_relaxed(&self.prod.index)
        if not self._room(tail, 1):
            return False
        Py_INCREF(item)
        self.slots[tail & self.mask] = <PyObject *>item
        # release: the slot is written before the consumer can see it.
        fc_size_store_release(&self.prod.index, tail + 1)
        return True

    def push_many(self, items):
        """Push items in order until one does not fit; return how many were
        pushed (producer thread only).  A non-sequence iterable is read to the
        end first."""
        cdef size_t tail, start
        _claim(&self.prod, "SpscRingBuffer", "push")
        # Materialise first: reading an iterator (or a list subclass) runs
        # Python code that may push to this ring; the indices are read only
        # after that, and the loop below runs no Python code.  Lists too:
        # without the GIL another thread could change one under the loop
        # (tuple(list) copies it atomically on 3.13t).
        if type(items) is not tuple:
            items = tuple(items)
        # relaxed: only this (producer) thread writes the producer index.
        tail = fc_size_load_relaxed(&self.prod.index)
        start = tail
        for item in items:
            if not self._room(tail, 1):
                break
            Py_INCREF(item)
            self.slots[tail & self.mask] = <PyObject *>item
            tail += 1
        # release: publishes every slot written above at once.
        fc_size_store_release(&self.prod.index, tail)
        return tail - start

    cdef size_t _available(self, size_t head, size_t want) noexcept:
        """Consumer side: how many items are readable at `head` (refreshing
        the cached producer index only when it shows fewer than `want`)."""
        if self.cons.cache - head >= want:
            return self.cons.cache - head
        # acquire: pairs with the producer's release of tail; the slots it
        # wrote before are visible.
        self.cons.cache = fc_size_load_acquire(&self.prod.index)
        return self.cons.cache - head

    def pop(self, default=_MISSING):
        """Remove and return the oldest item (consumer thread only).  When
        empty, return ``default`` if given, else raise Empty."""
        _claim(&self.cons, "SpscRingBuffer", "pop")
        # relaxed: only this thread writes the consumer index.
        cdef size_t head = fc_size_load_relaxed(&self.cons.index)
        cdef PyObject *p
        if self._available(head, 1) == 0:
            if default is _MISSING:
                raise Empty("ring buffer is empty")
            return default
        p = self.slots[head & self.mask]
        # release: we are done reading the slot before the producer reuses it.
        fc_size_store_release(&self.cons.index, head + 1)
        item = <object>p
        Py_DECREF(item)
        return item

    def pop_many(self, max_items):
        """Pop up to ``max_items`` items (consumer thread only)."""
        cdef Py_ssize_t want = max_items_arg(max_items)
        cdef size_t head, i, n, avail
        cdef list out
        _claim(&self.cons, "SpscRingBuffer", "pop")
        # relaxed: only this (consumer) thread writes the consumer index.
        n = self._available(fc_size_load_relaxed(&self.cons.index), want)
        if <size_t>want < n:
            n = want
        # Allocate before reading the index: on 3.10/3.11 the allocation may
        # run the GC, and a __del__ there may pop from this ring.
        out = PyList_New(n)
        head = fc_size_load_relaxed(&self.cons.index)
        avail = self._available(head, n)
        if avail < n:
            n = avail
            Py_SET_SIZE(out, n)
        for i in range(n):
            # The list steals the reference the ring held.
            list_steal_item(out, i, self.slots[(head + i) & self.mask])
        fc_size_store_release(&self.cons.index, head + n)
        return out

    def __len__(self):
        # relaxed: a snapshot, read as in RingBuffer.__len__.
        cdef size_t h = fc_size_load_relaxed(&self.cons.index)
        return ring_used(h, fc_size_load_relaxed(&self.prod.index), self.mask + 1)

    def is_empty(self):
        """True when nothing is in the ring (a snapshot)."""
        return len(self) == 0

    def is_full(self):
        """True when every slot is taken (a snapshot)."""
        return len(self) == <Py_ssize_t>(self.mask + 1)

    def __repr__(self):
        return f"<fastconc.SpscRingBuffer len={len(self)} capacity={self._capacity}>"

    __class_getitem__ = classmethod(types.GenericAlias)


cdef int _spsc_traverse(SpscRingBuffer self, gc_visit_t visit, void *arg) noexcept:
    cdef size_t pos, tail
    cdef int e = visit_heap_type(<PyObject *>self, visit, arg, <gc_traverse_t>_spsc_traverse)
    if e or self.slots == NULL:
        return e
    # acquire on the producer index: the slots it published are visible.
    pos = fc_size_load_acquire(&self.cons.index)
    tail = fc_size_load_acquire(&self.prod.index)
    while pos != tail:
        e = visit(self.slots[pos & self.mask], arg)
        if e:
            return e
        pos += 1
    return 0


cdef int _spsc_clear(SpscRingBuffer self) noexcept:
    # Only ever called on unreachable rings: no producer or consumer is
    # running, so taking over the consumer side is safe.
    cdef size_t pos, tail
    cdef PyObject *p
    if self.slots == NULL:
        return 0
    # acquire: the slots the producer published are visible; relaxed for our
    # own (consumer) index.
    tail = fc_size_load_acquire(&self.prod.index)
    pos = fc_size_load_relaxed(&self.cons.index)
    self.cons.cache = tail
    while pos != tail:
        p = self.slots[pos & self.mask]
        pos += 1
        fc_size_store_release(&self.cons.index, pos)
        Py_DECREF(<object>p)
    return 0


set_gc_hooks(SpscRingBuffer, <gc_traverse_t>_spsc_traverse, <gc_clear_t>_spsc_clear)


# ---------------------------------------------------------------- TypedRingBuffer

cdef char _NATIVE_ORDER = b'<' if sys.byteorder == "little" else b'>'


cdef char _format_kind(const char *fmt) noexcept:
    """'i', 'u' or 'f' for a single native number format, else 0 (the same
    rule as fastconc._support.typecodes, which the fallback uses)."""
    if fmt == NULL:
        return b'u'         # no format means unsigned bytes
    if fmt[0] == b'@' or fmt[0] == b'=':
        fmt += 1
    elif fmt[0] == b'<' or fmt[0] == b'>' or fmt[0] == b'!':
        if (b'>' if fmt[0] == b'!' else fmt[0]) != _NATIVE_ORDER:
            return 0
        fmt += 1
    if fmt[0] == 0 or fmt[1] != 0:
        return 0
    if fmt[0] in b'bhilqn':
        return b'i'
    if fmt[0] in b'BHILQN':
        return b'u'
    if fmt[0] in b'fd':
        return b'f'
    return 0


cdef class TypedRingBuffer:
    """Single-producer single-consumer ring of C numbers of one ``array``
    typecode ('b', 'B', 'h', 'H', 'i', 'I', 'l', 'L', 'q', 'Q', 'f', 'd').

    ``push``/``pop`` move one Python number; ``push_many(buffer)`` and
    ``pop_into(buffer)`` / ``pop_many(n)`` copy whole buffers (array.array,
    memoryview, numpy arrays...) with the GIL released.  Other Cython
    extensions get a nogil C API (typed_push_n, typed_pop_n... on
    ``core_c()``; see _ring_c.pxd).  The first thread that pushes is the producer and the
    first that pops the consumer; other threads get RuntimeError.
    """

    def __cinit__(self, capacity, typecode, *args, **kwargs):
        cdef size_t size = ring_size(capacity)
        kind, itemsize = check_typecode(typecode)
        check_ring_memory(size, itemsize)
        self.core.data = <char *>malloc(size * <size_t>itemsize)
        if self.core.data == NULL:
            raise ring_alloc_error(size)
        self.core.mask = size - 1
        self.core.itemsize = itemsize
        self.kind = ord(kind)
        _side_init(&self.core.prod)
        _side_init(&self.core.cons)
        self._typecode = typecode
        self._capacity = size

    def __init__(self, capacity, typecode):
        if self._init_done:
            raise RuntimeError("TypedRingBuffer is already initialised")
        self._init_done = True

    def __dealloc__(self):
        free(self.core.data)

    def __reduce__(self):
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    @property
    def capacity(self):
        """Slots in the ring (the requested capacity rounded up to a power of two)."""
        return self._capacity

    @property
    def typecode(self):
        """The array-module typecode of the numbers held."""
        return self._typecode

    @property
    def itemsize(self):
        """Bytes per number."""
        return self.core.itemsize

    cdef TypedCore *core_c(self) noexcept nogil:
        """The C-level ring for typed_push_n / typed_pop_n (see _ring_c.pxd)."""
        return &self.core

    # ------------------------------------------------------------ Python API

    cdef int _to_c(self, object x, char *out) except -1:
        """Convert like array.array.append: TypeError for the wrong type,
        OverflowError for a value the C type cannot hold."""
        cdef double d
        cdef long long v
        cdef unsigned long long u
        if self.kind == b'f':
            d = x
            if self.core.itemsize == 4:
                (<float *>out)[0] = <float>d
            else:
                (<double *>out)[0] = d
        elif self.kind == b'i':
            if type(x) is not int:
                x = PyNumber_Index(x)   # TypeError for floats, as array does
            v = x
            if self.core.itemsize == 1:
                if not -128 <= v <= 127:
                    raise OverflowError(f"{x} does not fit in a signed 8-bit number")
                (<int8_t *>out)[0] = <int8_t>v
            elif self.core.itemsize == 2:
                if not -32768 <= v <= 32767:
                    raise OverflowError(f"{x} does not fit in a signed 16-bit number")
                (<int16_t *>out)[0] = <int16_t>v
            elif self.core.itemsize == 4:
                if not -2147483648 <= v <= 2147483647:
                    raise OverflowError(f"{x} does not fit in a signed 32-bit number")
                (<int32_t *>out)[0] = <int32_t>v
            else:
                (<int64_t *>out)[0] = <int64_t>v
        else:
            if type(x) is not int:
                x = PyNumber_Index(x)
            if x < 0:
                raise OverflowError(f"{x} is negative; this ring holds unsigned numbers")
            u = x
            if self.core.itemsize < 8 and u >> (8 * self.core.itemsize):
                raise OverflowError(
                    f"{x} does not fit in an unsigned {8 * self.core.itemsize}-bit number")
            if self.core.itemsize == 1:
                (<uint8_t *>out)[0] = <uint8_t>u
            elif self.core.itemsize == 2:
                (<uint16_t *>out)[0] = <uint16_t>u
            elif self.core.itemsize == 4:
                (<uint32_t *>out)[0] = <uint32_t>u
            else:
                (<uint64_t *>out)[0] = <uint64_t>u
        return 0

    cdef object _to_py(self, const char *p):
        if self.kind == b'f':
            return (<const float *>p)[0] if self.core.itemsize == 4 else (<const double *>p)[0]
        if self.kind == b'i':
            if self.core.itemsize == 1:
                return (<const int8_t *>p)[0]
            if self.core.itemsize == 2:
                return (<const int16_t *>p)[0]
            if self.core.itemsize == 4:
                return (<const int32_t *>p)[0]
            return (<const int64_t *>p)[0]
        if self.core.itemsize == 1:
            return (<const uint8_t *>p)[0]
        if self.core.itemsize == 2:
            return (<const uint16_t *>p)[0]
        if self.core.itemsize == 4:
            return (<const uint32_t *>p)[0]
        return (<const uint64_t *>p)[0]

    @cython.always_allow_keywords(False)
    def push(self, x):
        """Push one number (producer thread only); False if the ring is full.
        Converts like array.array: TypeError / OverflowError for bad values."""
        cdef uint64_t tmp = 0     # 8 aligned bytes for any of the C types
        _claim(&self.core.prod, "TypedRingBuffer", "push")
        self._to_c(x, <char *>&tmp)
        return typed_push_n(&self.core, &tmp, 1) == 1

    def pop(self, default=_MISSING):
        """Pop one number (consumer thread only).  When empty, return
        ``default`` if given, else raise Empty."""
        cdef uint64_t tmp = 0
        _claim(&self.core.cons, "TypedRingBuffer", "pop")
        if typed_pop_n(&self.core, &tmp, 1) == 0:
            if default is _MISSING:
                raise Empty("ring buffer is empty")
            return default
        return self._to_py(<char *>&tmp)

    cdef int _get_view(self, object obj, Py_buffer *view, bint writable) except -1:
        """Get obj's buffer after checking it matches this ring; raises (with
        nothing copied, and the buffer released) for a wrong format, item
        size or layout, and for a read-only buffer when writing."""
        cdef Py_ssize_t size
        if not PyObject_CheckBuffer(obj):
            raise TypeError(f"buffer must support the buffer protocol, not {type(obj).__name__}")
        try:
            PyObject_GetBuffer(obj, view, PyBUF_FORMAT | PyBUF_STRIDES)
        except BufferError:
            # e.g. exporters that need suboffsets (PIL-style indirect arrays)
            raise ValueError("buffer must be C-contiguous") from None
        if writable and view.readonly:
            PyBuffer_Release(view)
            raise TypeError("buffer is read-only")
        if not PyBuffer_IsContiguous(view, b'C'):
            PyBuffer_Release(view)
            raise ValueError("buffer must be C-contiguous")
        if <size_t>view.itemsize != self.core.itemsize or _format_kind(view.format) != self.kind:
            fmt = <bytes>view.format if view.format != NULL else b"B"
            size = view.itemsize
            PyBuffer_Release(view)
            raise ValueError(
                f"buffer holds format {fmt.decode('ascii', 'replace')!r} (itemsize {size}); "
                f"this ring holds {self._typecode!r} (itemsize {self.core.itemsize})")
        return 0

    def push_many(self, buffer):
        """Copy numbers in from a buffer of the ring's type (array.array,
        memoryview, numpy array...) until the ring is full; return how many.
        Producer thread only.  Mismatched format or item size, or a
        non-contiguous buffer, raise before anything is copied.  Large copies
        run with the GIL released."""
        cdef Py_buffer view
        cdef Py_ssize_t n, k
        _claim(&self.core.prod, "TypedRingBuffer", "push")
        self._get_view(buffer, &view, False)
        try:
            n = view.len // <Py_ssize_t>self.core.itemsize
            if <size_t>view.len >= NOGIL_COPY_BYTES:
                with nogil:
                    k = typed_push_n(&self.core, view.buf, n)
            else:
                k = typed_push_n(&self.core, view.buf, n)
        finally:
            PyBuffer_Release(&view)
        return k

    def pop_into(self, buffer):
        """Copy up to len(buffer) numbers out into a writable buffer of the
        ring's type; return how many.  Consumer thread only."""
        cdef Py_buffer view
        cdef Py_ssize_t n, k
        _claim(&self.core.cons, "TypedRingBuffer", "pop")
        self._get_view(buffer, &view, True)
        try:
            n = view.len // <Py_ssize_t>self.core.itemsize
            if <size_t>view.len >= NOGIL_COPY_BYTES:
                with nogil:
                    k = typed_pop_n(&self.core, view.buf, n)
            else:
                k = typed_pop_n(&self.core, view.buf, n)
        finally:
            PyBuffer_Release(&view)
        return k

    def pop_many(self, n):
        """Pop up to n numbers into a new array.array.  Consumer thread only."""
        cdef Py_ssize_t want = max_items_arg(n)
        cdef Py_ssize_t k
        _claim(&self.core.cons, "TypedRingBuffer", "pop")
        k = typed_size(&self.core)
        if want < k:
            k = want
        out = array.array(self._typecode, bytes(k * self.core.itemsize))
        if k:
            del out[self.pop_into(out):]
        return out

    def __len__(self):
        return typed_size(&self.core)

    def is_empty(self):
        """True when nothing is in the ring (a snapshot)."""
        return typed_size(&self.core) == 0

    def is_full(self):
        """True when every slot is taken (a snapshot)."""
        return <size_t>typed_size(&self.core) == self.core.mask + 1

    def __repr__(self):
        return (f"<fastconc.TypedRingBuffer typecode={self._typecode!r} "
                f"len={typed_size(&self.core)} capacity={self._capacity}>")
