# cython: language_level=3, freethreading_compatible=True, autotestdict=False
"""Compiled backend of select(): one operation out of several channel
operations, crossbeam-channel's select.rs run_select on the wakers of
_channel_waker_c.pxd.

Each round tries every operation once, in an order shuffled per call, and
completes the first that can proceed.  If none can, one Waiter registers on
the waker of every operation (a receive waits on its channel's receivers, a
send on its senders), re-checking each channel as it goes; the first
notifier (or close) to CAS the Waiter's selection word wakes it, and the
others see the word taken and wake someone else.  Woken, the select
unregisters everywhere and runs the next round: the wake-up reserved
nothing, so nothing is lost and nothing is done twice.
"""
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport int64_t, uint32_t, uintptr_t
from libc.stdlib cimport free, malloc

from fastconc._channel_array_c cimport array_looks_empty, array_looks_full
from fastconc._channel_c cimport ST_CLOSED, ST_NOMEM, ST_OK, Channel
from fastconc._channel_waker_c cimport (
    SEL_ABORTED,
    SEL_DISCONNECTED,
    SEL_WAITING,
    WOKE_SELECTED,
    WOKE_SIGNALS,
    SyncWaker,
    WaitEntry,
    Waiter,
    waiter_destroy,
    waiter_init,
    waiter_selected,
    waiter_try_select,
    waiter_wait,
    waker_notify_n,
    waker_register,
    waker_unregister,
)
from fastconc._support.deadline cimport FOREVER, NO_WAIT, deadline_ns
from fastconc._support.sync cimport fc_monotonic_ns, fc_random_below

import sys

from fastconc.errors import ChannelClosed, Timeout

__all__ = ["select"]

# As the Channel's (_channel_c.pyx): spin before parking only when threads
# run Python in parallel.
cdef int SPIN_FIRST_WAIT = 0 if getattr(sys, "_is_gil_enabled", lambda: True)() else 1


cdef enum:
    # Operations whose order and waker entries live on the C stack; more
    # are malloc'd before anything registers.
    STACK_OPS = 8


cdef inline SyncWaker *_waker_of(Channel ch, bint sending) noexcept:
    return &ch.senders if sending else &ch.receivers


cdef inline Channel _channel_of(tuple recvs, tuple sends, Py_ssize_t i, Py_ssize_t n_recv):
    """Operation i's channel (checked to be a Channel before any is tried)."""
    if i < n_recv:
        return <Channel>recvs[i]
    return <Channel>(<tuple>sends[i - n_recv])[0]


cdef inline int _attempt(Channel ch, bint sending, object item, PyObject **out) except -1:
    """One try of one operation (GIL held): ST_OK, ST_NOT_READY or ST_CLOSED."""
    cdef PyObject *p
    cdef Py_ssize_t n = 0
    cdef int st
    if sending:
        p = <PyObject *>item
        # The channel owns one reference per item it holds.
        Py_INCREF(item)
        st = ch._attempt_send(&p, 1, &n)
        if not n:
            Py_DECREF(item)
        if st == ST_NOMEM:
            raise MemoryError("out of memory allocating the channel")
        return st
    return ch._attempt_recv(out, 1, &n)


cdef object _run(tuple recvs, tuple sends, Py_ssize_t i, Py_ssize_t n_recv):
    """Try operation i: (channel, value) when done, None when not ready."""
    cdef PyObject *out = NULL
    cdef bint sending = i >= n_recv
    cdef Channel ch = _channel_of(recvs, sends, i, n_recv)
    cdef int st
    if ch.lockfree and (array_looks_full(&ch.core) if sending else array_looks_empty(&ch.core)):
        return None
    st = _attempt(ch, sending, (<tuple>sends[i - n_recv])[1] if sending else None, &out)
    if st == ST_OK:
        if sending:
            return (ch, None)
        value = <object>out
        Py_DECREF(value)  # the channel's reference, now ours
        return (ch, value)
    if st == ST_CLOSED:
        raise ChannelClosed(f"{ch!r} is closed")
    return None


