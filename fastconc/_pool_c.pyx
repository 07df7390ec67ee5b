# cython: language_level=3, freethreading_compatible=True, autotestdict=False, binding=False
# cython: boundscheck=False, wraparound=False, auto_pickle=False
# cython: embedsignature=True, embedsignature.format=clinic
"""Compiled backend of WorkStealingPool.

The pool runs one Chase-Lev deque (fastconc._deque_c) per worker, a shared
injector for outside submissions and a park/wake protocol modelled on
rayon's (announce, re-check, sleep on an epoch).  The Executor surface
itself is written once, in fastconc._support.executor; this module supplies
its core.  Layout and invariants: _pool_c.pxd.
"""
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport int64_t, uint64_t, uintptr_t

from fastconc._support.atomic cimport (
    fc_size_init,
    fc_size_load_acquire,
    fc_size_load_relaxed,
    fc_size_store_relaxed,
    fc_size_store_release,
    fc_uptr_cas_strong_relaxed,
    fc_uptr_init,
)
from fastconc._channel_c cimport ST_CLOSED, ST_OK, Channel
from fastconc._deque_c cimport (
    deque_free,
    deque_init,
    deque_push,
    deque_steal_retrying,
    deque_take,
    steal_ref,
)
from fastconc._pool_latch_c cimport (
    LATCH_SIGNALS,
    LATCH_ZERO,
    latch_add,
    latch_count,
    latch_destroy,
    latch_done,
    latch_init,
    latch_is_zero,
    latch_wait,
    latch_wait_begin,
    latch_wait_end,
)
from fastconc._pool_sleep_c cimport (
    PARK_CLOSED,
    PARK_DONE,
    PARK_FOUND,
    PARK_RETIRE,
    PARK_TIMEOUT,
    block_begin,
    block_end,
    sleep_announce,
    sleep_destroy,
    sleep_init,
    sleep_leave,
    sleep_wait,
    spare_release,
    wake_all,
    wake_one,
)
from fastconc._pool_task_c cimport (
    _FutureTask,
    _Task,
    batch_task,
    call_task,
    future_call_task,
    take_task,
)
from fastconc._support.deadline cimport FOREVER, deadline_ns
from fastconc._support.sync cimport (
    fc_monotonic_ns,
    fc_mutex_lock,
    fc_mutex_unlock,
    fc_thread_id,
)

import threading

from fastconc._support.executor import PoolExecutor, report_error
from fastconc._support.futures import fresh_error, help_limit, settle_failed
from fastconc._support.spares import MAX_SPARES as _MAX_SPARES  # private: no stub entry
from fastconc.errors import Deadlock


cdef extern from *:
    """
    #if defined(_MSC_VER)
    #define FC_THREAD_LOCAL __declspec(thread)
    #else
    #define FC_THREAD_LOCAL _Thread_local
    #endif
    /* The _Worker the calling thread is, or NULL: lets submit() find the
     * worker's own deque without a Python-level thread-local lookup. */
    static FC_THREAD_LOCAL void *fc_current_worker = NULL;
    """
    void *fc_current_worker


cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX


cdef enum:
    # Most tasks a worker moves from the injector at once (it runs one and
    # leaves the rest in its deque, where idle workers can steal them).
    INJECTOR_BATCH = 32
    # Lost CAS races tolerated per victim before trying the next one.
    STEAL_RETRIES = 4


cdef inline void _bump(fc_atomic_size *counter) noexcept nogil:
    # relaxed load + store: this worker is the counter's only writer; readers
    # want a recent value, not an ordering.
    fc_size_store_relaxed(counter, fc_size_load_relaxed(counter) + 1)


# ---------------------------------------------------------------- pool core

cdef class _Worker:
    def __cinit__(self):
        if deque_init(&self.deque) < 0:
            raise MemoryError("cannot allocate a worker deque")
        fc_size_init(&self.executed, 0)
        fc_size_init(&self.steals, 0)
        fc_size_init(&self.parks, 0)
        fc_uptr_init(&self.runner, 0)
        self.depth = 0
        self.unsettled = []
        self.spare = False
        self.initialised = True

    def __dealloc__(self):
        if self.initialised:
            deque_free(&self.deque)


