"""The :class:`concurrent.futures.Executor` surface of WorkStealingPool,
written once for both backends.

A backend supplies the core (``_pool_c._PoolCore`` or ``_pool_py._PoolCore``):
the workers' deques, the injector, parking and the task loop.  This module
turns a core into an Executor that keeps ThreadPoolExecutor's promises
(futures, map's ordering and timeout, shutdown, initializer, interpreter
exit), so code can swap one for the other.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from concurrent.futures import _base as _futures_base
from concurrent.futures.thread import BrokenThreadPool
from typing import Any, NamedTuple, TypeVar

from fastconc._support.args import MAX_THREADS
from fastconc._support.core import PoolCore
from fastconc._support.futures import PoolFuture
from fastconc._support.report import report_uncaught, unraisable
from fastconc._support.spares import MAX_SPARES
from fastconc.errors import PoolClosed

__all__ = ["PoolExecutor", "PoolStats", "WorkerStats", "report_error"]

T = TypeVar("T")

# Largest chunk map() picks by itself: big enough to amortise a task,
# small enough that the first results stream out early.
_MAX_AUTO_CHUNK = 1024


class WorkerStats(NamedTuple):
    """Counters of one worker thread."""

    name: str
    executed: int  # tasks run, each once, counted as it starts (helping included)
    steals: int  # tasks taken from another worker's deque
    parks: int  # times it went to sleep for lack of work


class PoolStats(NamedTuple):
    """A snapshot of :meth:`WorkStealingPool.stats`.

    ``executed``, ``steals`` and ``parks`` are the workers' sums plus what
    spare threads did.  ``pending`` counts each submitted task once until it
    has finished (its future settled): queued, or running, wherever it runs.
    A task a waiter ran inline as its dependency leaves a skipped entry in
    a queue, which ``pending`` does not count.  ``spares``: spare threads
    alive now; ``blocked``: pool threads blocked on a future (see
    compensation in the class docstring)."""

    workers: tuple[WorkerStats, ...]
    executed: int
    steals: int
    parks: int
    pending: int  # tasks queued or running, each counted once
    spares: int = 0  # spare threads alive now
    blocked: int = 0  # pool threads blocked waiting on a future


# ---------------------------------------------------------------- shared by both cores
# (slow paths only: errors, cancellation)

def report_error(handler: Callable[[BaseException], object] | None, exc: BaseException) -> None:
    """An exception from an execute() task: to the pool's error handler, or
    reported as threading.excepthook reports an uncaught thread exception.
    Never raises: a task's failure must not stop its worker."""
    try:
        if handler is not None:
            try:
                handler(exc)
                return
            except BaseException as handler_exc:
                exc = handler_exc
        report_uncaught(exc)
    except BaseException as last:
        unraisable(last, "reporting a WorkStealingPool task error")


def _join_threads(pool: PoolExecutor) -> None:
    """Wait for every worker and spare thread of pool to exit (but this
    thread).  Spares are joined until none is left: a spare is only ever
    started by a live pool thread, so one started meanwhile is seen by a
    later round."""
    me = threading.current_thread()
    for t in pool._threads:
        if t is not me:
            t.join()
    spares = pool._core.spare_threads
    while True:
        left = [t for t in list(spares) if t is not me and t.ident is not None and t.is_alive()]
        if not left:
            return
        for t in left:
            t.join()


# Pools still running, closed at interpreter exit before threading joins the
# (non-daemon) worker threads, as concurrent.futures.thread does.
_live: weakref.WeakSet[PoolExecutor] = weakref.WeakSet()
_exiting = False


# Guards _live and _exiting: a pool created on another thread while the
# interpreter exits is either seen by _python_exit or refused.
_global_lock = threading.Lock()


def _python_exit() -> None:
    global _exiting
    with _global_lock:
        _exiting = True
        pools = list(_live)
    for pool in pools:
        pool._core.close(PoolClosed("cannot schedule new futures after interpreter shutdown"),
                         False)
    for pool in pools:
        _join_threads(pool)


threading._register_atexit(_python_exit)  # type: ignore[attr-defined]


class _ForkedCore:
    """What a pool's core becomes in a child process after ``os.fork()``:
    the workers do not exist there, and the real core's locks may have been
    held by a thread that does not exist either, so every use is refused
    with a clear error instead of waiting forever."""

    def __init__(self, nworkers: int) -> None:
        self._nworkers = nworkers
        # The spare threads of the parent do not exist here either.
        self.spare_threads: set[threading.Thread] = set()
        self.thread_prefix = ""

    def _refuse(self, *args: Any) -> Any:
        raise PoolClosed("this pool was created before os.fork(): its workers do not exist "
                         "in the child process; create a new pool there")

    execute = submit = submit_batch = help_until = join = run = run_spare = _refuse

    def begin_block(self) -> bool:
        return False

    def end_block(self) -> None:
        pass

    def release_spare(self) -> None:
        pass

    def owns_current_thread(self) -> bool:
        return False

    def close(self, error: BaseException, cancel_futures: bool,
              *args: Any) -> None:
        pass

    def stats(self) -> tuple[list[tuple[int, int, int]], int, tuple[int, int, int], int, int]:
        return [(0, 0, 0)] * self._nworkers, 0, (0, 0, 0), 0, 0


