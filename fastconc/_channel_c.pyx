# cython: language_level=3, freethreading_compatible=True, autotestdict=False
"""Compiled backend of Channel, and the core it shares with Queue
(_channel_queue_c).

A Channel of capacity <= ARRAY_MAX_CAP keeps its items in a lock-free array
(crossbeam-channel's array flavor, _channel_array_c.pxd): a send or receive
is one CAS on the tail or head and one release store, and takes no lock.
Bigger Channels and Queue keep a growable ring behind a mutex.  Callers that
must wait do so in the wakers of _channel_waker_c.pxd, with the GIL released;
an operation that finds nobody waiting touches no waker lock.  See
_channel_c.pxd for the layout and the locking rule.
"""
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyObject
from cpython.list cimport PyList_New
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.sequence cimport PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

from fastconc._channel_array_c cimport (
    ARRAY_MAX_CAP,
    ArrayCore,
    ArraySlot,
    array_buffer,
    array_close,
    array_init,
    array_is_closed,
    array_is_empty,
    array_is_full,
    array_len,
    array_recv,
    array_send,
)
from fastconc._channel_ring_c cimport (
    ObjRing,
    ring_detach,
    ring_init,
    ring_pop_many,
    ring_push_many,
    ring_release,
)
from fastconc._channel_waker_c cimport (
    SEL_ABORTED,
    WOKE_SELECTED,
    WOKE_SIGNALS,
    SyncWaker,
    WaitEntry,
    Waiter,
    waiter_destroy,
    waiter_init,
    waiter_try_select,
    waiter_wait,
    waker_destroy,
    waker_disconnect,
    waker_init,
    waker_notify_n,
    waker_register,
    waker_unregister,
)
from fastconc._support.atomic cimport fc_size_load_acquire
from fastconc._support.deadline cimport FOREVER, NO_WAIT, deadline_ns
from fastconc._support.gc cimport (
    gc_clear_t,
    gc_traverse_t,
    gc_visit_t,
    set_gc_hooks,
    visit_heap_type,
)
from fastconc._support.sync cimport (
    FC_BACKOFF_STEPS,
    fc_backoff_snooze,
    fc_monotonic_ns,
    fc_mutex_destroy,
    fc_mutex_init,
    fc_mutex_lock,
    fc_mutex_unlock,
)

import operator
import sys
import types

from fastconc.errors import ChannelClosed, Empty, Full, Timeout


cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
    # Takes a raw pointer so Cython adds no refcounting: the list steals it.
    void list_steal_item "PyList_SET_ITEM" (object lst, Py_ssize_t i, PyObject *o)


cdef enum:
    # recv_many() copies through a C buffer of at most this many pointers.
    MAX_BATCH = 65536

# Spin before parking (fc_park) only when threads run Python in parallel.
# Under a GIL the thread that will wake us needs the GIL we just gave up, and
# we need it back after waking, so spinning only takes a core from the GIL
# holder: with more busy threads than cores (a 3-stage pipeline on 2 cores)
# that cost a compiled pipeline 3x its throughput.
cdef int SPIN_FIRST_WAIT = 0 if getattr(sys, "_is_gil_enabled", lambda: True)() else 1

