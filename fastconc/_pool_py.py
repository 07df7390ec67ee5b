"""Pure-Python backend of WorkStealingPool.

Same structure as the compiled core (fastconc/_pool_c.pyx): one deque per
worker, an injector for outside submissions, idle workers asleep on a
condition variable.  ``collections.deque`` supplies the deques: its append,
pop and popleft are atomic (under the GIL, and under the deque's own lock on
free-threaded builds), which is all a work-stealing deque needs here.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar, cast

from fastconc._support.core import CoreFuture
from fastconc._support.executor import PoolExecutor, report_error
from fastconc._support.futures import (
    abandon_future,
    fresh_error,
    help_limit,
    settle_failed,
)
from fastconc._support.spares import MAX_SPARES
from fastconc._support.waits import deadline as _deadline
from fastconc._support.waits import wait as _wait
from fastconc.errors import Deadlock

__all__ = ["WorkStealingPool"]

T = TypeVar("T")

# Most tasks a worker moves from the injector at once (see _pool_c.pyx).
_INJECTOR_BATCH = 32


class _Task:
    __slots__ = ("fn",)
    future: Future[Any] | None = None  # the future a failure of run() must settle

    def run(self, core: _PoolCore, worker: _Worker) -> None:
        """Run (the caller owns the task: see _take) and count it in
        worker.executed as it starts."""
        raise NotImplementedError

    def abandon(self, error: BaseException | None) -> None:
        """The pool closed before this task ran (error None: cancelled)."""


class _Call(_Task):
    __slots__ = ("args", "kwargs")

    def __init__(self, fn: Callable[..., object], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    def run(self, core: _PoolCore, worker: _Worker) -> None:
        worker.executed += 1
        try:
            self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            core.report(exc)


class _FutureTask(_Task):
    __slots__ = ("future",)
    future: Future[Any]

    def run(self, core: _PoolCore, worker: _Worker) -> None:
        # The caller took the task's token (_take); the claim is the
        # future's PENDING -> RUNNING step (a cancelled future: not run).
        if self.future._claim():  # type: ignore[attr-defined]
            worker.executed += 1
            self.call()

    def call(self) -> None:
        raise NotImplementedError

    def abandon(self, error: BaseException | None) -> None:
        abandon_future(self.future, error)


class _FutureCall(_FutureTask):
    __slots__ = ("args", "kwargs")

    def __init__(self, future: Future[Any], fn: Callable[..., object], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    def call(self) -> None:
        future = self.future
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)


class _BatchCall(_FutureTask):
    __slots__ = ("items", "star")

    def __init__(self, future: Future[Any], fn: Callable[..., object], items: list[Any],
                 star: bool) -> None:
        self.future = future
        self.fn = fn
        self.items = items
        self.star = star

    def call(self) -> None:
        future = self.future
        fn = self.fn
        results: list[object] = []
        failure: BaseException | None = None
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


def _take(task: _FutureTask) -> bool:
    """The task's token: of its queued entry and a waiter that found it
    through future._task (help_until), exactly one takes it, and owns the
    task from then on: it runs or abandons it, settles its future, counts it
    done.  The other finds it taken and leaves it alone (a skipped queue
    entry, counted nowhere).  One dict.pop: atomic under the GIL and under
    the dict's own lock on free-threaded builds, and it allocates nothing,
    so it cannot fail half-way; it also drops the future -> task link."""
    return task.future.__dict__.pop("_task", None) is task


class _Worker:
    __slots__ = ("deque", "depth", "executed", "index", "parks", "rng", "spare", "steals",
                 "unsettled")

    def __init__(self, index: int, spare: bool = False) -> None:
        self.index = index
        # A spare thread (compensation for a blocked worker): no deque of its
        # own (its submissions go to the injector), takes from the injector
        # and steals, and retires when no longer needed.
        self.spare = spare
        self.deque: deque[object] = deque()
        # Its own generator: the random module's shared one belongs to the
        # application (a seeded sequence must not shift because a pool
        # stole a task).
        self.rng = random.Random()
        self.executed = 0
        self.steals = 0
        self.parks = 0
        # help_until frames on this thread's stack that run unrelated tasks.
        self.depth = 0
        # (future or None, error, owes a _task_done) the task wrapper's error
        # path could not settle where it failed (e.g. a RecursionError too
        # deep in the stack): settled by _drain from a shallower frame.
        self.unsettled: list[tuple[Future[Any] | None, BaseException | None, bool]] = []


class _PoolCore:
    """Deques, injector, parking and the task loop of one WorkStealingPool."""

    def __init__(self, nworkers: int,
                 error_handler: Callable[[BaseException], object] | None,
                 max_spares: int = MAX_SPARES) -> None:
        self.workers = tuple(_Worker(i) for i in range(nworkers))
        self.max_workers = nworkers
        self.error_handler = error_handler
        # Set by close(cancel_futures=True): tasks taken but not started are
        # cancelled too (one plain attribute: a stale False only lets a task
        # start that was taken before the close, as with a queued one).
        self._cancelling = False
        self._cancel_with: BaseException | None = None
        # One lock guards the injector, closing and parking: a submitter
        # that finds a sleeper notifies under the lock the sleeper re-checked
        # the queues under, so no wake-up is lost.
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._injector: deque[object] = deque()
        self._sleepers = 0
        self._closed = False
        self._closed_error: BaseException | None = None
        # join(): tasks queued or running.
        self._idle = threading.Condition(threading.Lock())
        self._pending = 0
        self._local = threading.local()
        # Compensation, under _lock: pool threads blocked on a future
        # (begin_block .. end_block) and spare threads alive (or reserved).
        # begin_block starts a spare while spares < blocked; an idle spare
        # retires while spares > blocked.
        self.max_spares = max_spares
        self._blocked = 0
        self._spares = 0
        self.spare_threads: set[threading.Thread] = set()
        self.thread_prefix = ""
        # Statistics of spare threads: live ones, and the sums of retired ones
        # (under _lock).
        self._spare_workers: set[_Worker] = set()
        self._spare_totals = (0, 0, 0)

    # ---------------------------------------------------------------- submitting

    def _current(self) -> _Worker | None:
        worker: _Worker | None = getattr(self._local, "worker", None)
        return worker

    def _push(self, task: object) -> None:
        with self._idle:
            self._pending += 1
        worker = self._current()
        if worker is not None and not worker.spare:
            if self._closed:
                self._task_done()
                raise fresh_error(self._closed_error)  # type: ignore[arg-type]
            worker.deque.append(task)
            # Unlocked read: the append above is ordered before it, and a
            # worker going to sleep counts itself before it re-checks the
            # deques (under the lock we notify under).
            if self._sleepers:
                with self._lock:
                    self._wakeup.notify()
            return
        with self._lock:
            if self._closed:
                closed_error = self._closed_error
            else:
                closed_error = None
                self._injector.append(task)
                if self._sleepers:
                    self._wakeup.notify()
        if closed_error is not None:
            self._task_done()
            raise fresh_error(closed_error)

    def execute(self, fn: Callable[..., object], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        if not args and not kwargs and not isinstance(fn, _Task):
            self._push(fn)
        else:
            self._push(_Call(fn, args, kwargs))

    def submit(self, future: Future[Any], fn: Callable[..., object], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        self._push_future_task(future, _FutureCall(future, fn, args, kwargs))

    def submit_batch(self, future: Future[Any], fn: Callable[..., object], items: list[Any],
                     star: bool) -> None:
        self._push_future_task(future, _BatchCall(future, fn, items, star))

    def _push_future_task(self, future: Future[Any], task: _FutureTask) -> None:
        # The link a waiter follows to run this task as its dependency
        # (help_until); PoolFuture._claim clears it.
        future._task = task  # type: ignore[attr-defined]
        try:
            self._push(task)
        except BaseException:
            future._task = None  # type: ignore[attr-defined]
            raise

    def _future_done(self, future: Future[Any]) -> None:
        with self._lock:
            self._wakeup.notify_all()

    # ---------------------------------------------------------------- running

    def _find(self, worker: _Worker) -> object | None:
        """A task for worker: its own deque (LIFO), then a batch from the
        injector, then one stolen from a random victim (FIFO end)."""
        try:
            return worker.deque.pop()
        except IndexError:
            pass
        if self._injector:
            with self._lock:
                task = self._take_batch(worker)
            if task is not None:
                return task
        return self._steal(worker)

    def _take_batch(self, worker: _Worker) -> object | None:
        """Lock held.  Run the first, leave the rest where thieves find them."""
        injector = self._injector
        if not injector:
            return None
        if worker.spare:
            # No deque to leave the rest in (nobody steals from a spare).
            return injector.popleft()
        batch = [injector.popleft() for _ in range(min(_INJECTOR_BATCH, len(injector)))]
        worker.deque.extend(reversed(batch[1:]))  # LIFO pops keep submission order
        if len(batch) > 1 and self._sleepers:
            self._wakeup.notify()
        return batch[0]

    def _steal(self, worker: _Worker) -> object | None:
        workers = self.workers
        n = len(workers)
        if n > 1 or worker.spare:
            start = worker.rng.randrange(n)
            for i in range(n):
                victim = workers[(start + i) % n]
                if victim is worker:
                    continue
                try:
                    task = victim.deque.popleft()
                except IndexError:
                    continue
                worker.steals += 1
                return task
        return None

    def _run(self, worker: _Worker, task: object) -> None:
        if self._cancelling:
            # shutdown(cancel_futures=True) came after this task left the
            # queues (in a batch in this worker's hands): not started, so it
            # is cancelled like those still queued.
            self._abandon(task, self._cancel_with)
            return
        if isinstance(task, _FutureTask) and not _take(task):
            # A waiter ran it as its dependency: this entry is stale.
            return
        try:
            if isinstance(task, _Task):
                task.run(self, worker)
            else:
                worker.executed += 1
                task()  # type: ignore[operator]
        except BaseException as exc:
            # The task's own errors never get here (run() gives them to its
            # future or the error handler): this is the wrapper failing.
            self._rescue(worker, task, exc, True)
        else:
            try:
                self._task_done()
            except BaseException:
                worker.unsettled.append((None, None, True))
        del task

    def _rescue(self, worker: _Worker, task: object, exc: BaseException,
                owes_done: bool) -> None:
        """The wrapper of task raised exc: settle its future with exc (unless
        settled already) and report exc; then, if owes_done, count the task
        done.  What cannot be done here is queued for _drain, so join()
        never reports idle while a future is unsettled."""
        future = task.future if isinstance(task, _Task) else None
        try:
            if future is not None:
                settle_failed(future, exc)
            self.report(exc)
            if owes_done:
                self._task_done()
        except BaseException:
            worker.unsettled.append((future, exc, owes_done))

    def _drain(self, worker: _Worker) -> None:
        """Finish what _rescue could not (see there); what still fails stays
        queued for the next try (never raises into a task that helps)."""
        unsettled = worker.unsettled
        try:
            while unsettled:
                future, exc, owes_done = unsettled[0]
                if future is not None and exc is not None:
                    settle_failed(future, exc)
                    self.report(exc)
                if owes_done:
                    self._task_done()
                del unsettled[0]
        except BaseException:
            return

    def _task_done(self) -> None:
        with self._idle:
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    def _park(self, worker: _Worker, deadline: float | None,
              future: CoreFuture | None) -> tuple[str, object | None]:
        """Re-check everything under the lock, then sleep on it.  A spare
        with nothing to do retires here ("retire", its slot given back)
        when there are more spares than blocked threads."""
        with self._lock:
            self._sleepers += 1
            try:
                closed = self._closed
                task = self._take_batch(worker)
                if task is None:
                    task = self._steal(worker)
                if task is not None:
                    return "found", task
                if future is not None:
                    if future.done():
                        return "done", None
                elif closed:
                    return "closed", None
                elif worker.spare and self._spares > self._blocked and not worker.unsettled:
                    self._spares -= 1
                    return "retire", None
                worker.parks += 1
                if deadline is None:
                    self._wakeup.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._wakeup.wait(remaining):
                        # A notify() that raced the timeout counted us as
                        # woken: pass it on rather than lose it.
                        if self._sleepers > 1:
                            self._wakeup.notify()
                        return "timeout", None
                return "woken", None
            finally:
                self._sleepers -= 1

    def run(self, index: int) -> None:
        worker = self.workers[index]
        if getattr(self._local, "worker", None) is not None:
            raise RuntimeError("this thread already runs a pool worker")
        self._local.worker = worker
        try:
            while True:
                if worker.unsettled:
                    self._drain(worker)
                task = self._find(worker)
                if task is None:
                    state, task = self._park(worker, None, None)
                    if state == "closed":
                        return
                    if state != "found":
                        continue
                self._run(worker, task)
        finally:
            self._local.worker = None

    def run_spare(self) -> None:
        """The loop of a spare thread (its slot reserved by begin_block):
        like run(), but it retires once there are more spares than blocked
        threads and it has nothing to do."""
        retired = False
        worker: _Worker | None = None
        try:
            # Inside the try: whatever fails here still gives the slot back.
            if getattr(self._local, "worker", None) is not None:
                raise RuntimeError("this thread already runs a pool worker")
            worker = _Worker(-1, spare=True)
            with self._lock:
                self._spare_workers.add(worker)
            self._local.worker = worker
            while True:
                if worker.unsettled:
                    self._drain(worker)
                task = self._find(worker)
                if task is None:
                    state, task = self._park(worker, None, None)
                    if state == "retire":
                        retired = True
                        return
                    if state == "closed":
                        return
                    if state != "found":
                        continue
                self._run(worker, task)
        finally:
            if worker is not None and getattr(self._local, "worker", None) is worker:
                self._local.worker = None
            with self._lock:
                if not retired:
                    self._spares -= 1
                if worker is not None:
                    self._spare_workers.discard(worker)
                    executed, steals, parks = self._spare_totals
                    self._spare_totals = (executed + worker.executed, steals + worker.steals,
                                          parks + worker.parks)

    def begin_block(self) -> bool:
        """This pool thread is about to block on a future: count it blocked,
        and say whether the caller must start a spare thread (slot reserved
        here) so that max_workers threads stay unblocked.  Parked threads
        are woken to look again: the blocked thread's deque is theirs now."""
        with self._lock:
            self._blocked += 1
            spawn = self._spares < self._blocked and self._spares < self.max_spares
            if spawn:
                self._spares += 1
            self._wakeup.notify_all()
        return spawn

    def end_block(self) -> None:
        with self._lock:
            self._blocked -= 1
            if self._spares > self._blocked:
                # Idle spares look again, and retire.
                self._wakeup.notify_all()

    def release_spare(self) -> None:
        """The spare thread begin_block reserved could not start."""
        with self._lock:
            self._spares -= 1

    def owns_current_thread(self) -> bool:
        return self._current() is not None

    def help_until(self, future: CoreFuture, timeout: float | None) -> bool:
        """A worker waits on future: help until it is done or the timeout
        passed (True), or return False at once when the caller must block
        instead (this thread is already help_limit() levels deep).

        First, if future's own task is still queued, claim it and run it
        right here (the dependency: this nests only as deep as the program's
        own recursion).  Then run other queued tasks, nested, but only below
        help_limit() levels of such helping."""
        worker = self._current()
        if worker is None:
            raise RuntimeError("help_until() is for the pool's own workers")
        deadline = _deadline(timeout)
        if worker.unsettled:
            self._drain(worker)
        task = getattr(future, "_task", None)
        # The same object: `future` is typed only as what a core may use of it.
        if isinstance(task, _FutureTask) and task.future is cast("Future[Any]", future):
            self._run_dependency(worker, task)
            if future.done():
                return True
        if worker.depth >= help_limit():
            return False
        watching = False
        worker.depth += 1
        try:
            while not future.done():
                if deadline is not None and time.monotonic() >= deadline:
                    return True
                task = self._find(worker)
                if task is None:
                    if not watching:
                        watching = True
                        future._wake_when_done(self._future_done)
                    state, task = self._park(worker, deadline, future)
                    if state == "timeout":
                        return True
                    if state != "found":
                        continue
                self._run(worker, task)
        finally:
            worker.depth -= 1
            if watching and self._sleepers:
                # Leaving may have swallowed a notify() meant for a new task.
                with self._lock:
                    self._wakeup.notify()
        return True

    def _run_dependency(self, worker: _Worker, task: _FutureTask) -> None:
        """Run the awaited future's queued task inline, if nobody took it
        yet (_take).  Its queue entry stays where it is and is skipped when
        popped; the task keeps the one count in pending it got when queued,
        given back once it has run here."""
        if not _take(task):
            return
        try:
            task.run(self, worker)
        except BaseException as exc:
            self._rescue(worker, task, exc, True)
        else:
            self._task_done()

    def report(self, exc: BaseException) -> None:
        report_error(self.error_handler, exc)

    # ---------------------------------------------------------------- join / close

    def join(self, timeout: float | None) -> bool:
        if self._current() is not None:
            raise Deadlock("join() from a worker of the same pool would wait for itself")
        deadline = _deadline(timeout)
        with self._idle:
            while self._pending:
                if not _wait(self._idle, deadline):
                    return False
            return True

    def close(self, error: BaseException, cancel_futures: bool,
              fail_with: BaseException | None = None) -> None:
        with self._lock:
            if not self._closed:
                self._closed_error = error
                self._closed = True
            drained: list[object] = []
            if cancel_futures:
                drained.extend(self._injector)
                self._injector.clear()
            self._wakeup.notify_all()
        if cancel_futures:
            # Tasks a worker took from the injector in a batch but has not
            # started are in no queue drained here: _run cancels them.
            self._cancel_with = fail_with
            self._cancelling = True
            for worker in self.workers:
                while True:
                    try:
                        drained.append(worker.deque.popleft())
                    except IndexError:
                        break
        for task in drained:
            self._abandon(task, fail_with)

    def _abandon(self, task: object, fail_with: BaseException | None) -> None:
        """A task that will not run: cancel its future (or fail it with
        fail_with) and count it done."""
        if isinstance(task, _FutureTask):
            if not _take(task):
                return  # stale: its owner ran it and counted it done
            task.abandon(fail_with)  # never raises (abandon_future reports its own errors)
        elif fail_with is not None:
            # An execute() task (a _Call or a bare callable) of a broken
            # pool: it has no future to fail, so the error handler hears
            # of it (nothing accepted vanishes unreported);
            # shutdown(cancel_futures=True) drops it quietly.
            self.report(fail_with)
        self._task_done()

    def stats(self) -> tuple[list[tuple[int, int, int]], int, tuple[int, int, int], int, int]:
        with self._lock:
            executed, steals, parks = self._spare_totals
            for w in self._spare_workers:
                executed += w.executed
                steals += w.steals
                parks += w.parks
            spares, blocked = self._spares, self._blocked
        return ([(w.executed, w.steals, w.parks) for w in self.workers], self._pending,
                (executed, steals, parks), spares, blocked)


class WorkStealingPool(PoolExecutor):
    __doc__ = PoolExecutor.__doc__
    _core_type = _PoolCore