def _after_fork_in_child() -> None:
    global _global_lock
    # Held by another thread at the fork, it would never be released here.
    _global_lock = threading.Lock()
    for pool in list(_live):
        pool._core = _ForkedCore(len(pool._threads))  # type: ignore[assignment]
        pool._shutdown_lock = type(pool._shutdown_lock)()
        pool._shutdown = True
    _live.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _default_workers() -> int:
    count = getattr(os, "process_cpu_count", None)
    if count is not None:
        return count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _worker(core: PoolCore, index: int, initializer: Callable[..., object] | None,
            initargs: tuple[Any, ...]) -> None:
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException:
            _futures_base.LOGGER.critical("Exception in initializer:", exc_info=True)
            broken = BrokenThreadPool(
                "A thread initializer failed, the thread pool is not usable anymore")
            core.close(broken, True, broken)
            return
    core.run(index)


class PoolExecutor(Executor):
    """A work-stealing thread pool; a drop-in :class:`concurrent.futures.Executor`.

    ``WorkStealingPool(max_workers=None, *, thread_name_prefix="",
    initializer=None, initargs=(), error_handler=None)``

    Each worker thread owns a Chase-Lev deque.  Work submitted from outside
    goes to a shared injector queue; work submitted by a task goes to its own
    worker's deque.  An idle worker pops its deque, then takes a batch from
    the injector, then steals from another worker, then sleeps (no CPU use)
    until work arrives.

    * ``submit``/``map``/``shutdown``/``with`` behave as in
      :class:`~concurrent.futures.ThreadPoolExecutor`; futures are real
      :class:`~concurrent.futures.Future` objects.
    * A worker that waits on a future of its own pool (``result()`` or
      ``exception()``) runs other queued tasks meanwhile, so recursive
      fork-join completes with any number of workers: first the awaited
      future's own task if it is still queued, then unrelated tasks, nested
      on its stack, but at most ``help_limit()`` (32 with the default
      recursion limit) levels deep.
    * Past that depth the worker blocks, and the pool *compensates*, as
      Java's ForkJoinPool does: it starts a spare thread (named
      ``<prefix>_spare<N>``) so that ``max_workers`` threads keep running
      tasks.  A spare takes work from the shared queue and steals from the
      workers; it retires once idle when no longer needed.  At most
      ``MAX_SPARES`` (256) spares run at once; beyond that, a worker that
      must wait simply blocks.  ``shutdown(wait=True)`` joins the spares
      too.  Only ``result()``/``exception()`` on this pool's own futures
      are compensated (not ``threading`` waits, ``concurrent.futures.wait``
      or ``as_completed``).
    * ``execute(fn, *args, **kwargs)``: fire-and-forget, no Future; its
      exceptions go to ``error_handler(exc)`` (default: reported like
      :func:`threading.excepthook`) and never stop a worker.
    * ``join(timeout=None)``: wait until no task is queued or running.
    * ``map(..., chunksize=None)`` runs items in chunks (picked from the
      number of items and workers when not given).
    * ``stats()``: tasks executed, steals and parks, per worker and in all
      (spares included), tasks pending (each submitted task counted once
      until its future settled), spare threads alive, threads blocked.

    ``max_workers`` defaults to the number of CPUs this process may use (at
    most 4096: every worker is a thread started at construction).
    Workers are ordinary :class:`threading.Thread` objects, started at
    construction; the initializer runs in each before its first task, and if
    it raises, the pool becomes broken (:class:`BrokenThreadPool`), as with
    ThreadPoolExecutor: queued futures fail with it, and each queued
    ``execute()`` task is reported to ``error_handler`` with it.
    """

    _core_type: Callable[..., PoolCore]
    _counter = itertools.count().__next__
    # Bound on spare threads (see MAX_SPARES); a subclass may lower it.
    _max_spares = MAX_SPARES

    def __init__(self, max_workers: int | None = None, *, thread_name_prefix: str = "",
                 initializer: Callable[..., object] | None = None,
                 initargs: tuple[Any, ...] = (),
                 error_handler: Callable[[BaseException], object] | None = None) -> None:
        if max_workers is None:
            max_workers = _default_workers()
        elif isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise TypeError(f"max_workers must be an int or None, not {type(max_workers).__name__}")
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if max_workers > MAX_THREADS:
            raise ValueError(f"max_workers must be <= {MAX_THREADS} (each is a thread started "
                             f"now), got {max_workers}")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if error_handler is not None and not callable(error_handler):
            raise TypeError("error_handler must be a callable or None")
        if not isinstance(thread_name_prefix, str):
            raise TypeError("thread_name_prefix must be a str")
        initargs = tuple(initargs)
        self._core = self._core_type(max_workers, error_handler, self._max_spares)
        self._shutdown_lock = threading.Lock()
        self._shutdown = False
        prefix = thread_name_prefix or f"WorkStealingPool-{self._counter()}"
        self._core.thread_prefix = prefix
        self._threads = tuple(
            threading.Thread(target=_worker, name=f"{prefix}_{i}",
                             args=(self._core, i, initializer, initargs))
            for i in range(max_workers))
        try:
            with _global_lock:
                if _exiting:
                    raise RuntimeError("cannot create a pool after interpreter shutdown started")
                for t in self._threads:
                    t.start()
                _live.add(self)
        except BaseException:
            # e.g. "can't start new thread": leave no half-built pool running.
            self._core.close(PoolClosed("the pool failed to start"), True)
            for t in self._threads:
                if t.ident is not None:
                    t.join()
            raise
        # A pool dropped without shutdown() still lets its workers finish
        # and exit: they hold only the core, never the pool.
        weakref.finalize(self, self._core.close,
                         PoolClosed("cannot schedule new futures after shutdown"), False)

    @property
    def max_workers(self) -> int:
        """Number of worker threads."""
        return len(self._threads)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``; returns its Future."""
        future: PoolFuture[T] = PoolFuture(self._core)
        self._core.submit(future, fn, args, kwargs)
        return future

    def is_worker_thread(self) -> bool:
        """True when called from one of this pool's worker threads."""
        return self._core.owns_current_thread()

    def create_future(self) -> Future[Any]:
        """A pending Future bound to this pool, for the caller to complete
        (``set_result``/``set_exception``): a worker of this pool that waits
        on it runs other queued tasks meanwhile, as with submit()'s futures."""
        return PoolFuture(self._core)

    def execute(self, fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> None:
        """Schedule ``fn(*args, **kwargs)`` without a Future (cheaper).  Its
        exceptions go to the pool's error handler."""
        self._core.execute(fn, args, kwargs)

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int | None = None) -> Iterator[T]:
        """Like :meth:`Executor.map`: results in input order, ``timeout``
        counted from this call, the iterables read at once.  Items run in
        chunks of ``chunksize`` (default: chosen from the item and worker
        counts); the iterator raises the first exception at its position."""
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        if chunksize is not None:
            if isinstance(chunksize, bool) or not isinstance(chunksize, int):
                raise TypeError(f"chunksize must be an int or None, not {type(chunksize).__name__}")
            if chunksize < 1:
                raise ValueError("chunksize must be >= 1")
        end_time = None if timeout is None else timeout + time.monotonic()
        # One iterable (the usual case): call fn(x), no argument tuples.
        star = len(iterables) != 1
        items: list[Any] = (list(zip(*iterables, strict=False)) if star  # shortest wins
                            else list(iterables[0]))
        size = chunksize or max(1, min(_MAX_AUTO_CHUNK, len(items) // (4 * self.max_workers)))
        futures: list[PoolFuture[tuple[list[T], BaseException | None]]] = []
        try:
            for start in range(0, len(items), size):
                future: PoolFuture[tuple[list[T], BaseException | None]] = PoolFuture(self._core)
                self._core.submit_batch(future, fn, items[start:start + size], star)
                futures.append(future)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return self._results(futures, end_time)

    @staticmethod
    def _results(futures: list[PoolFuture[tuple[list[T], BaseException | None]]],
                 end_time: float | None) -> Iterator[T]:
        # Yielding from a separate generator keeps map() eager, as Executor.map is.
        # Nothing here keeps a result once yielded (bpo-14406): the futures and
        # each chunk's list are popped, and a chunk future forgets its result
        # (these futures never leave map(), so nobody else reads it).
        futures.reverse()
        try:
            while futures:
                future = futures.pop()
                try:
                    if end_time is None:
                        values, failure = future.result()
                    else:
                        values, failure = future.result(end_time - time.monotonic())
                    future._result = None
                finally:
                    future.cancel()
                    del future
                values.reverse()
                while values:
                    yield values.pop()
                if failure is not None:
                    try:
                        raise failure
                    finally:
                        failure = None
        finally:
            for future in futures:
                future.cancel()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every task queued so far (and any queued meanwhile) has
        finished.  True when the pool went idle, False on timeout.  Raises
        :class:`fastconc.Deadlock` from one of the pool's own workers."""
        return self._core.join(timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no new work.  Queued tasks still run unless ``cancel_futures``
        (their futures are cancelled, their execute() calls dropped).
        ``wait``: return once every worker thread has exited."""
        with self._shutdown_lock:
            self._shutdown = True
            self._core.close(PoolClosed("cannot schedule new futures after shutdown"),
                             cancel_futures)
        if wait:
            _join_threads(self)

    def stats(self) -> PoolStats:
        """Per-worker counters, totals (spare threads included), the number
        of tasks queued or running, and the spare and blocked thread counts."""
        per_worker, pending, (executed, steals, parks), spares, blocked = self._core.stats()
        workers = tuple(WorkerStats(t.name, *counts)
                        for t, counts in zip(self._threads, per_worker, strict=True))
        return PoolStats(workers, executed + sum(w.executed for w in workers),
                         steals + sum(w.steals for w in workers),
                         parks + sum(w.parks for w in workers), pending, spares, blocked)

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else "running"
        return f"<{type(self).__name__} max_workers={self.max_workers} {state}>"
