# The lock-free core of the compiled Channel (capacity <= ARRAY_MAX_CAP):
# crossbeam-channel's bounded "array" flavor (flavors/array.rs), itself
# Dmitry Vyukov's bounded MPMC queue, in C, inline.
#
#   slot i     {stamp, item}.  For the position p = {lap, index i}:
#              stamp == p            empty, for the sender of p
#              stamp == p + 1        full (the item sent at p), for its receiver
#              stamp == p + one_lap  consumed, for the sender of the next lap
#   head/tail  {lap | index}, each on its own 128-byte line; the tail also
#              carries mark_bit = closed.
#   capacity   exact: the index wraps at `cap`, not at a power of two
#              (mark_bit = next_pow2(cap + 1), one_lap = 2 * mark_bit), so
#              Channel(1000) holds 1000 items.
#
# A send claims a run of free slots with one CAS on the tail, stores the
# owned references and publishes each with a release store of its stamp; a
# receive mirrors it on the head.  Everything here runs with the GIL held
# (or, free-threaded, the thread attached): a transfer never straddles a
# garbage collection (docs/ARCHITECTURE.md, "Items move only attached").
# The slot buffer is allocated by the first send, so an idle Channel(1000)
# (an actor's mailbox) costs no 16 KB until it is used.
from cpython.object cimport PyObject
from libc.stdlib cimport free, malloc

from fastconc._support.atomic cimport (
    fc_atomic_ptr,
    fc_atomic_size,
    fc_fence_seq_cst,
    fc_padded_size,
    fc_ptr_cas_strong_acq_rel,
    fc_ptr_init,
    fc_ptr_load_acquire,
    fc_size_cas_weak_seq_cst,
    fc_size_fetch_or_seq_cst,
    fc_size_init,
    fc_size_load_acquire,
    fc_size_load_relaxed,
    fc_size_load_seq_cst,
    fc_size_store_release,
)
from fastconc._support.sync cimport fc_backoff_snooze


cdef enum:
    # Past this the buffer (16 bytes a slot) is better grown on demand: the
    # Channel uses its mutex ring instead (also for Channel(2**40)).
    ARRAY_MAX_CAP = 65536

# Results of array_send / array_recv.
cdef enum:
    ARRAY_OK = 0
    ARRAY_NOT_READY       # full (send) / empty (recv)
    ARRAY_CLOSED
    ARRAY_NOMEM


cdef struct ArraySlot:
    fc_atomic_size stamp
    PyObject *item        # plain: ordered by the stamp's release/acquire


cdef struct ArrayCore:
    fc_padded_size head
    fc_padded_size tail
    fc_atomic_ptr buffer  # ArraySlot[cap], NULL until the first send
    size_t cap
    size_t mark_bit
    size_t one_lap


cdef inline void array_init(ArrayCore *c, size_t cap) noexcept nogil:
    cdef size_t m = 1
    while m < cap + 1:
        m <<= 1
    c.cap = cap
    c.mark_bit = m
    c.one_lap = m << 1
    fc_size_init(&c.head.v, 0)
    fc_size_init(&c.tail.v, 0)
    fc_ptr_init(&c.buffer, NULL)


cdef inline ArraySlot *array_buffer(ArrayCore *c) noexcept nogil:
    # Acquire: pairs with the installing CAS (release), so the slots' initial
    # stamps are visible before any is read.
    return <ArraySlot *>fc_ptr_load_acquire(&c.buffer)


cdef inline ArraySlot *array_allocate(ArrayCore *c) noexcept nogil:
    """The buffer, allocated and installed now if nobody did it yet."""
    cdef ArraySlot *buf
    cdef void *expected = NULL
    cdef size_t i
    # libc malloc: tracemalloc's hooks would need the GIL taken differently
    # on each build, and this is plain C memory the Channel frees itself.
    buf = <ArraySlot *>malloc(c.cap * sizeof(ArraySlot))
    if buf == NULL:
        return NULL
    for i in range(c.cap):
        fc_size_init(&buf[i].stamp, i)
        buf[i].item = NULL
    # AcqRel: release publishes the initialised slots; on failure, acquire
    # reads the winner's buffer, and this copy is dropped.
    if not fc_ptr_cas_strong_acq_rel(&c.buffer, &expected, buf):
        free(buf)
        return <ArraySlot *>expected
    return buf


