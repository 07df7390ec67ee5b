# cython: language_level=3, freethreading_compatible=True, autotestdict=False, binding=False
# cython: auto_pickle=False
"""The compiled pool's tasks (layout and ownership token: _pool_task_c.pxd).

A task's owner (the worker that popped it, or a waiter running it as its
dependency) asks start() whether it is to run, counts it executed, then
calls call(); neither raises for the task's own errors: a future task hands
them to its future, an execute() task to the pool's error handler (while
the error is being handled, so the handler sees it in sys.exc_info()).
When either raises, the wrapper itself failed (the pool core's _rescue
settles the future).
"""
cimport cython

from fastconc._support.atomic cimport fc_uptr_init

from fastconc._support.executor import report_error
from fastconc._support.futures import abandon_future


@cython.no_gc
cdef class _Task:
    """A queued unit of work."""

    cdef bint start(self) except -1:
        """Whether the owner runs it (a cancelled future's task is not run)."""
        return True

    cdef int call(self, object error_handler) except -1:
        """Run it; an execute() task's error goes to error_handler."""
        raise NotImplementedError

    cdef void abandon(self, object error) noexcept:
        """The pool closed before this task ran (error None: cancelled)."""
        pass


@cython.no_gc
cdef class _Call(_Task):
    """execute(fn, *args, **kwargs) with arguments (a bare callable is queued
    as itself)."""

    cdef int call(self, object error_handler) except -1:
        try:
            if self.kwargs:
                self.fn(*self.args, **self.kwargs)
            else:
                self.fn(*self.args)
        except BaseException as exc:
            report_error(error_handler, exc)
        return 0


@cython.no_gc
cdef class _FutureTask(_Task):
    """A task that settles a PoolFuture.  Its owner claims the future
    (PENDING -> RUNNING under its lock, PoolFuture._claim) before running
    the call."""

    cdef bint start(self) except -1:
        return self.future._claim()

    cdef void abandon(self, object error) noexcept:
        abandon_future(self.future, error)


@cython.no_gc
cdef class _FutureCall(_FutureTask):
    """submit(): the result or exception goes to the future."""

    cdef int call(self, object error_handler) except -1:
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

    cdef int call(self, object error_handler) except -1:
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


cdef _Task call_task(object fn, tuple args, dict kwargs):
    cdef _Call call = _Call.__new__(_Call)
    call.fn = fn
    call.args = args
    call.kwargs = kwargs
    return call


cdef _FutureTask future_call_task(object future, object fn, tuple args, dict kwargs):
    cdef _FutureCall call = _FutureCall.__new__(_FutureCall)
    call.future = future
    call.fn = fn
    call.args = args
    call.kwargs = kwargs
    # Plain initialisation: the task is not shared yet; queueing it
    # publishes this.
    fc_uptr_init(&call.taken, 0)
    return call


cdef _FutureTask batch_task(object future, object fn, list items, bint star):
    cdef _BatchCall call = _BatchCall.__new__(_BatchCall)
    call.future = future
    call.fn = fn
    call.items = items
    call.star = star
    # As in future_call_task.
    fc_uptr_init(&call.taken, 0)
    return call
