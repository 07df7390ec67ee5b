# C-level layout of the compiled pool.
#
# Each worker owns a Deque (fastconc._deque_c); other threads submit into
# `injector` (a compiled Channel, so a mutex-protected FIFO whose close is
# atomic with sends).  Idle workers park on `sleep` (the protocol:
# _pool_sleep_c.pxd).  Locking rule, as in _channel_c: a thread holding
# `sleep.mutex` or `pending.mutex` never takes the GIL nor calls into Python.
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint64_t

from fastconc._support.atomic cimport fc_atomic_size, fc_atomic_uptr
from fastconc._channel_c cimport Channel
from fastconc._deque_c cimport Deque
from fastconc._pool_latch_c cimport CountLatch
from fastconc._pool_sleep_c cimport Sleep
from fastconc._pool_task_c cimport _Task


cdef class _PoolCore


cdef class _Worker:
    cdef Deque deque
    # Thread id running run(index), 0 before: a Chase-Lev deque has one owner.
    cdef fc_atomic_uptr runner
    cdef _PoolCore core
    cdef Py_ssize_t index
    cdef uint64_t rng                  # xorshift state for picking victims
    # Statistics: written by this worker only (relaxed load + store), read by
    # stats() from any thread.
    cdef fc_atomic_size executed
    cdef fc_atomic_size steals
    cdef fc_atomic_size parks
    # Touched by the worker's own thread only: help_until frames on its stack
    # that run unrelated tasks, and what the task wrapper's error path could
    # not settle where it failed ((future or None, error or None, owes a
    # _task_done) tuples; see _PoolCore._rescue).
    cdef int depth
    cdef list unsettled
    # A spare thread's worker (compensation for a blocked thread; see
    # _PoolCore.begin_block): its deque stays empty (its submissions go to
    # the injector), it takes from the injector one task at a time and
    # steals, and it is not in _PoolCore.workers.
    cdef bint spare
    cdef bint initialised


cdef class _PoolCore:
    cdef tuple workers                 # of _Worker, fixed at creation
    cdef Py_ssize_t nworkers
    cdef Channel injector              # submissions from outside the pool
    # Parking and compensation: _pool_sleep_c.pxd.
    cdef Sleep sleep
    # Tasks queued or running, and join()'s wait for none: _pool_latch_c.pxd.
    cdef CountLatch pending
    # Closing: under _close_lock, closed_error is written once, then the
    # injector closed, then closed set (release).
    cdef fc_atomic_size closed
    cdef object closed_error
    # Set by close(cancel_futures=True) after cancel_with (release): a task
    # a worker took in a batch but had not started is cancelled by _run.
    cdef fc_atomic_size cancelling
    cdef object cancel_with
    cdef object _close_lock
    cdef object error_handler
    # Most spare threads alive at once (see Sleep.spares).
    cdef readonly Py_ssize_t max_spares
    # Bookkeeping of the executor (fastconc._support.executor._start_spare).
    cdef public object spare_threads
    cdef public object thread_prefix
    # Statistics of spare threads, under _spare_lock: live spares' workers
    # and the sums of retired ones.
    cdef object _spare_lock
    cdef set _spare_workers
    cdef size_t spare_executed
    cdef size_t spare_steals
    cdef size_t spare_parks
    cdef bint initialised
    cdef object __weakref__

    cdef _Worker _current(self)
    cdef int _push(self, object task) except -1
    cdef int _push_future_task(self, object future, object call) except -1
    cdef PyObject *_find(self, _Worker w) except? NULL
    cdef int _run(self, _Worker w, PyObject *x) except -1
    cdef void _rescue(self, _Worker w, object task, object exc, bint owes_done) noexcept
    cdef void _drain(self, _Worker w) noexcept
    cdef void _run_dependency(self, _Worker w, object task) noexcept
    cdef void _task_done(self) noexcept
    cdef int _start(self, _Worker w, _Task task) except -1
    cdef void _count_executed(self, _Worker w) noexcept
    cdef int _park(self, _Worker w, int64_t deadline, object future, PyObject **out) except -1
    cdef int _loop(self, _Worker w) except -1
    cdef void report(self, object exc) noexcept
    cdef void _abandon(self, PyObject *x, object error) noexcept
