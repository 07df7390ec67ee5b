# The blocking layer of the compiled Channel and Queue: where a sender or a
# receiver that cannot proceed waits, and how a completed operation wakes it.
#
# crossbeam-channel's waker.rs (SyncWaker, Waker::try_select / disconnect)
# and context.rs (Context: a selection word plus a parker), in C, inline:
#
#   Waiter     one blocking call (a send, a recv or a select): its selection
#              word goes from SEL_WAITING to one outcome by a single CAS, and
#              the first CAS wins, so a select registered on several wakers is
#              woken once; and its parker, the word the thread sleeps on.
#   WaitEntry  the Waiter's place in one SyncWaker's list (a select has one
#              per operation).  Intrusive and in the caller's C frame: nothing
#              is allocated with a mutex held.
#   SyncWaker  a FIFO of entries behind a mutex, plus `is_empty`, read before
#              the mutex: an operation that finds nobody waiting takes no lock.
#
# The protocol (docs/ARCHITECTURE.md, "Waking blocked callers"):
#   waiter:   reset; register (stores is_empty = 0, SeqCst); re-check the
#             channel (SeqCst loads, or under the ring's mutex), and if it is
#             ready try_select(SEL_ABORTED); park until the selection word
#             leaves SEL_WAITING; unregister ALWAYS, then retry the operation
#             before looking at signals or the deadline.
#   notifier: complete the operation (SeqCst claim, or under the ring's mutex);
#             notify: is_empty (SeqCst) says whether to lock; under the lock,
#             select the first waiter whose CAS succeeds, unlink it, unpark it.
# Every published item is seen by a waiter's re-check, or its notifier sees
# is_empty == 0 and wakes a waiter registered before it: no lost wake-up.
#
# Rules: the waker's mutex is held only inside these functions; under it
# nothing takes the GIL, calls Python or allocates.  A notifier CASes and
# unparks under the mutex, and a woken waiter takes the mutex (unregister)
# before its frame goes: no notifier ever touches a dead Waiter (crossbeam
# gets this from Arc<Inner>).  Lock order: waker mutex, then a parker's own
# mutex (non-Linux parker); a ring's mutex may be held while registering
# (ring mutex, then waker mutex), never the reverse.
from libc.stdint cimport int64_t, uintptr_t

from fastconc._support.atomic cimport (
    fc_atomic_u32,
    fc_atomic_uptr,
    fc_u32_init,
    fc_u32_load_seq_cst,
    fc_u32_store_seq_cst,
    fc_uptr_cas_strong_acq_rel,
    fc_uptr_init,
    fc_uptr_load_acquire,
)
from fastconc._support.deadline cimport FOREVER
from fastconc._support.sync cimport (
    FC_WAIT_CHECK_SIGNALS,
    fc_monotonic_ns,
    fc_mutex,
    fc_mutex_destroy,
    fc_mutex_init,
    fc_mutex_lock,
    fc_mutex_unlock,
    fc_park,
    fc_parker,
    fc_parker_destroy,
    fc_parker_init,
    fc_process_id,
    fc_unpark,
)


# A Waiter's selection word: one of these, or the address of the WaitEntry
# whose waker selected it (always > 2, as select.rs Operation::hook asserts).
cdef enum:
    SEL_WAITING = 0
    SEL_ABORTED = 1
    SEL_DISCONNECTED = 2

# How waiter_wait ended.
cdef enum:
    WOKE_SELECTED = 0     # a notifier (or close) selected the waiter
    WOKE_TIMEOUT          # the deadline passed; the waiter aborted itself
    WOKE_SIGNALS          # a signal may be due; the waiter aborted itself


cdef struct Waiter:
    fc_atomic_uptr select
    fc_parker parker


cdef struct WaitEntry:
    WaitEntry *prev
    WaitEntry *next
    Waiter *waiter
    bint linked           # changed only under the waker's mutex


cdef struct SyncWaker:
    fc_mutex mutex
    WaitEntry *first
    WaitEntry *last
    fc_atomic_u32 is_empty
    long pid              # the process the list was built in (see _forget_if_forked)


cdef inline int waker_init(SyncWaker *w) noexcept nogil:
    w.first = NULL
    w.last = NULL
    fc_u32_init(&w.is_empty, 1)
    w.pid = fc_process_id()
    return fc_mutex_init(&w.mutex)


cdef inline void _forget_if_forked(SyncWaker *w) noexcept nogil:
    """Mutex held.  In a child of fork(), the listed waiters are the parent's
    threads, which did not come along (the forking thread was running, so it
    had none listed): drop them all, without reading them, since glibc may
    already have given their stacks to the child's new threads."""
    cdef long pid = fc_process_id()
    if w.pid != pid:
        w.first = NULL
        w.last = NULL
        fc_u32_store_seq_cst(&w.is_empty, 1)
        w.pid = pid


cdef inline void waker_destroy(SyncWaker *w) noexcept nogil:
    # Every blocked call holds a reference to its channel: none is listed.
    fc_mutex_destroy(&w.mutex)


cdef inline void waiter_init(Waiter *me) noexcept nogil:
    fc_uptr_init(&me.select, SEL_WAITING)
    fc_parker_init(&me.parker)


cdef inline void waiter_destroy(Waiter *me) noexcept nogil:
    fc_parker_destroy(&me.parker)