def select(recv=(), send=(), *, timeout=None):
    """Complete exactly one of several channel operations.

    ``recv`` is an iterable of channels to receive from; ``send`` an iterable
    of ``(channel, item)`` pairs to send.  Returns ``(channel, value)``: the
    channel whose operation completed, with the item received, or None for
    a send.  Ready operations are chosen at random, so none starves.
    ``timeout=0`` never blocks; when ``timeout`` seconds pass first, raises
    Timeout.  A closed channel (drained, for a receive) is ready: its
    operation raises ChannelClosed naming it.
    """
    cdef tuple recvs = recv if type(recv) is tuple else tuple(recv)
    cdef tuple sends = send if type(send) is tuple else tuple(send)
    cdef Py_ssize_t n_recv = len(recvs)
    cdef Py_ssize_t n = n_recv + len(sends)
    cdef int64_t deadline = deadline_ns(timeout)
    cdef Py_ssize_t k, j, i, registered = 0
    cdef uint32_t *order
    cdef uint32_t order_stack[STACK_OPS]
    cdef WaitEntry *entries
    cdef WaitEntry entries_stack[STACK_OPS]
    cdef Waiter me
    cdef Channel ch
    cdef int why = WOKE_SELECTED
    cdef Py_ssize_t accepted = -1
    cdef uintptr_t selected
    cdef int spin = SPIN_FIRST_WAIT
    cdef bint check_signals = True
    cdef bint sending
    if n == 0:
        raise ValueError("select() needs at least one operation")
    for ch_obj in recvs:
        if not isinstance(ch_obj, Channel):
            raise TypeError(f"select() receives from Channels, not {type(ch_obj).__name__}")
    for pair in sends:
        if not isinstance(pair, tuple) or len(<tuple>pair) != 2:
            raise TypeError("select() sends take (channel, item) pairs")
        if not isinstance((<tuple>pair)[0], Channel):
            raise TypeError(
                f"select() sends to Channels, not {type((<tuple>pair)[0]).__name__}")
    order = order_stack
    entries = entries_stack
    if n > STACK_OPS:
        order = <uint32_t *>malloc(<size_t>n * sizeof(uint32_t))
        entries = <WaitEntry *>malloc(<size_t>n * sizeof(WaitEntry))
        if order == NULL or entries == NULL:
            free(order)
            free(entries)
            raise MemoryError(f"out of memory selecting over {n} operations")
    try:
        # Fisher-Yates with a per-thread xorshift: uniform, unlike a random
        # rotation, which favours an operation after a run of unready ones.
        for k in range(n):
            j = fc_random_below(<uint32_t>(k + 1))
            order[k] = order[j]
            order[j] = <uint32_t>k
        while True:
            if accepted >= 0:
                # The waker that picked this select did so for this
                # operation: try it first (select.rs accept), or its item
                # (its room) could be left for a waiter that sleeps on.
                i = order[accepted]
                accepted = -1
                try:
                    result = _run(recvs, sends, i, n_recv)
                except BaseException:
                    waker_notify_n(_waker_of(_channel_of(recvs, sends, i, n_recv), i >= n_recv), 1)
                    raise
                if result is not None:
                    return result
            for k in range(n):
                result = _run(recvs, sends, order[k], n_recv)
                if result is not None:
                    return result
            if deadline == NO_WAIT:
                raise Timeout("timed out waiting in select()")
            if check_signals:
                # See _BlockingRing._send: look before sleeping.
                PyErr_CheckSignals()
            if deadline != FOREVER and fc_monotonic_ns() >= deadline:
                raise Timeout("timed out waiting in select()")
            # One Waiter on every operation's waker (select.rs run_select).
            # Nothing here runs Python code: registered, a nested call on
            # this thread would be woken in our place.
            waiter_init(&me)
            registered = 0
            for k in range(n):
                i = order[k]
                sending = i >= n_recv
                ch = _channel_of(recvs, sends, i, n_recv)
                waker_register(_waker_of(ch, sending), &entries[k], &me, why == WOKE_SIGNALS)
                registered += 1
                if ch._ready(sending):
                    # Ready since the round above: retry at once.
                    waiter_try_select(&me, SEL_ABORTED)
                    break
                if waiter_selected(&me) != SEL_WAITING:
                    break
            with nogil:
                why = waiter_wait(&me, deadline, spin)
            selected = waiter_selected(&me)
            if selected > SEL_DISCONNECTED:
                accepted = <WaitEntry *>selected - entries
            # With the GIL: no waker mutex holder ever waits for it.
            for k in range(registered):
                i = order[k]
                waker_unregister(_waker_of(_channel_of(recvs, sends, i, n_recv), i >= n_recv),
                                 &entries[k])
            waiter_destroy(&me)
            registered = 0
            spin = 0
            check_signals = why == WOKE_SIGNALS
    finally:
        if n > STACK_OPS:
            free(order)
            free(entries)