cdef class _PoolCore:
    """Deques, injector, parking and the task loop of one WorkStealingPool."""

    def __cinit__(self, *args, **kwargs):
        if latch_init(&self.pending) < 0:
            raise MemoryError("cannot create mutex")
        if sleep_init(&self.sleep) < 0:
            latch_destroy(&self.pending)
            raise MemoryError("cannot create mutex")
        fc_size_init(&self.closed, 0)
        fc_size_init(&self.cancelling, 0)
        self.initialised = True

    def __dealloc__(self):
        if self.initialised:
            sleep_destroy(&self.sleep)
            latch_destroy(&self.pending)

    def __init__(self, Py_ssize_t nworkers, error_handler, Py_ssize_t max_spares=_MAX_SPARES):
        cdef _Worker w
        cdef Py_ssize_t i
        if self.workers is not None:
            raise RuntimeError("_PoolCore is already initialised")
        workers = []
        for i in range(nworkers):
            w = _Worker()
            w.core = self
            w.index = i
            w.rng = <uint64_t>(i + 1) * 0x9E3779B97F4A7C15ULL
            workers.append(w)
        self.workers = tuple(workers)
        self.nworkers = nworkers
        self.injector = Channel(PY_SSIZE_T_MAX)
        self.error_handler = error_handler
        self._close_lock = threading.Lock()
        self.max_spares = max_spares if max_spares > 0 else 0
        self.spare_threads = set()
        self.thread_prefix = ""
        self._spare_lock = threading.Lock()
        self._spare_workers = set()

    # ------------------------------------------------------------ submitting

    cdef _Worker _current(self):
        """This thread's worker if it is one of ours, else None."""
        cdef _Worker w
        if fc_current_worker == NULL:
            return None
        w = <_Worker>fc_current_worker
        return w if w.core is self else None

    cdef int _push(self, object task) except -1:
        cdef _Worker w = self._current()
        cdef PyObject *p = <PyObject *>task
        cdef Py_ssize_t done = 0
        cdef int st
        # Counted before the task is visible (see _pool_latch_c.pxd).
        latch_add(&self.pending)
        if w is not None and not w.spare:
            # acquire: pairs with the release in close(), so closed_error is set.
            if fc_size_load_acquire(&self.closed):
                self._task_done()
                raise fresh_error(self.closed_error)
            Py_INCREF(task)
            if deque_push(&w.deque, p) < 0:
                Py_DECREF(task)
                self._task_done()
                raise MemoryError("cannot grow the worker's deque")
        else:
            Py_INCREF(task)
            st = self.injector._send(&p, 1, &done, 0)
            if st != ST_OK:
                Py_DECREF(task)
                self._task_done()
                if st == ST_CLOSED:
                    raise fresh_error(self.closed_error)
                raise MemoryError("cannot grow the pool's queue")
        wake_one(&self.sleep)
        return 0

    def execute(self, fn, tuple args, dict kwargs):
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        if not args and not kwargs and not isinstance(fn, _Task):
            self._push(fn)
            return
        self._push(call_task(fn, args, kwargs))

    def submit(self, future, fn, tuple args, dict kwargs):
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        self._push_future_task(future, future_call_task(future, fn, args, kwargs))

    def submit_batch(self, future, fn, list items, bint star):
        self._push_future_task(future, batch_task(future, fn, items, star))

    cdef int _push_future_task(self, object future, object call) except -1:
        # The link a waiter follows to run this task as its dependency
        # (help_until); its owner clears it once it took the token, so the
        # future <-> task cycle (tasks are not GC-tracked) never outlives that.
        future._task = call
        try:
            self._push(call)
        except BaseException:
            future._task = None
            raise
        return 0

    def _future_done(self, future):
        """Done-callback of a future a worker helps on: wake it to return."""
        wake_all(&self.sleep)

    # ------------------------------------------------------------ running

    cdef PyObject *_find(self, _Worker w) except? NULL:
        """A task for w (an owned reference) or NULL: its own deque (LIFO),
        then a batch from the injector, then one stolen from a victim."""
        cdef PyObject *x = deque_take(&w.deque)
        cdef PyObject *batch[INJECTOR_BATCH]
        cdef Py_ssize_t got = 0, i
        cdef _Worker victim
        cdef uint64_t r
        if x != NULL:
            return x
        # A spare takes one at a time: nobody steals from its deque.
        if self.injector._recv(batch, 1 if w.spare else INJECTOR_BATCH, &got, 0) == ST_OK and got:
            # The rest go into our (empty, DEQUE_FIRST_SLOTS-sized) deque,
            # where idle workers can steal them.
            # Newest first, so our LIFO pops keep submission order.
            for i in range(got - 1, 0, -1):
                # Cannot fail: the deque is empty and arrays never shrink
                # below DEQUE_FIRST_SLOTS.  Fail the task rather than lose
                # it if that ever changes.
                if deque_push(&w.deque, batch[i]) < 0:
                    self._abandon(batch[i], MemoryError("cannot grow the worker's deque"))
            if got > 1:
                wake_one(&self.sleep)
            return batch[0]
        if self.nworkers < 2 and not w.spare:
            return NULL
        # xorshift64: a cheap random first victim spreads thieves out.
        r = w.rng
        r ^= r << 13
        r ^= r >> 7
        r ^= r << 17
        w.rng = r
        for i in range(self.nworkers):
            victim = <_Worker>self.workers[(r + <uint64_t>i) % <uint64_t>self.nworkers]
            if victim is w:
                continue
            x = deque_steal_retrying(&victim.deque, STEAL_RETRIES)
            if x != NULL:
                _bump(&w.steals)
                return x
        return NULL

    cdef int _run(self, _Worker w, PyObject *x) except -1:
        """Run the task x (an owned reference, consumed)."""
        # acquire: pairs with close()'s release store, so cancel_with is
        # seen.  A task taken before the close may still start, as a queued
        # one a worker popped just before the drain does.
        if fc_size_load_acquire(&self.cancelling):
            self._abandon(x, self.cancel_with)
            return 0
        cdef object task = steal_ref(x)
        if isinstance(task, _FutureTask) and not take_task(<_Task>task):
            # A waiter ran it as its dependency: this entry is stale.
            return 0
        try:
            if isinstance(task, _Task):
                if isinstance(task, _FutureTask):
                    (<_Task>task).future._task = None
                self._start(w, <_Task>task)
            else:
                self._count_executed(w)
                task()
        except BaseException as exc:
            # A bare callable from execute(), or the wrapper of a task failing
            # (run() gives a task's own errors to its future or the handler).
            self._rescue(w, task, exc, True)
        else:
            self._task_done()
        task = None
        return 0

    cdef int _start(self, _Worker w, _Task task) except -1:
        """Run a task the caller owns (see take_task), counted executed as it
        starts."""
        if task.start():
            self._count_executed(w)
            task.call(self.error_handler)
        return 0

    cdef void _count_executed(self, _Worker w) noexcept:
        """Counted as a task starts, so a task whose result a caller has seen
        is in stats() already.  A spare's counters are read through
        _spare_workers, then folded into the core's sums when it retires."""
        _bump(&w.executed)

    cdef void _rescue(self, _Worker w, object task, object exc, bint owes_done) noexcept:
        """The wrapper of task raised exc: settle its future with exc (unless
        settled already) and report exc; then, if owes_done, count the task
        done.  What cannot be done here (settle_failed raising, e.g. a
        RecursionError deep in a stack) goes to w.unsettled for _drain, with
        the task still counted in pending, so join() never reports idle while
        a future is unsettled."""
        cdef object future = (<_Task>task).future if isinstance(task, _Task) else None
        try:
            if future is not None:
                settle_failed(future, exc)
        except BaseException:
            # A C-level list append: no Python frame, no recursion check.
            w.unsettled.append((future, exc, owes_done))
            return
        self.report(exc)
        if owes_done:
            self._task_done()

    cdef void _drain(self, _Worker w) noexcept:
        """Finish what _rescue could not; what still fails stays queued for
        the next try (never raises into a task that helps)."""
        cdef list unsettled = w.unsettled
        cdef tuple entry
        try:
            while unsettled:
                entry = <tuple>unsettled[0]
                if entry[0] is not None:
                    settle_failed(entry[0], entry[1])
                del unsettled[0]
                self.report(entry[1])
                if entry[2]:
                    self._task_done()
        except BaseException:
            return

    cdef void _run_dependency(self, _Worker w, object task) noexcept:
        """Run the awaited future's queued task inline, if nobody took it yet
        (take_task).  Its queue entry stays where it is and is skipped when
        popped; the task keeps the one count in pending it got when queued,
        given back once it has run here."""
        if not take_task(<_Task>task):
            return
        try:
            (<_Task>task).future._task = None
            self._start(w, <_Task>task)
        except BaseException as exc:
            self._rescue(w, task, exc, True)
        else:
            self._task_done()

    cdef void _task_done(self) noexcept:
        latch_done(&self.pending)

    cdef int _park(self, _Worker w, int64_t deadline, object future, PyObject **out) except -1:
        """Sleep until there may be work (or the future is done, or the pool
        closed), by the protocol of _pool_sleep_c.pxd: announce, look
        everywhere once more, then sleep until the epoch moves."""
        cdef size_t key = sleep_announce(&self.sleep)
        cdef int st
        cdef bint closed, may_retire
        try:
            # acquire: before the look, so a close() that follows a last
            # submission never makes us exit past it (the injector's mutex
            # orders the two).
            closed = fc_size_load_acquire(&self.closed) != 0
            out[0] = self._find(w)
            if out[0] != NULL:
                return PARK_FOUND
            if future is not None:
                # PoolFuture.done() reads the state without a lock: a stale
                # False is covered by the epoch, which the future's wake-up
                # callback (_wake_when_done) bumps after settling it.
                if future.done():
                    return PARK_DONE
            elif closed:
                return PARK_CLOSED
            may_retire = w.spare and future is None and not w.unsettled
            _bump(&w.parks)
            with nogil:
                st = sleep_wait(&self.sleep, key, deadline, may_retire)
            return st
        finally:
            sleep_leave(&self.sleep)

    def run(self, Py_ssize_t index):
        """The worker loop of thread `index`; returns once the pool is closed
        and no work is left."""
        global fc_current_worker
        cdef _Worker w
        cdef uintptr_t nobody = 0
        if not 0 <= index < self.nworkers:  # boundscheck is off in this module
            raise IndexError(f"no worker {index}")
        w = <_Worker>self.workers[index]
        if fc_current_worker != NULL:
            raise RuntimeError("this thread already runs a pool worker")
        # relaxed CAS: only decides which thread owns this worker's deque
        # (Chase-Lev allows one owner); the deque's own atomics order the data.
        if not fc_uptr_cas_strong_relaxed(&w.runner, &nobody, fc_thread_id()):
            raise RuntimeError(f"worker {index} is already running")
        fc_current_worker = <void *>w
        try:
            self._loop(w)
        finally:
            fc_current_worker = NULL

    cdef int _loop(self, _Worker w) except -1:
        """Find and run tasks until the pool is closed and nothing is left
        (PARK_CLOSED) or, for a spare, until it retires (PARK_RETIRE)."""
        cdef PyObject *x
        cdef int st
        while True:
            if w.unsettled:
                self._drain(w)
            x = self._find(w)
            if x == NULL:
                st = self._park(w, FOREVER, None, &x)
                if st == PARK_CLOSED or st == PARK_RETIRE:
                    return st
                if st != PARK_FOUND:
                    continue
            self._run(w, x)

    def run_spare(self):
        """The loop of a spare thread (its slot reserved by begin_block):
        like run(), but it retires once there are more spares than blocked
        threads and it has nothing to do."""
        global fc_current_worker
        cdef _Worker w
        cdef bint retired = False
        w = None
        try:
            # Inside the try: whatever fails here still gives the slot back.
            if fc_current_worker != NULL:
                raise RuntimeError("this thread already runs a pool worker")
            w = _Worker()
            w.core = self
            w.index = -1
            w.spare = True
            # xorshift state: any non-zero value; the address differs per spare.
            w.rng = (<uint64_t><uintptr_t><void *>w) * 0x9E3779B97F4A7C15ULL | 1
            with self._spare_lock:
                self._spare_workers.add(w)
            fc_current_worker = <void *>w
            retired = self._loop(w) == PARK_RETIRE
        finally:
            if w is not None and fc_current_worker == <void *>w:
                fc_current_worker = NULL
            if not retired:
                self.release_spare()
            if w is not None:
                with self._spare_lock:
                    self._spare_workers.discard(w)
                    # relaxed: this thread was the counters' only writer.
                    self.spare_executed += fc_size_load_relaxed(&w.executed)
                    self.spare_steals += fc_size_load_relaxed(&w.steals)
                    self.spare_parks += fc_size_load_relaxed(&w.parks)

    def begin_block(self):
        """This pool thread is about to block on a future: count it blocked,
        and say whether the caller must start a spare thread (its slot
        reserved here) so that max_workers threads stay unblocked."""
        cdef bint spawn
        with nogil:
            spawn = block_begin(&self.sleep, self.max_spares)
        return spawn

    def end_block(self):
        with nogil:
            block_end(&self.sleep)

    def release_spare(self):
        """A spare slot given back: its thread could not start, or it exits
        for another reason than retiring (the pool closed)."""
        with nogil:
            spare_release(&self.sleep)

    def owns_current_thread(self):
        """True when the calling thread is one of this pool's workers."""
        return self._current() is not None

    def help_until(self, future, timeout):
        """Called by a worker waiting on `future`: help until it is done or
        `timeout` (seconds, None = no limit) has passed (True), or return
        False at once when the caller must block instead (this thread is
        already help_limit() levels deep).

        First, if the future's own task is still queued, claim it and run it
        right here (the dependency: this nests only as deep as the program's
        own recursion).  Then run other queued tasks, nested, but only below
        help_limit() levels of such helping on this thread."""
        cdef _Worker w = self._current()
        cdef int64_t deadline = deadline_ns(timeout)
        cdef PyObject *x
        cdef bint watching = False
        cdef int st
        if w is None:
            raise RuntimeError("help_until() is for the pool's own workers")
        if w.unsettled:
            self._drain(w)
        task = getattr(future, "_task", None)
        if isinstance(task, _FutureTask) and (<_Task>task).future is future:
            self._run_dependency(w, task)
            if future.done():
                return True
        task = None
        if w.depth >= help_limit():
            return False
        w.depth += 1
        try:
            while not future.done():
                if deadline != FOREVER and fc_monotonic_ns() >= deadline:
                    return True
                x = self._find(w)
                if x == NULL:
                    if not watching:
                        watching = True
                        future._wake_when_done(self._future_done)
                    st = self._park(w, deadline, future, &x)
                    if st == PARK_TIMEOUT:
                        return True
                    if st != PARK_FOUND:
                        continue
                self._run(w, x)
        finally:
            w.depth -= 1
            if watching:
                # Leaving may have swallowed a wake-up meant for a new task
                # (both bump the epoch): pass one on.
                wake_one(&self.sleep)
        return True

    # ------------------------------------------------------------ errors

    cdef void report(self, object exc) noexcept:
        """An exception from an execute() task (see report_error)."""
        report_error(self.error_handler, exc)

    # ------------------------------------------------------------ join / close

    def join(self, timeout):
        """Wait until no task is queued or running; False on timeout."""
        cdef int64_t deadline = deadline_ns(timeout)
        cdef int st, spin = 1
        if self._current() is not None:
            raise Deadlock("join() from a worker of the same pool would wait for itself")
        if latch_is_zero(&self.pending):
            return True
        latch_wait_begin(&self.pending)
        try:
            while True:
                with nogil:
                    st = latch_wait(&self.pending, deadline, spin)
                spin = 0
                if st != LATCH_SIGNALS:
                    return st == LATCH_ZERO
                # Lets a Ctrl-C in the main thread interrupt join().
                PyErr_CheckSignals()
        finally:
            latch_wait_end(&self.pending)

    def close(self, error, bint cancel_futures, fail_with=None):
        """Take no more work (submitters get `error`) and let the workers exit
        once the queues are empty.  cancel_futures: drop what is still queued,
        cancelling its futures, or failing them with `fail_with` if given."""
        cdef PyObject *x
        cdef Py_ssize_t got = 0
        cdef _Worker w
        with self._close_lock:
            # One writer for closed_error (close() can race itself: shutdown,
            # a failed initializer in each worker, the finalizer, exit).
            if self.closed_error is None:
                self.closed_error = error
            # Closed under the injector's mutex: a submission either got in
            # before (and will run or be drained below) or is refused.  Only
            # then may a worker read `closed` as "nothing more can arrive"
            # (park() exits on it after finding the injector empty).
            self.injector._close(False)
            # release: publishes closed_error (and the injector's close) to
            # the acquire loads of closed.
            fc_size_store_release(&self.closed, 1)
        if cancel_futures:
            # Tasks a worker took from the injector in a batch and has not
            # started are in no queue drained below: _run cancels them.
            # release: publishes cancel_with to _run's acquire load.
            self.cancel_with = fail_with
            fc_size_store_release(&self.cancelling, 1)
            while self.injector._recv(&x, 1, &got, 0) == ST_OK and got:
                self._abandon(x, fail_with)
            for w in self.workers:
                x = deque_steal_retrying(&w.deque, PY_SSIZE_T_MAX)
                while x != NULL:
                    self._abandon(x, fail_with)
                    x = deque_steal_retrying(&w.deque, PY_SSIZE_T_MAX)
        wake_all(&self.sleep)

    cdef void _abandon(self, PyObject *x, object error) noexcept:
        cdef object task = steal_ref(x)
        if isinstance(task, _FutureTask):
            if not take_task(<_Task>task):
                return  # stale: its owner ran it and counted it done
            try:
                (<_Task>task).future._task = None
            except BaseException:
                pass  # only a link that breaks a cycle; abandon() settles it
            (<_Task>task).abandon(error)
        elif error is not None:
            # An execute() task (a _Call or a bare callable) of a broken
            # pool: no future to fail, so the error handler hears of it
            # (report_error never raises).
            report_error(self.error_handler, error)
        task = None
        self._task_done()

    # ------------------------------------------------------------ stats

    def stats(self):
        """[(executed, steals, parks) per worker], tasks queued or running,
        (executed, steals, parks) of spare threads, spares alive, threads
        blocked."""
        cdef _Worker w
        cdef size_t executed, steals, parks
        cdef Py_ssize_t spares, blocked
        # relaxed: a snapshot of counters, no ordering wanted.
        per_worker = [(fc_size_load_relaxed(&w.executed), fc_size_load_relaxed(&w.steals),
                       fc_size_load_relaxed(&w.parks)) for w in self.workers]
        with self._spare_lock:
            executed, steals, parks = self.spare_executed, self.spare_steals, self.spare_parks
            for w in self._spare_workers:
                # relaxed: as above.
                executed += fc_size_load_relaxed(&w.executed)
                steals += fc_size_load_relaxed(&w.steals)
                parks += fc_size_load_relaxed(&w.parks)
        with nogil:
            fc_mutex_lock(&self.sleep.mutex)
            spares, blocked = self.sleep.spares, self.sleep.blocked
            fc_mutex_unlock(&self.sleep.mutex)
        return (per_worker, latch_count(&self.pending), (executed, steals, parks),
                spares, blocked)

    @property
    def max_workers(self):
        return self.nworkers


class WorkStealingPool(PoolExecutor):
    __doc__ = PoolExecutor.__doc__
    _core_type = _PoolCore