cdef inline bint waiter_try_select(Waiter *me, uintptr_t outcome) noexcept nogil:
    """SEL_WAITING -> outcome; False when another outcome won first."""
    cdef uintptr_t expected = SEL_WAITING
    # AcqRel (context.rs try_select): the release publishes what the selector
    # did before (the item it stored, the close) to the woken waiter's
    # acquire load; the acquire on failure reads the winner's outcome.
    return fc_uptr_cas_strong_acq_rel(&me.select, &expected, outcome)


cdef inline uintptr_t waiter_selected(Waiter *me) noexcept nogil:
    # Acquire: pairs with the winning try_select's release.
    return fc_uptr_load_acquire(&me.select)


cdef inline void _unlink(SyncWaker *w, WaitEntry *e) noexcept nogil:
    if e.prev != NULL:
        e.prev.next = e.next
    else:
        w.first = e.next
    if e.next != NULL:
        e.next.prev = e.prev
    else:
        w.last = e.prev
    e.prev = NULL
    e.next = NULL
    e.linked = False


cdef inline void waker_register(SyncWaker *w, WaitEntry *e, Waiter *me, bint front) noexcept nogil:
    """List e (for me) last, or first when `front`: a waiter that left only to
    look at signals (the main thread does every FC_SIGNAL_SLICE_NS) keeps its
    place, or threads registering meanwhile would be served before it."""
    e.waiter = me
    fc_mutex_lock(&w.mutex)
    _forget_if_forked(w)
    if front:
        e.prev = NULL
        e.next = w.first
        if w.first != NULL:
            w.first.prev = e
        else:
            w.last = e
        w.first = e
    else:
        e.next = NULL
        e.prev = w.last
        if w.last != NULL:
            w.last.next = e
        else:
            w.first = e
        w.last = e
    e.linked = True
    # SeqCst (waker.rs SyncWaker::register): the store must precede, in the
    # single total order, the caller's SeqCst re-check of the channel, so a
    # notifier whose claim the re-check missed reads 0 here and locks.
    fc_u32_store_seq_cst(&w.is_empty, 0)
    fc_mutex_unlock(&w.mutex)


cdef inline void waker_unregister(SyncWaker *w, WaitEntry *e) noexcept nogil:
    """Always called after a wait, selected or not: taking the mutex is the
    hand-shake that no notifier still touches the Waiter (see the top)."""
    fc_mutex_lock(&w.mutex)
    # (A list forgotten after a fork held no entry of this process's.)
    if e.linked:
        _unlink(w, e)
    # SeqCst, as in register; recomputed under the mutex (waker.rs).
    fc_u32_store_seq_cst(&w.is_empty, w.first == NULL)
    fc_mutex_unlock(&w.mutex)


cdef inline Py_ssize_t waker_notify_n(SyncWaker *w, Py_ssize_t n) noexcept nogil:
    """Wake up to n waiters, oldest first; returns how many.  Call after the
    operation's state change is visible (claim made / ring mutex released)."""
    cdef WaitEntry *e
    cdef WaitEntry *nxt
    cdef Py_ssize_t woken = 0
    # SeqCst (waker.rs SyncWaker::notify): pairs with register's SeqCst
    # store across the caller's SeqCst claim (the Dekker argument above).
    if n <= 0 or fc_u32_load_seq_cst(&w.is_empty):
        return 0
    fc_mutex_lock(&w.mutex)
    _forget_if_forked(w)
    e = w.first
    while e != NULL and woken < n:
        nxt = e.next
        # An entry whose waiter another waker selected first stays listed for
        # its owner to unregister (Waker::try_select skips it).
        if waiter_try_select(e.waiter, <uintptr_t>e):
            _unlink(w, e)
            fc_unpark(&e.waiter.parker)
            woken += 1
        e = nxt
    fc_u32_store_seq_cst(&w.is_empty, w.first == NULL)
    fc_mutex_unlock(&w.mutex)
    return woken


cdef inline void waker_notify(SyncWaker *w) noexcept nogil:
    waker_notify_n(w, 1)


cdef inline void waker_disconnect(SyncWaker *w) noexcept nogil:
    """Wake every listed waiter with SEL_DISCONNECTED (the channel closed)."""
    cdef WaitEntry *e
    cdef WaitEntry *nxt
    fc_mutex_lock(&w.mutex)
    _forget_if_forked(w)
    e = w.first
    while e != NULL:
        nxt = e.next
        if waiter_try_select(e.waiter, SEL_DISCONNECTED):
            fc_unpark(&e.waiter.parker)
        e = nxt
    # Entries stay listed: "registered threads must unregister from the waker
    # by themselves" (waker.rs Waker::disconnect).
    fc_mutex_unlock(&w.mutex)


cdef inline int waiter_wait(Waiter *me, int64_t deadline, int spin) noexcept nogil:
    """Park until selected, the deadline, or a signal (context.rs wait_until).

    Call without the GIL, registered.  A deadline or a signal aborts the
    waiter itself; losing that CAS means a notifier selected it first, and
    the caller must then retry its operation (that wake-up was for it)."""
    cdef int64_t remaining
    cdef int r
    while True:
        if waiter_selected(me) != SEL_WAITING:
            return WOKE_SELECTED
        remaining = -1
        if deadline != FOREVER:
            remaining = deadline - fc_monotonic_ns()
            if remaining <= 0:
                return WOKE_TIMEOUT if waiter_try_select(me, SEL_ABORTED) else WOKE_SELECTED
        r = fc_park(&me.parker, remaining, spin)
        spin = 0
        if r == FC_WAIT_CHECK_SIGNALS:
            return WOKE_SIGNALS if waiter_try_select(me, SEL_ABORTED) else WOKE_SELECTED
