# The compiled pool's sleep protocol, after rayon-core's sleep module: how an
# idle worker parks and how a publisher wakes it, plus the counts of blocked
# and spare threads that compensation keeps under the same mutex.
#
# The protocol: a worker with nothing to do announces itself (sleepers += 1),
# reads the epoch, looks for work everywhere once more, and only then sleeps
# until the epoch moves.  A publisher bumps the epoch whenever it sees a
# sleeper, so a task published after the worker's last look always wakes it.
#
# Inline, compiled into _pool_c; nothing here calls into Python, so all of it
# runs without the GIL (the locking rule of _pool_c.pxd).
from libc.stdint cimport int64_t

from fastconc._support.atomic cimport (
    fc_atomic_size,
    fc_fence_seq_cst,
    fc_size_fetch_add_seq_cst,
    fc_size_fetch_sub_seq_cst,
    fc_size_init,
    fc_size_load_relaxed,
    fc_size_load_seq_cst,
)
from fastconc._support.deadline cimport FOREVER
from fastconc._support.sync cimport (
    fc_cond,
    fc_cond_broadcast,
    fc_cond_destroy,
    fc_cond_init,
    fc_cond_signal_n,
    fc_cond_wait,
    fc_monotonic_ns,
    fc_mutex,
    fc_mutex_destroy,
    fc_mutex_init,
    fc_mutex_lock,
    fc_mutex_unlock,
)


# Outcomes of a worker's park (_PoolCore._park); sleep_wait returns the last
# three.
cdef enum:
    PARK_FOUND        # a task was found on the last look
    PARK_DONE         # the awaited future is done
    PARK_CLOSED       # pool closed and nothing left to do: the worker exits
    PARK_WOKEN        # the epoch moved: look again
    PARK_TIMEOUT
    PARK_RETIRE       # a spare with nothing to do is no longer needed: it exits


cdef struct Sleep:
    fc_mutex mutex
    fc_cond cond
    # sleepers is read without the mutex by publishers; epoch changes under
    # the mutex whenever a parked worker should look again.
    fc_atomic_size sleepers
    fc_atomic_size epoch
    # Compensation, under the mutex (plain words: only ever touched with it
    # held): pool threads blocked on a future (block_begin .. block_end) and
    # spare threads alive or reserved.  A spare is started while
    # spares < blocked (up to the pool's max_spares); an idle spare retires
    # while spares > blocked.
    Py_ssize_t blocked
    Py_ssize_t spares


cdef inline int sleep_init(Sleep *s) noexcept nogil:
    """-1 when the mutex cannot be created (nothing to destroy then)."""
    if fc_mutex_init(&s.mutex) != 0:
        return -1
    fc_cond_init(&s.cond)
    fc_size_init(&s.sleepers, 0)
    fc_size_init(&s.epoch, 0)
    s.blocked = 0
    s.spares = 0
    return 0


cdef inline void sleep_destroy(Sleep *s) noexcept nogil:
    fc_cond_destroy(&s.cond)
    fc_mutex_destroy(&s.mutex)


cdef inline void wake_one(Sleep *s) noexcept nogil:
    """After publishing a task: wake one parked worker, if any."""
    # seq_cst fence between the publication (deque bottom or injector) and
    # the read of sleepers; sleep_announce has the matching order (sleepers
    # increment, then the caller's re-check).  One of the two sees the other,
    # so a worker never sleeps through a task (rayon's sleep protocol: a
    # publisher that sees no sleeper knows every would-be sleeper will see
    # its job).
    fc_fence_seq_cst()
    # relaxed: ordered by the fence above.
    if fc_size_load_relaxed(&s.sleepers) == 0:
        return
    fc_mutex_lock(&s.mutex)
    # seq_cst: a parker that reads the new epoch must also see the task
    # published before it (the RMW is a release, the announce's load an
    # acquire).
    fc_size_fetch_add_seq_cst(&s.epoch, 1)
    fc_mutex_unlock(&s.mutex)
    fc_cond_signal_n(&s.cond, 1)


cdef inline void wake_all(Sleep *s) noexcept nogil:
    fc_mutex_lock(&s.mutex)
    # seq_cst: as in wake_one.
    fc_size_fetch_add_seq_cst(&s.epoch, 1)
    fc_mutex_unlock(&s.mutex)
    fc_cond_broadcast(&s.cond)


cdef inline size_t sleep_announce(Sleep *s) noexcept nogil:
    """Count the caller a sleeper and return the epoch it will wait on; the
    caller then looks for work once more, and calls sleep_leave whatever
    happens next."""
    # seq_cst: pairs with the fence in wake_one (see there).
    fc_size_fetch_add_seq_cst(&s.sleepers, 1)
    # seq_cst: reading a bumped epoch makes its task visible to the look
    # that follows.
    return fc_size_load_seq_cst(&s.epoch)


cdef inline void sleep_leave(Sleep *s) noexcept nogil:
    # seq_cst: as the increment in sleep_announce.
    fc_size_fetch_sub_seq_cst(&s.sleepers, 1)


cdef inline int sleep_wait(Sleep *s, size_t key, int64_t deadline, bint may_retire) noexcept nogil:
    """Sleep while the epoch is still `key`: PARK_WOKEN once it moved,
    PARK_TIMEOUT at the deadline (FOREVER: none), PARK_RETIRE (its slot
    given back) when may_retire and more spares than blocked threads."""
    cdef int st = PARK_WOKEN, spin = 1
    cdef int64_t remaining = -1
    fc_mutex_lock(&s.mutex)
    # seq_cst: see wake_one; the mutex orders it with the bump.
    while fc_size_load_seq_cst(&s.epoch) == key:
        # Only while the epoch is unchanged: nothing was published since the
        # caller's look, so retiring loses no wake-up (a later publisher's
        # signal goes to a thread really waiting).
        if may_retire and s.spares > s.blocked:
            s.spares -= 1
            st = PARK_RETIRE
            break
        if deadline != FOREVER:
            remaining = deadline - fc_monotonic_ns()
            if remaining <= 0:
                st = PARK_TIMEOUT
                break
        # Signals are the main thread's business; workers just wait again.
        fc_cond_wait(&s.cond, &s.mutex, remaining, spin)
        spin = 0
    fc_mutex_unlock(&s.mutex)
    return st


cdef inline bint block_begin(Sleep *s, Py_ssize_t max_spares) noexcept nogil:
    """A pool thread is about to block: count it, and say whether the caller
    must start a spare thread (its slot reserved here).  Parked threads are
    woken to look again: the blocked thread's deque is theirs now."""
    cdef bint spawn
    fc_mutex_lock(&s.mutex)
    s.blocked += 1
    spawn = s.spares < s.blocked and s.spares < max_spares
    if spawn:
        s.spares += 1
    fc_mutex_unlock(&s.mutex)
    wake_all(s)
    return spawn


cdef inline void block_end(Sleep *s) noexcept nogil:
    cdef bint surplus
    fc_mutex_lock(&s.mutex)
    s.blocked -= 1
    surplus = s.spares > s.blocked
    fc_mutex_unlock(&s.mutex)
    if surplus:
        # Idle spares look again, and retire (see sleep_wait).
        wake_all(s)


cdef inline void spare_release(Sleep *s) noexcept nogil:
    """A spare slot given back without retiring (its thread could not start,
    or it exits because the pool closed)."""
    fc_mutex_lock(&s.mutex)
    s.spares -= 1
    fc_mutex_unlock(&s.mutex)