cdef Py_ssize_t _positive_index(object value, str name) except -1:
    """An int >= 1 (bool refused: Channel(True) is surely a mistake)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value if value < PY_SSIZE_T_MAX else PY_SSIZE_T_MAX


cdef inline Py_ssize_t _min(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


cdef inline Py_ssize_t _room(_BlockingRing q) noexcept nogil:
    # Mutex held.  Never negative: a Queue's lowered maxsize leaves count > bound.
    return q.bound - q.ring.count if q.bound > q.ring.count else 0


# ---------------------------------------------------------------- shared core

cdef class _BlockingRing:
    """Mutex + ring shared by Queue and a big Channel; the blocking loop
    (_send/_recv, on the wakers) shared by every Channel and Queue."""

    def __cinit__(self, *args, **kwargs):
        if (fc_mutex_init(&self.mutex) != 0 or waker_init(&self.senders) != 0
                or waker_init(&self.receivers) != 0):
            raise MemoryError("cannot create mutex")
        self.initialised = True

    def __dealloc__(self):
        cdef ObjRing taken
        if not self.initialised:
            return
        taken = ring_detach(&self.ring)
        ring_release(&taken)
        waker_destroy(&self.senders)
        waker_destroy(&self.receivers)
        fc_mutex_destroy(&self.mutex)

    cdef int _init_ring(self, Py_ssize_t bound, object size_arg, bint counts_tasks) except -1:
        # A Channel's capacity never changes afterwards, which lets it read
        # `bound` and `_size_arg` without the mutex; Queue.maxsize changes
        # both under the mutex, so Queue reads them under it too.
        if self._size_arg is not None:
            raise RuntimeError(f"{type(self).__name__} is already initialised")
        ring_init(&self.ring, bound)
        self.bound = bound
        self.counts_tasks = counts_tasks
        self._size_arg = size_arg
        return 0

    def __reduce__(self):
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    cdef int _attempt_send(self, PyObject **items, Py_ssize_t n, Py_ssize_t *done) noexcept:
        cdef Py_ssize_t want, moved
        fc_mutex_lock(&self.mutex)
        if self.closed:
            fc_mutex_unlock(&self.mutex)
            return ST_CLOSED
        want = _min(n - done[0], _room(self))
        moved = ring_push_many(&self.ring, items + done[0], want)
        done[0] += moved
        if self.counts_tasks:
            self.unfinished += moved
        fc_mutex_unlock(&self.mutex)
        # After the unlock: the push is visible to whoever the waker selects.
        waker_notify_n(&self.receivers, moved)
        if done[0] == n:
            return ST_OK
        return ST_NOMEM if moved < want else ST_NOT_READY

    cdef int _attempt_recv(self, PyObject **out, Py_ssize_t max_n, Py_ssize_t *got) noexcept:
        cdef bint closed
        fc_mutex_lock(&self.mutex)
        if self.ring.count:
            got[0] = ring_pop_many(&self.ring, out, max_n)
            fc_mutex_unlock(&self.mutex)
            waker_notify_n(&self.senders, got[0])
            return ST_OK
        closed = self.closed
        fc_mutex_unlock(&self.mutex)
        return ST_CLOSED if closed else ST_NOT_READY

    cdef bint _ready(self, bint sending) noexcept:
        # Under the ring's mutex, after registering: a push or pop made after
        # this look sees the registration (it took the mutex after us, and
        # register's store precedes our unlock), so it notifies.
        cdef bint r
        fc_mutex_lock(&self.mutex)
        r = self.closed or (_room(self) > 0 if sending else self.ring.count > 0)
        fc_mutex_unlock(&self.mutex)
        return r

    cdef int _block(self, SyncWaker *waker, bint sending, int64_t deadline, int spin,
                    bint front) noexcept:
        """Register, re-check, park, unregister: one wait of the waker
        protocol (_channel_waker_c.pxd).  Returns a WOKE_* outcome; the
        caller retries its operation whatever it is.  `front`: re-register
        at the head (the last wait ended only to look at signals)."""
        cdef Waiter me
        cdef WaitEntry entry
        cdef int why
        waiter_init(&me)
        waker_register(waker, &entry, &me, front)
        if self._ready(sending):
            waiter_try_select(&me, SEL_ABORTED)
        with nogil:
            why = waiter_wait(&me, deadline, spin)
            waker_unregister(waker, &entry)
        waiter_destroy(&me)
        return why

    cdef int _send(self, PyObject **items, Py_ssize_t n, Py_ssize_t *done,
                   int64_t deadline) except -1:
        """Move items[done:n] (owned references) in, blocking for room.

        Items move only with the GIL held (or the thread attached), in
        _attempt_send; only the waits release it.  After every wake-up the
        operation is retried before signals and the deadline are looked at:
        a notifier that picked this waiter handed it its turn."""
        cdef int st
        cdef int spin = SPIN_FIRST_WAIT
        cdef int step = 0 if SPIN_FIRST_WAIT else FC_BACKOFF_STEPS + 1
        cdef bint check_signals = True
        cdef int why = WOKE_SELECTED
        while True:
            st = self._attempt_send(items, n, done)
            if st != ST_NOT_READY:
                return st
            if deadline == NO_WAIT:
                return ST_TIMEOUT
            if step <= FC_BACKOFF_STEPS:
                # Where threads run in parallel, the peer is likely a few
                # hundred nanoseconds away: back off and retry (attached,
                # a few microseconds at most) before registering to sleep,
                # as crossbeam-channel's send does.  Under a GIL the peer
                # needs the GIL we hold: never.
                fc_backoff_snooze(&step)
                continue
            if check_signals:
                # A signal that arrived since the interpreter last looked
                # would not interrupt the park: look before sleeping.
                PyErr_CheckSignals()
            if deadline != FOREVER and fc_monotonic_ns() >= deadline:
                return ST_TIMEOUT
            # Back at the head of the list after a look at signals only.
            why = self._block(&self.senders, True, deadline, spin, why == WOKE_SIGNALS)
            check_signals = why == WOKE_SIGNALS
            # Spinning is for short waits; this one is long (or a signal came).
            spin = 0

    cdef int _recv(self, PyObject **out, Py_ssize_t max_n, Py_ssize_t *got,
                   int64_t deadline) except -1:
        """Take 1..max_n items, blocking while there are none.

        Items are taken only here, with the GIL held (or, free-threaded, this
        thread attached): a receiver that took one while the cyclic collector
        ran between traversing this channel and deciding what is unreachable
        would hold a reference the collector never saw, and the collector
        could clear the object it is about to return."""
        cdef int st
        cdef int spin = SPIN_FIRST_WAIT
        cdef int step = 0 if SPIN_FIRST_WAIT else FC_BACKOFF_STEPS + 1
        cdef bint check_signals = True
        cdef int why = WOKE_SELECTED
        while True:
            st = self._attempt_recv(out, max_n, got)
            if st != ST_NOT_READY:
                return st
            if deadline == NO_WAIT:
                return ST_TIMEOUT
            if step <= FC_BACKOFF_STEPS:
                fc_backoff_snooze(&step)  # see _send
                continue
            if check_signals:
                PyErr_CheckSignals()  # see _send
            if deadline != FOREVER and fc_monotonic_ns() >= deadline:
                return ST_TIMEOUT
            # Back at the head of the list after a look at signals only.
            why = self._block(&self.receivers, False, deadline, spin, why == WOKE_SIGNALS)
            check_signals = why == WOKE_SIGNALS
            spin = 0

    cdef void _close(self, bint drop_items) noexcept:
        cdef ObjRing taken
        taken.count = 0
        taken.slots = NULL
        fc_mutex_lock(&self.mutex)
        self.closed = True
        if drop_items:
            self.unfinished -= _min(self.unfinished, self.ring.count)
            taken = ring_detach(&self.ring)
        fc_mutex_unlock(&self.mutex)
        waker_disconnect(&self.receivers)
        waker_disconnect(&self.senders)
        # Outside the mutex: a __del__ run here may use this object again.
        ring_release(&taken)

    cdef Py_ssize_t _count(self) noexcept:
        cdef Py_ssize_t n
        fc_mutex_lock(&self.mutex)
        n = self.ring.count
        fc_mutex_unlock(&self.mutex)
        return n

    cdef bint _is_closed(self) noexcept:
        cdef bint c
        fc_mutex_lock(&self.mutex)
        c = self.closed
        fc_mutex_unlock(&self.mutex)
        return c


# The garbage collector must see the objects held in the ring, or a cycle
# through a channel (an item that refers back to it) would never be freed.
# Cython only traverses `object` attributes, so these replace its hooks.

cdef int blocking_ring_traverse(_BlockingRing self, gc_visit_t visit, void *arg) noexcept:
    cdef Py_ssize_t i
    cdef int e = 0
    e = visit_heap_type(<PyObject *>self, visit, arg, <gc_traverse_t>blocking_ring_traverse)
    if e:
        return e
    # Blocking with the GIL held is allowed by the locking rule (_channel_c.pxd).
    fc_mutex_lock(&self.mutex)
    for i in range(self.ring.count):
        e = visit(self.ring.slots[(self.ring.head + i) & (self.ring.size - 1)], arg)
        if e:
            break
    fc_mutex_unlock(&self.mutex)
    return e


cdef int blocking_ring_clear(_BlockingRing self) noexcept:
    cdef ObjRing taken
    fc_mutex_lock(&self.mutex)
    taken = ring_detach(&self.ring)
    fc_mutex_unlock(&self.mutex)
    ring_release(&taken)
    return 0


cdef raise_status(int st, object timeout_exc, str what):
    """Turn a failed status into the exception the caller documents."""
    if st == ST_CLOSED:
        raise ChannelClosed(f"{what} is closed")
    if st == ST_TIMEOUT:
        if timeout_exc is Timeout:
            raise Timeout(f"timed out waiting on the {what}")
        raise timeout_exc(f"{what} is {'full' if timeout_exc is Full else 'empty'}")
    if st == ST_NOMEM:
        raise MemoryError(f"out of memory growing the {what}")


# ---------------------------------------------------------------- Channel

cdef class Channel(_BlockingRing):
    """Bounded multi-producer multi-consumer channel.

    ``send`` blocks while the channel holds ``capacity`` items (backpressure);
    ``recv`` blocks while it is empty.  ``close()`` stops senders at once
    (:class:`ChannelClosed`) and lets receivers drain what is left before they
    get :class:`ChannelClosed` too.
    """

    def __init__(self, capacity):
        cdef Py_ssize_t n = _positive_index(capacity, "capacity")
        self._init_ring(n, n, False)
        if n <= ARRAY_MAX_CAP:
            array_init(&self.core, <size_t>n)
            self.lockfree = True

    def __dealloc__(self):
        # Runs before _BlockingRing's: release what the array still holds.
        # Refcount zero means no call is blocked in or running on it.
        cdef ArraySlot *buf
        cdef PyObject *item
        cdef Py_ssize_t got
        if not self.lockfree:
            return
        buf = array_buffer(&self.core)
        if buf == NULL:
            return
        while array_recv(&self.core, &item, 1, &got) == ST_OK:
            Py_DECREF(<object>item)
        free(buf)

    # The lock-free core for capacity <= ARRAY_MAX_CAP; the ring otherwise.

    cdef int _attempt_send(self, PyObject **items, Py_ssize_t n, Py_ssize_t *done) noexcept:
        cdef Py_ssize_t before = done[0]
        cdef int st
        if not self.lockfree:
            return _BlockingRing._attempt_send(self, items, n, done)
        st = array_send(&self.core, items, n, done)
        waker_notify_n(&self.receivers, done[0] - before)
        return st

    cdef int _attempt_recv(self, PyObject **out, Py_ssize_t max_n, Py_ssize_t *got) noexcept:
        cdef int st
        if not self.lockfree:
            return _BlockingRing._attempt_recv(self, out, max_n, got)
        st = array_recv(&self.core, out, max_n, got)
        waker_notify_n(&self.senders, got[0])
        return st

    cdef bint _ready(self, bint sending) noexcept:
        if not self.lockfree:
            return _BlockingRing._ready(self, sending)
        if array_is_closed(&self.core):
            return True
        return not array_is_full(&self.core) if sending else not array_is_empty(&self.core)

    cdef void _close(self, bint drop_items) noexcept:
        if not self.lockfree:
            _BlockingRing._close(self, drop_items)
        elif array_close(&self.core):
            waker_disconnect(&self.receivers)
            waker_disconnect(&self.senders)

    cdef Py_ssize_t _count(self) noexcept:
        if not self.lockfree:
            return _BlockingRing._count(self)
        return <Py_ssize_t>array_len(&self.core)

    cdef bint _is_closed(self) noexcept:
        if not self.lockfree:
            return _BlockingRing._is_closed(self)
        return array_is_closed(&self.core)

    @property
    def capacity(self):
        """The most items the channel holds at once."""
        return self._size_arg

    @property
    def closed(self):
        """True once close() has been called."""
        return self._is_closed()

    def __len__(self):
        return self._count()

    def __repr__(self):
        return (f"<fastconc.Channel len={self._count()} capacity={self.bound}"
                f"{' closed' if self._is_closed() else ''}>")

    def send(self, item, timeout=None):
        """Put item in, blocking while the channel is full.

        Raises Timeout when ``timeout`` seconds pass first, ChannelClosed when
        the channel is (or gets) closed.
        """
        cdef int64_t deadline = deadline_ns(timeout)
        cdef PyObject *p = <PyObject *>item
        cdef Py_ssize_t done = 0
        cdef int st
        Py_INCREF(item)
        try:
            st = self._send(&p, 1, &done, deadline)
        finally:
            if not done:
                Py_DECREF(item)
        raise_status(st, Timeout, "channel")

    def try_send(self, item):
        """Put item in if there is room now; return False when full.

        Raises ChannelClosed when the channel is closed.
        """
        cdef PyObject *p = <PyObject *>item
        cdef Py_ssize_t done = 0
        cdef int st
        Py_INCREF(item)
        try:
            st = self._send(&p, 1, &done, NO_WAIT)
        finally:
            if not done:
                Py_DECREF(item)
        if st == ST_TIMEOUT:
            return False
        raise_status(st, Timeout, "channel")
        return True

    def send_many(self, items, timeout=None):
        """Send every item of ``items`` in order, blocking for room as needed.

        Returns how many were sent.  That is fewer than ``len(items)`` only when
        the timeout passed or the channel was closed part-way; when nothing at
        all could be sent, Timeout or ChannelClosed is raised instead.  A
        non-sequence iterable is read to the end before anything is sent.
        """
        cdef int64_t deadline = deadline_ns(timeout)
        cdef tuple seq = items if type(items) is tuple else tuple(items)
        cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(seq)
        cdef PyObject **ptrs = PySequence_Fast_ITEMS(seq)
        cdef Py_ssize_t i, done = 0
        cdef int st = ST_OK
        if n == 0:
            return 0
        # The ring owns one reference per item it holds; take them up front
        # because the slow path moves pointers without the GIL.
        for i in range(n):
            Py_INCREF(<object>ptrs[i])
        try:
            st = self._send(ptrs, n, &done, deadline)
        finally:
            for i in range(done, n):
                Py_DECREF(<object>ptrs[i])
        if done == 0:
            raise_status(st, Timeout, "channel")
        if st == ST_NOMEM:
            raise MemoryError("out of memory growing the channel")
        return done

    def recv(self, timeout=None):
        """Take the oldest item, blocking while the channel is empty.

        Raises Timeout when ``timeout`` seconds pass first, ChannelClosed once
        the channel is closed and drained.
        """
        cdef int64_t deadline = deadline_ns(timeout)
        cdef PyObject *p = NULL
        cdef Py_ssize_t got = 0
        cdef int st = self._recv(&p, 1, &got, deadline)
        if got:
            item = <object>p
            Py_DECREF(item)
            return item
        raise_status(st, Timeout, "channel")

    def try_recv(self):
        """Take the oldest item if there is one; raise Empty if not.

        Raises ChannelClosed once the channel is closed and drained.
        """
        cdef PyObject *p = NULL
        cdef Py_ssize_t got = 0
        cdef int st = self._recv(&p, 1, &got, NO_WAIT)
        if got:
            item = <object>p
            Py_DECREF(item)
            return item
        if st == ST_TIMEOUT:
            raise Empty("channel is empty")
        raise_status(st, Timeout, "channel")

    def recv_many(self, max_items, timeout=None):
        """Wait for at least one item, then take up to ``max_items`` at once.

        Returns a non-empty list.  Raises Timeout if nothing arrived in time,
        ChannelClosed once the channel is closed and drained.
        """
        cdef Py_ssize_t want = _positive_index(max_items, "max_items")
        cdef int64_t deadline = deadline_ns(timeout)
        cdef PyObject *one = NULL
        cdef PyObject **buf = &one
        cdef Py_ssize_t i, got = 0, got_taken = 0
        cdef int st
        cdef list result
        want = _min(_min(want, self.bound), MAX_BATCH)
        if want > 1:
            buf = <PyObject **>malloc(<size_t>want * sizeof(PyObject *))
            if buf == NULL:
                raise MemoryError(f"out of memory taking {want} items")
        try:
            st = self._recv(buf, want, &got, deadline)
            if got:
                result = PyList_New(got)  # on MemoryError the items are released below
                for i in range(got):
                    # The list steals the reference the ring held.
                    list_steal_item(result, i, buf[i])
                got_taken = got
        finally:
            # Items taken from the ring but not handed to a list (allocation
            # failed): release rather than leak them.
            for i in range(got_taken, got):
                Py_DECREF(<object>buf[i])
            if buf != &one:
                free(buf)
        if got:
            return result
        raise_status(st, Timeout, "channel")

    def close(self):
        """Close the channel: wake every waiter; senders get ChannelClosed,
        receivers drain what is left first.  Closing twice is harmless."""
        self._close(False)

    def __iter__(self):
        """Yield received items until the channel is closed and drained."""
        while True:
            try:
                item = self.recv()
            except ChannelClosed:
                return
            yield item

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return None

    __class_getitem__ = classmethod(types.GenericAlias)


cdef int channel_traverse(Channel self, gc_visit_t visit, void *arg) noexcept:
    """The array's items, from head to tail (array.rs Drop's walk).  Items
    move only attached, so none is half-moved while the collector runs."""
    cdef ArraySlot *buf
    cdef ArrayCore *c = &self.core
    cdef size_t p, t, i
    cdef int e
    e = visit_heap_type(<PyObject *>self, visit, arg, <gc_traverse_t>channel_traverse)
    if e:
        return e
    if not self.lockfree:
        # Its own visit_heap_type finds channel_traverse installed: no
        # second visit of the type.
        return blocking_ring_traverse(self, visit, arg)
    buf = array_buffer(c)
    if buf == NULL:
        return 0
    p = fc_size_load_acquire(&c.head.v)
    t = fc_size_load_acquire(&c.tail.v) & ~c.mark_bit
    while p != t:
        i = p & (c.mark_bit - 1)
        # Acquire, as a receiver's: the item pointer a full stamp publishes.
        if fc_size_load_acquire(&buf[i].stamp) == p + 1:
            e = visit(buf[i].item, arg)
            if e:
                return e
        p = p + 1 if i + 1 < c.cap else (p & ~(c.one_lap - 1)) + c.one_lap
    return 0


cdef int channel_clear(Channel self) noexcept:
    """Drop the items of an unreachable channel.  At most the count held now:
    a __del__ that sends back into it cannot keep the drain going."""
    cdef PyObject *batch[64]
    cdef Py_ssize_t left, got, i
    if not self.lockfree:
        return blocking_ring_clear(self)
    left = <Py_ssize_t>array_len(&self.core)
    while left > 0 and array_recv(&self.core, batch, _min(left, 64), &got) == ST_OK:
        left -= got
        for i in range(got):
            Py_DECREF(<object>batch[i])
    return 0


set_gc_hooks(_BlockingRing, <gc_traverse_t>blocking_ring_traverse, <gc_clear_t>blocking_ring_clear)
set_gc_hooks(Channel, <gc_traverse_t>channel_traverse, <gc_clear_t>channel_clear)
