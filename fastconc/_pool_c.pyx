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
cimport cython
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport int64_t, uint64_t, uintptr_t

from fastconc._support.atomic cimport (
    fc_fence_seq_cst,
    fc_i64_fetch_add_seq_cst,
    fc_i64_init,
    fc_i64_load_relaxed,
    fc_i64_load_seq_cst,
    fc_size_fetch_add_seq_cst,
    fc_size_fetch_sub_seq_cst,
    fc_size_init,
    fc_size_load_acquire,
    fc_size_load_relaxed,
    fc_size_load_seq_cst,
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
from fastconc._support.deadline cimport FOREVER, deadline_ns
from fastconc._support.sync cimport (
    FC_WAIT_CHECK_SIGNALS,
    fc_cond_broadcast,
    fc_cond_destroy,
    fc_cond_init,
    fc_cond_signal_n,
    fc_cond_wait,
    fc_monotonic_ns,
    fc_mutex_destroy,
    fc_mutex_init,
    fc_mutex_lock,
    fc_mutex_unlock,
    fc_thread_id,
)

import threading

from fastconc._support.executor import PoolExecutor, report_error
from fastconc._support.futures import abandon_future, fresh_error, help_limit, settle_failed
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


# park() outcomes.
cdef enum:
    PARK_FOUND        # *out holds a task
    PARK_WOKEN        # something changed: search again
    PARK_CLOSED       # pool closed and nothing left to do: the worker exits
    PARK_DONE         # the awaited future is done
    PARK_TIMEOUT
    PARK_RETIRE       # a spare with nothing to do is no longer needed: it exits


# ---------------------------------------------------------------- tasks

# Tasks are not tracked by the garbage collector (no_gc): nothing outside
# the pool ever refers to a task, so no reference cycle can run through one,
# and with tens of thousands queued, tracking them made every collection
# slower (measured: a third of submit+result's time went to the collector).
@cython.no_gc
cdef class _Task:
    """A queued unit of work; run() never raises for the task's own errors
    (when it raises, the wrapper itself failed: see _PoolCore._rescue)."""
    cdef object fn
    cdef object future                 # what a failing run() must settle, or None
    # A _FutureTask's token (see _take): 0 until its owner takes it.  Zeroed
    # by tp_alloc and set to 0 again by fc_uptr_init before it is queued.
    cdef fc_atomic_uptr taken

    cdef int run(self, _PoolCore core, _Worker w) except -1:
        """Run it (the caller owns it) and count it executed as it starts."""
        raise NotImplementedError

    cdef void abandon(self, object error) noexcept:
        """The pool closed before this task ran (error None: cancelled)."""
        pass


@cython.no_gc
cdef class _Call(_Task):
    """execute(fn, *args, **kwargs) with arguments (a bare callable is queued
    as itself)."""
    cdef tuple args
    cdef dict kwargs

    cdef int run(self, _PoolCore core, _Worker w) except -1:
        core._count_executed(w)
        try:
            if self.kwargs:
                self.fn(*self.args, **self.kwargs)
            else:
                self.fn(*self.args)
        except BaseException as exc:
            core.report(exc)
        return 0


cdef inline bint _take(_Task task) noexcept nogil:
    """A future task's token: of its queue entry and a waiter that found it
    through future._task (help_until), exactly one takes it, and owns the
    task from then on: it runs or abandons it, settles its future and counts
    it done.  The other finds it taken and drops its reference (a skipped
    queue entry, counted nowhere).  A C-level CAS: it cannot fail half-way."""
    cdef uintptr_t free_ = 0
    # relaxed CAS: it only has to pick one winner, which any RMW does; the
    # task's fields were published to both parties before (by the deque or
    # injector, or by the future's attribute under the GIL / its lock), and
    # what the owner does next is ordered by the future's own lock.
    return fc_uptr_cas_strong_relaxed(&task.taken, &free_, 1)


@cython.no_gc
cdef class _FutureTask(_Task):
    """A task that settles a PoolFuture.  Its owner (see _take) claims the
    future (PENDING -> RUNNING under its lock, PoolFuture._claim) and runs
    the call; a cancelled future's task is not run."""

    cdef int run(self, _PoolCore core, _Worker w) except -1:
        if self.future._claim():
            core._count_executed(w)
            self.call()
        return 0

    cdef int call(self) except -1:
        raise NotImplementedError

    cdef void abandon(self, object error) noexcept:
        abandon_future(self.future, error)


@cython.no_gc
cdef class _FutureCall(_FutureTask):
    """submit(): the result or exception goes to the future."""
    cdef tuple args
    cdef dict kwargs

    cdef int call(self) except -1:
        cdef object future = self.future
        try:
            result = self.fn(*self.args, **self.kwargs) if self.kwargs else self.fn(*self.args)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        return 0


@cython.no_gc
cdef class _BatchCall(_FutureTask):
    """One chunk of map(): the future gets (results, first_exception_or_None);
    the chunk stops at its first failure.  star: items are argument tuples
    (map over several iterables), else single arguments."""
    cdef list items
    cdef bint star

    cdef int call(self) except -1:
        cdef object future = self.future
        cdef list results = []
        cdef object fn = self.fn
        cdef object failure = None
        try:
            if self.star:
                for args in self.items:
                    results.append(fn(*args))
            else:
                for arg in self.items:
                    results.append(fn(arg))
        except BaseException as exc:
            failure = exc
        future.set_result((results, failure))
        return 0


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
        if fc_mutex_init(&self.sleep_mutex) != 0 or fc_mutex_init(&self.join_mutex) != 0:
            raise MemoryError("cannot create mutex")
        fc_cond_init(&self.sleep_cond)
        fc_cond_init(&self.join_cond)
        fc_size_init(&self.sleepers, 0)
        fc_size_init(&self.epoch, 0)
        fc_size_init(&self.join_waiters, 0)
        fc_size_init(&self.closed, 0)
        fc_size_init(&self.cancelling, 0)
        fc_i64_init(&self.pending, 0)
        self.blocked = 0
        self.spares = 0
        self.initialised = True

    def __dealloc__(self):
        if self.initialised:
            fc_cond_destroy(&self.sleep_cond)
            fc_cond_destroy(&self.join_cond)
            fc_mutex_destroy(&self.sleep_mutex)
            fc_mutex_destroy(&self.join_mutex)

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
        # seq_cst: counted before the task is visible, so join() never sees
        # zero while it is queued; the decrement pairs in _task_done().
        fc_i64_fetch_add_seq_cst(&self.pending, 1)
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
        self._wake_one()
        return 0

    def execute(self, fn, tuple args, dict kwargs):
        cdef _Call call
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        if not args and not kwargs and not isinstance(fn, _Task):
            self._push(fn)
            return
        call = _Call.__new__(_Call)
        call.fn = fn
        call.args = args
        call.kwargs = kwargs
        self._push(call)

    def submit(self, future, fn, tuple args, dict kwargs):
        cdef _FutureCall call
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        call = _FutureCall.__new__(_FutureCall)
        call.future = future
        call.fn = fn
        call.args = args
        call.kwargs = kwargs
        self._push_future_task(future, call)

    def submit_batch(self, future, fn, list items, bint star):
        cdef _BatchCall call = _BatchCall.__new__(_BatchCall)
        call.future = future
        call.fn = fn
        call.items = items
        call.star = star
        self._push_future_task(future, call)

    cdef int _push_future_task(self, object future, object call) except -1:
        # Plain initialisation: the task is not shared yet; queueing it
        # publishes this.
        fc_uptr_init(&(<_Task>call).taken, 0)
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

    # ------------------------------------------------------------ waking

    cdef void _wake_one(self) noexcept nogil:
        """After publishing a task: wake one parked worker, if any."""
        # seq_cst fence between the publication (deque bottom or injector)
        # and the read of sleepers; park() has the matching order (sleepers
        # increment, then the re-check).  One of the two sees the other, so
        # a worker never sleeps through a task (rayon's sleep protocol: a
        # publisher that sees no sleeper knows every would-be sleeper will
        # see its job).
        fc_fence_seq_cst()
        # relaxed: ordered by the fence above.
        if fc_size_load_relaxed(&self.sleepers) == 0:
            return
        fc_mutex_lock(&self.sleep_mutex)
        # seq_cst: a parker that reads the new epoch must also see the task
        # published before it (the RMW is a release, park's load an acquire).
        fc_size_fetch_add_seq_cst(&self.epoch, 1)
        fc_mutex_unlock(&self.sleep_mutex)
        fc_cond_signal_n(&self.sleep_cond, 1)

    cdef void _wake_all(self) noexcept nogil:
        fc_mutex_lock(&self.sleep_mutex)
        # seq_cst: as in _wake_one.
        fc_size_fetch_add_seq_cst(&self.epoch, 1)
        fc_mutex_unlock(&self.sleep_mutex)
        fc_cond_broadcast(&self.sleep_cond)

    def _future_done(self, future):
        """Done-callback of a future a worker helps on: wake it to return."""
        self._wake_all()

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
                self._wake_one()
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
        if isinstance(task, _FutureTask) and not _take(<_Task>task):
            # A waiter ran it as its dependency: this entry is stale.
            return 0
        try:
            if isinstance(task, _Task):
                if isinstance(task, _FutureTask):
                    (<_Task>task).future._task = None
                (<_Task>task).run(self, w)
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
        (_take).  Its queue entry stays where it is and is skipped when
        popped; the task keeps the one count in pending it got when queued,
        given back once it has run here."""
        if not _take(<_Task>task):
            return
        try:
            (<_Task>task).future._task = None
            (<_Task>task).run(self, w)
        except BaseException as exc:
            self._rescue(w, task, exc, True)
        else:
            self._task_done()

    cdef void _task_done(self) noexcept:
        # seq_cst: the decrement and the read of join_waiters form a Dekker
        # pair with join()'s increment of join_waiters and read of pending.
        if fc_i64_fetch_add_seq_cst(&self.pending, -1) == 1:
            if fc_size_load_seq_cst(&self.join_waiters):
                fc_mutex_lock(&self.join_mutex)
                fc_mutex_unlock(&self.join_mutex)
                fc_cond_broadcast(&self.join_cond)

    cdef int _park(self, _Worker w, int64_t deadline, object future, PyObject **out) except -1:
        """Sleep until there may be work (or the future is done, or the pool
        closed).  The protocol, after rayon's: announce (sleepers += 1), read
        the epoch, look everywhere once more, and only then sleep until the
        epoch moves.  A publisher bumps the epoch whenever it sees a sleeper,
        so a task published after our last look always wakes us."""
        cdef size_t key
        cdef int st = PARK_WOKEN, spin = 1
        cdef int64_t remaining = -1
        cdef bint closed, may_retire
        # seq_cst: pairs with the fence in _wake_one (see there).
        fc_size_fetch_add_seq_cst(&self.sleepers, 1)
        # seq_cst: reading a bumped epoch makes its task visible to the look below.
        key = fc_size_load_seq_cst(&self.epoch)
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
                fc_mutex_lock(&self.sleep_mutex)
                # seq_cst: see _wake_one; the mutex orders it with the bump.
                while fc_size_load_seq_cst(&self.epoch) == key:
                    # Only while the epoch is unchanged: nothing was published
                    # since our look, so retiring loses no wake-up (a later
                    # publisher's signal goes to a thread really waiting).
                    if may_retire and self.spares > self.blocked:
                        self.spares -= 1
                        st = PARK_RETIRE
                        break
                    if deadline != FOREVER:
                        remaining = deadline - fc_monotonic_ns()
                        if remaining <= 0:
                            st = PARK_TIMEOUT
                            break
                    # Signals are the main thread's business; workers just wait again.
                    fc_cond_wait(&self.sleep_cond, &self.sleep_mutex, remaining, spin)
                    spin = 0
                fc_mutex_unlock(&self.sleep_mutex)
            return st
        finally:
            # seq_cst: as the increment.
            fc_size_fetch_sub_seq_cst(&self.sleepers, 1)

    def run(self, Py_ssize_t index):
        """The worker loop of thread `index`; returns once the pool is closed
        and no work is left."""
        global fc_current_worker
        cdef _Worker w
        cdef PyObject *x
        cdef int st
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
            while True:
                if w.unsettled:
                    self._drain(w)
                x = self._find(w)
                if x == NULL:
                    st = self._park(w, FOREVER, None, &x)
                    if st == PARK_CLOSED:
                        return
                    if st != PARK_FOUND:
                        continue
                self._run(w, x)
        finally:
            fc_current_worker = NULL

    def run_spare(self):
        """The loop of a spare thread (its slot reserved by begin_block):
        like run(), but it retires once there are more spares than blocked
        threads and it has nothing to do."""
        global fc_current_worker
        cdef _Worker w
        cdef PyObject *x
        cdef int st
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
            while True:
                if w.unsettled:
                    self._drain(w)
                x = self._find(w)
                if x == NULL:
                    st = self._park(w, FOREVER, None, &x)
                    if st == PARK_RETIRE:
                        retired = True
                        return
                    if st == PARK_CLOSED:
                        return
                    if st != PARK_FOUND:
                        continue
                self._run(w, x)
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
        reserved here) so that max_workers threads stay unblocked.  Parked
        threads are woken to look again: the blocked thread's deque is
        theirs now."""
        cdef bint spawn
        with nogil:
            fc_mutex_lock(&self.sleep_mutex)
            self.blocked += 1
            spawn = self.spares < self.blocked and self.spares < self.max_spares
            if spawn:
                self.spares += 1
            fc_mutex_unlock(&self.sleep_mutex)
            self._wake_all()
        return spawn

    def end_block(self):
        cdef bint surplus
        with nogil:
            fc_mutex_lock(&self.sleep_mutex)
            self.blocked -= 1
            surplus = self.spares > self.blocked
            fc_mutex_unlock(&self.sleep_mutex)
            if surplus:
                # Idle spares look again, and retire (see _park).
                self._wake_all()

    def release_spare(self):
        """A spare slot given back: its thread could not start, or it exits
        for another reason than retiring (the pool closed)."""
        with nogil:
            fc_mutex_lock(&self.sleep_mutex)
            self.spares -= 1
            fc_mutex_unlock(&self.sleep_mutex)

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
                self._wake_one()
        return True

    # ------------------------------------------------------------ errors

    cdef void report(self, object exc) noexcept:
        """An exception from an execute() task (see report_error)."""
        report_error(self.error_handler, exc)

    # ------------------------------------------------------------ join / close

    def join(self, timeout):
        """Wait until no task is queued or running; False on timeout."""
        cdef int64_t deadline = deadline_ns(timeout)
        cdef int64_t remaining = -1
        cdef int r = 0, spin = 1
        cdef bint idle = False
        if self._current() is not None:
            raise Deadlock("join() from a worker of the same pool would wait for itself")
        # seq_cst: see _task_done.
        if fc_i64_load_seq_cst(&self.pending) == 0:
            return True
        fc_size_fetch_add_seq_cst(&self.join_waiters, 1)
        try:
            while True:
                with nogil:
                    fc_mutex_lock(&self.join_mutex)
                    while True:
                        # seq_cst: see _task_done.
                        if fc_i64_load_seq_cst(&self.pending) == 0:
                            idle = True
                            break
                        if deadline != FOREVER:
                            remaining = deadline - fc_monotonic_ns()
                            if remaining <= 0:
                                break
                        r = fc_cond_wait(&self.join_cond, &self.join_mutex, remaining, spin)
                        spin = 0
                        if r == FC_WAIT_CHECK_SIGNALS:
                            break
                    fc_mutex_unlock(&self.join_mutex)
                if r == FC_WAIT_CHECK_SIGNALS and not idle:
                    # Lets a Ctrl-C in the main thread interrupt join().
                    PyErr_CheckSignals()
                    r = 0
                    continue
                return idle
        finally:
            fc_size_fetch_sub_seq_cst(&self.join_waiters, 1)

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
        self._wake_all()

    cdef void _abandon(self, PyObject *x, object error) noexcept:
        cdef object task = steal_ref(x)
        if isinstance(task, _FutureTask):
            if not _take(<_Task>task):
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
            fc_mutex_lock(&self.sleep_mutex)
            spares, blocked = self.spares, self.blocked
            fc_mutex_unlock(&self.sleep_mutex)
        return (per_worker, fc_i64_load_relaxed(&self.pending), (executed, steals, parks),
                spares, blocked)

    @property
    def max_workers(self):
        return self.nworkers


class WorkStealingPool(PoolExecutor):
    __doc__ = PoolExecutor.__doc__
    _core_type = _PoolCore
