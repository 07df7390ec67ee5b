# cython: language_level=3, freethreading_compatible=True, autotestdict=False, auto_pickle=False
"""Compiled backend of Queue: queue.Queue's API on the compiled Channel's core
(_channel_c._BlockingRing: one ring behind a mutex, waits in C without the
GIL), plus the task counting of task_done()/join() and a maxsize that can
change at run time.  Layout and locking rule: _channel_c.pxd.
"""
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport int64_t

from fastconc._channel_c cimport (
    ST_TIMEOUT,
    _BlockingRing,
    blocking_ring_clear,
    blocking_ring_traverse,
    raise_status,
)
from fastconc._channel_ring_c cimport ObjRing, ring_detach, ring_max_slots, ring_release
from fastconc._channel_waker_c cimport waker_disconnect, waker_notify_n
from fastconc._support.deadline cimport FOREVER, NO_WAIT, deadline_ns
from fastconc._support.gc cimport gc_clear_t, gc_traverse_t, set_gc_hooks
from fastconc._support.sync cimport (
    FC_WAIT_CHECK_SIGNALS,
    fc_cond_broadcast,
    fc_cond_destroy,
    fc_cond_init,
    fc_cond_wait,
    fc_mutex_lock,
    fc_mutex_unlock,
)

import types

from fastconc._support.args import maxsize_arg
from fastconc.errors import Empty, Full


cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX


cdef inline Py_ssize_t _maxsize_bound(object size) except -1:
    return size if 0 < size < PY_SSIZE_T_MAX else PY_SSIZE_T_MAX


cdef int64_t _put_deadline(object block, object timeout) except -2:
    if not block:
        return NO_WAIT
    return FOREVER if timeout is None else deadline_ns(timeout)


cdef bint _bounded(Queue q) noexcept:
    cdef bint b
    fc_mutex_lock(&q.mutex)
    b = q.bound != PY_SSIZE_T_MAX
    fc_mutex_unlock(&q.mutex)
    return b