cdef inline size_t _next(ArrayCore *c, size_t p, size_t k) noexcept nogil:
    """Position k slots after p (same lap), or the next lap's first slot."""
    cdef size_t i = p & (c.mark_bit - 1)
    if i + k < c.cap:
        return p + k
    return (p & ~(c.one_lap - 1)) + c.one_lap


cdef inline void _backoff(int *step) noexcept nogil:
    # Reached only when another thread is between its claim and its publish,
    # which happens only where threads run in parallel (with a GIL every
    # transfer is done whole under it).  Never gives up: the publish is a few
    # instructions away.
    fc_backoff_snooze(step)


cdef inline int array_send(ArrayCore *c, PyObject **items, Py_ssize_t n,
                           Py_ssize_t *done) noexcept nogil:
    """Move items[done:n] (owned references) in, in runs of free slots.

    ARRAY_OK when all are in; else ARRAY_NOT_READY (full), ARRAY_CLOSED or
    ARRAY_NOMEM, with done advanced by what went in before it stopped."""
    cdef ArraySlot *buf = array_buffer(c)
    cdef size_t t, s, i, k, want, nt, h
    cdef int step = 0
    # Relaxed: only a hint; the stamp check and the CAS validate it.
    t = fc_size_load_relaxed(&c.tail.v)
    if buf == NULL:
        if t & c.mark_bit:
            return ARRAY_CLOSED   # closed before its first send: allocate nothing
        buf = array_allocate(c)
        if buf == NULL:
            return ARRAY_NOMEM
    while done[0] < n:
        if t & c.mark_bit:
            return ARRAY_CLOSED
        i = t & (c.mark_bit - 1)
        # Acquire: pairs with the previous lap's receiver's release of this
        # stamp, so its read of `item` is done before we overwrite it.
        s = fc_size_load_acquire(&buf[i].stamp)
        if s == t:
            # A run: slots i.. free for positions t.. in this lap.  A stamp
            # equal to its position changes only once its sender moved the
            # tail past it, which fails our CAS: a winning CAS owns them all.
            want = <size_t>(n - done[0])
            k = 1
            while k < want and i + k < c.cap and fc_size_load_acquire(&buf[i + k].stamp) == t + k:
                k += 1
            nt = _next(c, t, k)
            # SeqCst on success (array.rs start_send): the claim is in the
            # total order with a waiter's SeqCst registration and re-check.
            # Relaxed on failure: t is reloaded with the current tail.
            if fc_size_cas_weak_seq_cst(&c.tail.v, &t, nt):
                for s in range(k):
                    buf[i + s].item = items[done[0] + <Py_ssize_t>s]
                    # Release (array.rs write): publishes the item pointer
                    # and the object's state to the receiver's acquire.
                    fc_size_store_release(&buf[i + s].stamp, t + s + 1)
                done[0] += <Py_ssize_t>k
                t = nt
                continue
            _backoff(&step)
        elif s + c.one_lap == t + 1:
            # The slot still holds last lap's item: full, unless a receiver
            # moved the head meanwhile.  SeqCst fence, as array.rs: orders
            # this relaxed read of the head after our earlier SeqCst loads.
            fc_fence_seq_cst()
            h = fc_size_load_relaxed(&c.head.v)
            if h + c.one_lap == t:
                return ARRAY_NOT_READY
            _backoff(&step)
            t = fc_size_load_relaxed(&c.tail.v)
        else:
            # The tail moved on, or a claim is not yet published: look again.
            _backoff(&step)
            t = fc_size_load_relaxed(&c.tail.v)
    return ARRAY_OK


cdef inline int array_recv(ArrayCore *c, PyObject **out, Py_ssize_t max_n,
                           Py_ssize_t *got) noexcept nogil:
    """Take up to max_n items (owned references) into out; *got says how
    many.  ARRAY_OK when got >= 1; else ARRAY_NOT_READY (empty) or
    ARRAY_CLOSED (closed and drained)."""
    cdef ArraySlot *buf = array_buffer(c)
    cdef size_t h, s, i, k, nh, t
    cdef int step = 0
    got[0] = 0
    if buf == NULL:
        # Nothing was ever sent.  SeqCst: the closed mark is read in the
        # total order, as array_is_closed.
        return ARRAY_CLOSED if fc_size_load_seq_cst(&c.tail.v) & c.mark_bit else ARRAY_NOT_READY
    h = fc_size_load_relaxed(&c.head.v)
    while got[0] < max_n:
        i = h & (c.mark_bit - 1)
        # Acquire: pairs with the sender's release of this stamp (the item).
        s = fc_size_load_acquire(&buf[i].stamp)
        if s == h + 1:
            k = 1
            while (k < <size_t>(max_n - got[0]) and i + k < c.cap
                   and fc_size_load_acquire(&buf[i + k].stamp) == h + k + 1):
                k += 1
            nh = _next(c, h, k)
            # SeqCst on success, relaxed on failure: as in array_send.
            if fc_size_cas_weak_seq_cst(&c.head.v, &h, nh):
                for s in range(k):
                    out[got[0] + <Py_ssize_t>s] = buf[i + s].item
                    buf[i + s].item = NULL
                    # Release (array.rs read): our read of item is done before
                    # the next lap's sender sees the slot free.
                    fc_size_store_release(&buf[i + s].stamp, h + s + c.one_lap)
                got[0] += <Py_ssize_t>k
                h = nh
                continue
            _backoff(&step)
        elif s == h:
            # Empty for this lap, unless a sender claimed it and has not yet
            # published.  SeqCst fence as in array_send.
            if got[0]:
                return ARRAY_OK
            fc_fence_seq_cst()
            t = fc_size_load_relaxed(&c.tail.v)
            if (t & ~c.mark_bit) == h:
                return ARRAY_CLOSED if t & c.mark_bit else ARRAY_NOT_READY
            _backoff(&step)
            h = fc_size_load_relaxed(&c.head.v)
        else:
            if got[0]:
                return ARRAY_OK
            _backoff(&step)
            h = fc_size_load_relaxed(&c.head.v)
    return ARRAY_OK


cdef inline bint array_close(ArrayCore *c) noexcept nogil:
    """Mark closed; True when this call did it.  SeqCst: in the total order
    with a waiter's registration and re-check (array.rs disconnect)."""
    return not (fc_size_fetch_or_seq_cst(&c.tail.v, c.mark_bit) & c.mark_bit)


cdef inline bint array_is_closed(ArrayCore *c) noexcept nogil:
    return (fc_size_load_seq_cst(&c.tail.v) & c.mark_bit) != 0


# A first look for select(), cheaper than an attempt (no fence): True only
# when the channel is open and was empty (full) when looked at.  A stale
# answer only makes select() skip an operation in this pass; before it
# sleeps, its SeqCst re-check (array_is_empty / array_is_full) sees the item.
cdef inline bint array_looks_empty(ArrayCore *c) noexcept nogil:
    # Head first (as array_is_empty): a tail read later that equals it means
    # the channel was empty at that moment.  The other order could pair an
    # old tail with a newer head and call a never-empty channel empty.
    cdef size_t h = fc_size_load_acquire(&c.head.v)
    return fc_size_load_acquire(&c.tail.v) == h    # a marked tail never equals head


cdef inline bint array_looks_full(ArrayCore *c) noexcept nogil:
    cdef size_t t = fc_size_load_acquire(&c.tail.v)
    return fc_size_load_acquire(&c.head.v) + c.one_lap == t


# The waiter's re-checks: SeqCst loads (array.rs is_empty / is_full), the
# second half of the waker's Dekker argument (_channel_waker_c.pxd).
cdef inline bint array_is_empty(ArrayCore *c) noexcept nogil:
    cdef size_t h = fc_size_load_seq_cst(&c.head.v)
    cdef size_t t = fc_size_load_seq_cst(&c.tail.v)
    return (t & ~c.mark_bit) == h


cdef inline bint array_is_full(ArrayCore *c) noexcept nogil:
    cdef size_t t = fc_size_load_seq_cst(&c.tail.v)
    cdef size_t h = fc_size_load_seq_cst(&c.head.v)
    return h + c.one_lap == (t & ~c.mark_bit)


cdef inline size_t array_len(ArrayCore *c) noexcept nogil:
    """Items held now (array.rs len: retried until the tail is stable)."""
    cdef size_t t, h, hix, tix
    while True:
        t = fc_size_load_seq_cst(&c.tail.v)
        h = fc_size_load_seq_cst(&c.head.v)
        if fc_size_load_seq_cst(&c.tail.v) == t:
            break
    hix = h & (c.mark_bit - 1)
    tix = t & (c.mark_bit - 1)
    if hix < tix:
        return tix - hix
    if hix > tix:
        return c.cap - hix + tix
    if (t & ~c.mark_bit) == h:
        return 0
    return c.cap