cdef class Queue(_BlockingRing):
    """Drop-in replacement for :class:`queue.Queue` (including Python 3.13's
    ``shutdown``, on every Python version), built on the compiled channel.

    If maxsize is <= 0, the queue size is infinite.
    """

    def __cinit__(self, *args, **kwargs):
        fc_cond_init(&self.all_tasks_done)

    def __dealloc__(self):
        if self.initialised:
            fc_cond_destroy(&self.all_tasks_done)

    def __init__(self, maxsize=0):
        size = maxsize_arg(maxsize)
        self._init_ring(_maxsize_bound(size), size, True)

    @property
    def maxsize(self):
        """The bound (<= 0: unbounded); assignable, as in queue.Queue."""
        fc_mutex_lock(&self.mutex)
        size = self._size_arg
        fc_mutex_unlock(&self.mutex)
        return size

    @maxsize.setter
    def maxsize(self, value):
        """Change the bound at run time; <= 0 means unbounded.

        Raising it lets blocked put() calls proceed at once.  Lowering it
        below qsize() drops nothing: put() waits until the queue drains
        below the new bound.
        """
        cdef Py_ssize_t bound
        cdef bint wake
        size = maxsize_arg(value)
        bound = _maxsize_bound(size)
        fc_mutex_lock(&self.mutex)
        # `_old` outlives the unlock: the last reference to the previous value
        # must not go (and run an int subclass's __del__) under the mutex.
        _old = self._size_arg
        self._size_arg = size
        wake = bound > self.bound
        self.bound = bound
        self.ring.max_slots = ring_max_slots(&self.ring, bound)
        fc_mutex_unlock(&self.mutex)
        if wake:
            # Every blocked put() re-checks; those that still find no room
            # register again.
            waker_notify_n(&self.senders, PY_SSIZE_T_MAX)

    @maxsize.deleter
    def maxsize(self):
        # Cython's default here is NotImplementedError; a property says this.
        raise AttributeError("property 'maxsize' of 'Queue' object has no deleter")

    @property
    def is_shutdown(self):
        """True once shutdown() has been called."""
        return self._is_closed()

    @property
    def unfinished_tasks(self):
        """Items put and not yet marked done with task_done()."""
        cdef Py_ssize_t n
        fc_mutex_lock(&self.mutex)
        n = self.unfinished
        fc_mutex_unlock(&self.mutex)
        return n

    def __repr__(self):
        return f"<fastconc.Queue qsize={self._count()} maxsize={self.maxsize!r}>"

    def task_done(self):
        """Indicate that a formerly enqueued task is complete.

        Raises a ValueError if called more times than there were items placed
        in the queue.
        """
        cdef bint wake = False
        fc_mutex_lock(&self.mutex)
        if self.unfinished <= 0:
            fc_mutex_unlock(&self.mutex)
            raise ValueError("task_done() called too many times")
        self.unfinished -= 1
        if self.unfinished == 0 and self.join_waiters:
            wake = True
        fc_mutex_unlock(&self.mutex)
        if wake:
            fc_cond_broadcast(&self.all_tasks_done)

    def join(self):
        """Block until every item put has been marked done with task_done()."""
        cdef bint signals = False
        # A signal that arrived since the interpreter last looked would not
        # interrupt the wait below: look before sleeping.
        PyErr_CheckSignals()
        while True:
            signals = False
            with nogil:
                fc_mutex_lock(&self.mutex)
                while self.unfinished > 0:
                    self.join_waiters += 1
                    signals = (fc_cond_wait(&self.all_tasks_done, &self.mutex, -1, 0)
                               == FC_WAIT_CHECK_SIGNALS)
                    self.join_waiters -= 1
                    if signals:
                        break
                fc_mutex_unlock(&self.mutex)
            if not signals:
                return
            PyErr_CheckSignals()

    def qsize(self):
        """Return the approximate size of the queue."""
        return self._count()

    def empty(self):
        """Return True if the queue is empty (racy, as in queue.Queue)."""
        return self._count() == 0

    def full(self):
        """Return True if the queue is full (racy, as in queue.Queue)."""
        cdef bint full
        fc_mutex_lock(&self.mutex)
        # Unbounded is PY_SSIZE_T_MAX, a count no ring reaches.
        full = self.ring.count >= self.bound
        fc_mutex_unlock(&self.mutex)
        return full

    def put(self, item, block=True, timeout=None):
        """Put an item into the queue.

        With ``block`` true and ``timeout`` None, wait for a free slot; with a
        non-negative timeout, raise Full after that many seconds; with
        ``block`` false, raise Full at once if there is no room.  Raises
        ChannelClosed (a queue.ShutDown) once the queue is shut down.
        """
        cdef int64_t deadline
        cdef PyObject *p = <PyObject *>item
        cdef Py_ssize_t done = 0
        cdef int st
        cdef bint unread = False
        if timeout is None and (block is True or block is False):
            # The usual call: nothing that must go unread, no bound to look at.
            deadline = FOREVER if block is True else NO_WAIT
        elif _bounded(self):
            deadline = _put_deadline(block, timeout)
        else:
            # queue.Queue reads neither block nor timeout when unbounded;
            # NO_WAIT cannot fail there.
            deadline = NO_WAIT
            unread = True
        Py_INCREF(item)
        try:
            st = self._send(&p, 1, &done, deadline)
            if st == ST_TIMEOUT and unread:
                # maxsize was lowered (and reached) since it was read: now
                # block and timeout count.
                deadline = _put_deadline(block, timeout)
                if deadline != NO_WAIT:
                    st = self._send(&p, 1, &done, deadline)
        finally:
            if not done:
                Py_DECREF(item)
        raise_status(st, Full, "queue")

    def get(self, block=True, timeout=None):
        """Remove and return an item from the queue.

        With ``block`` true and ``timeout`` None, wait for an item; with a
        non-negative timeout, raise Empty after that many seconds; with
        ``block`` false, raise Empty at once if there is none.  Raises
        ChannelClosed (a queue.ShutDown) once the queue is shut down and empty.
        """
        cdef int64_t deadline = FOREVER
        cdef PyObject *p = NULL
        cdef Py_ssize_t got = 0
        cdef int st
        if not block:
            deadline = NO_WAIT
        elif timeout is not None:
            deadline = deadline_ns(timeout)
        st = self._recv(&p, 1, &got, deadline)
        if got:
            item = <object>p
            Py_DECREF(item)
            return item
        raise_status(st, Empty, "queue")

    def put_nowait(self, item):
        """Put an item only if a slot is free right now, else raise Full."""
        return self.put(item, False)

    def get_nowait(self):
        """Get an item only if one is there right now, else raise Empty."""
        return self.get(False)

    def shutdown(self, immediate=False):
        """Shut down the queue: put() raises ChannelClosed (queue.ShutDown)
        from now on and get() once the queue is empty.  Blocked callers wake.

        With ``immediate``, the remaining items are dropped and marked done,
        so get() raises at once and join() returns.
        """
        cdef bint wake_joiners
        cdef ObjRing taken
        if not immediate:
            self._close(False)
            return
        # _close(True) inlined, so that join() callers are woken before the
        # dropped items are released: their __del__ may take any time.
        fc_mutex_lock(&self.mutex)
        self.closed = True
        if self.unfinished > self.ring.count:
            self.unfinished -= self.ring.count
        else:
            self.unfinished = 0
        taken = ring_detach(&self.ring)
        wake_joiners = self.unfinished == 0 and self.join_waiters
        fc_mutex_unlock(&self.mutex)
        waker_disconnect(&self.receivers)
        waker_disconnect(&self.senders)
        if wake_joiners:
            fc_cond_broadcast(&self.all_tasks_done)
        # Outside the mutex: a __del__ run here may use this queue again.
        ring_release(&taken)

    __class_getitem__ = classmethod(types.GenericAlias)


set_gc_hooks(Queue, <gc_traverse_t>blocking_ring_traverse,
             <gc_clear_t>blocking_ring_clear)
