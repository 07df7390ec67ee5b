"""Pipelines: stages of functions connected by bounded Channels.

Written once on the public primitives (Channel, WorkStealingPool), so it runs
on either backend.

Each stage reads its input Channel and writes the next one; every Channel
holds at most ``capacity`` items, so a slow stage holds back the ones before
it and memory stays bounded whatever the input size.  A stage with
``workers=N`` runs N loops.  They take items in batches (a batch is what the
channel holds right now, up to 64, shared out between the loops) to keep the
per-item cost low.

Order: a stage with one loop keeps its input order.  An *ordered* stage with
several loops numbers each batch as it takes it (under a lock, so numbers
follow channel order) and hands its results on strictly in number order:
a loop that finished early waits its turn with its results, so the reorder
buffer is bounded by the number of loops.  Output order equals input order
when every stage is ordered.

With ``executor=`` a stage's calls go to that Executor, one item per
``submit``, at most ``workers`` in flight per stage; the stage's own loops
(one feeding the executor, one collecting results in order) still run on an
internal WorkStealingPool.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

from fastconc import Channel, WorkStealingPool
from fastconc._args import MAX_THREADS, int_arg
from fastconc.errors import ChannelClosed

__all__ = ["Pipeline", "Stage", "StageStats"]

# Most items a stage loop takes from its input in one go.
BATCH = 64

ON_ERROR = ("raise", "skip")


class Stage:
    """One step of a :class:`Pipeline`: ``fn(item) -> result``.

    ``workers``: loops running ``fn`` at once (default: the pipeline's).
    ``ordered``: keep input order when ``workers > 1`` (default: the
    pipeline's).  ``on_error``: what an exception from ``fn`` does:
    ``"raise"`` stops the pipeline and re-raises it at the consumer,
    ``"skip"`` drops the item, a callable ``on_error(item, exc)`` returns a
    replacement result.
    """

    __slots__ = ("fn", "name", "on_error", "ordered", "workers")

    def __init__(self, fn: Callable[[Any], Any], workers: int | None = None, *,
                 ordered: bool | None = None,
                 on_error: str | Callable[[Any, Exception], Any] = "raise",
                 name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        if workers is not None:
            int_arg(workers, "workers", 1, MAX_THREADS)
        if ordered is not None and not isinstance(ordered, bool):
            raise TypeError("ordered must be a bool or None")
        if not callable(on_error) and on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR} or a callable, not {on_error!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError("name must be a str or None")
        self.fn = fn
        self.workers = workers
        self.ordered = ordered
        self.on_error = on_error
        self.name = name if name is not None else getattr(fn, "__name__", None) or repr(fn)

    def __repr__(self) -> str:
        return (f"Stage({self.name!r}, workers={self.workers}, ordered={self.ordered}, "
                f"on_error={self.on_error!r})")


@dataclass(frozen=True)
class StageStats:
    """A snapshot of one stage of the newest run.

    ``items``: inputs the stage has finished with (results, skips and
    failures).  ``errors``: exceptions raised by the stage's function.
    ``busy``: seconds spent inside the function, summed over its loops (with
    an executor: measured around each call where it ran).  ``queue_depth``:
    items waiting in the stage's input channel.
    """

    name: str
    workers: int
    items: int
    errors: int
    busy: float
    queue_depth: int


# A loop sizes its batches so one takes about this long (seconds): large
# batches for cheap functions, one item at a time for slow ones, so results
# of slow calls go on as soon as they are ready.
BATCH_SECONDS = 0.0002


class _Counters:
    """One loop's figures (written by that loop only, summed by stats()) and
    its current batch size."""

    __slots__ = ("batch", "busy", "errors", "items")

    def __init__(self) -> None:
        self.items = 0
        self.errors = 0
        self.busy = 0.0
        # Start with one item so the first result goes on at once.
        self.batch = 1


class _End:
    """Sent by an executor stage's feeder: how many calls it submitted."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count


def _timed_call(fn: Callable[[Any], Any], item: Any) -> tuple[Any, float]:
    """What an executor runs: module level so a process or cluster executor
    can pickle it (with ``fn``)."""
    start = time.perf_counter()
    result = fn(item)
    return result, time.perf_counter() - start


class _StageRun:
    """One stage inside one run: its channels, order keeping and counters."""

    def __init__(self, spec: Stage, inbox: Any, outbox: Any, make_channel: Callable[[int], Any],
                 remote: bool) -> None:
        self.spec = spec
        self.fn = spec.fn
        self.on_error = spec.on_error
        self.workers: int = spec.workers or 1  # Pipeline fills it in
        self.inbox = inbox
        self.outbox = outbox
        self.remote = remote
        self.counters: list[_Counters] = []
        self.lock = threading.Lock()
        # Loops that must finish before the output channel is closed.
        self.open_loops = 1 if remote else self.workers
        # Ordered with several loops: batch numbers are taken with the batch
        # (recv_lock), results go out in number order (turn).
        self.turnstile = spec.ordered is True and self.workers > 1 and not remote
        self.recv_lock = threading.Lock()
        self.next_ticket = 0
        self.turn = threading.Condition(threading.Lock())
        self.turn_no = 0
        if remote:
            # Executor stage: a permit per call in flight, and the finished
            # calls (+ the feeder's _End) on their way to the collector.
            self.permits = make_channel(self.workers)
            self.permits.send_many([None] * self.workers)
            self.finished = make_channel(self.workers + 1)
            self.in_flight: dict[int, Future[Any]] = {}

    def counter(self) -> _Counters:
        counters = _Counters()
        with self.lock:
            self.counters.append(counters)
        return counters

    def batch_size(self, counters: _Counters) -> int:
        if self.workers == 1:
            return counters.batch
        # Share what is queued between the loops so each gets some work.
        return max(1, min(counters.batch, len(self.inbox) // self.workers))

    def apply(self, run: _Run, batch: list[Any], counters: _Counters) -> list[Any] | None:
        """The stage's function over a batch; None when the run stopped
        (failed here or aborted meanwhile: no further call is started)."""
        fn = self.fn
        results: list[Any] = []
        append = results.append
        done = 0
        start = time.perf_counter()
        try:
            for item in batch:
                if run.aborted:
                    return None
                done += 1
                try:
                    append(fn(item))
                except Exception as exc:
                    counters.errors += 1
                    handler = self.on_error
                    if callable(handler):
                        append(handler(item, exc))
                    elif handler == "raise":
                        run.fail(exc)
                        return None
        finally:
            elapsed = time.perf_counter() - start
            counters.busy += elapsed
            counters.items += done
            if done:
                # Shrink at once for slow calls, grow by doubling for fast ones.
                fits = BATCH_SECONDS * done / elapsed if elapsed > 0 else BATCH
                counters.batch = max(1, min(BATCH, int(fits), counters.batch * 2))
        return results

    def loop_done(self) -> None:
        with self.lock:
            self.open_loops -= 1
            last = self.open_loops == 0
        if last:
            self.outbox.close()

    def wake(self) -> None:
        """After an abort: wake loops waiting for their turn or for calls."""
        with self.turn:
            self.turn.notify_all()
        if self.remote:
            self.permits.close()
            self.finished.close()
            with self.lock:
                calls = list(self.in_flight.values())
            for future in calls:
                future.cancel()


# Runs still going, cancelled at interpreter exit before the pools' own exit
# hook waits for their workers (a stage loop blocked on an input nobody will
# close would otherwise hold up the exit).
_live_runs: weakref.WeakSet[_Run] = weakref.WeakSet()
_live_lock = threading.Lock()


def _cancel_live_runs() -> None:
    with _live_lock:
        runs = list(_live_runs)
    for run in runs:
        run.abort(None)


# threading's exit hooks run in reverse order of registration, and
# fastconc._executor registered the pools' hook when it was imported (before
# this module), so this runs first.
threading._register_atexit(_cancel_live_runs)  # type: ignore[attr-defined]


class _Run:
    """One execution of a pipeline: its channels, its loops and its fate."""

    def __init__(self, stages: tuple[Stage, ...], capacity: int, make_channel: Callable[[int], Any],
                 pool_type: Callable[..., Any], executor: Executor | None, name: str,
                 source: Iterable[Any] | None) -> None:
        remote = executor is not None
        self.channels = [make_channel(capacity) for _ in range(len(stages) + 1)]
        self.inbox = self.channels[0]
        self.outbox = self.channels[-1]
        self.stages = [_StageRun(spec, self.channels[i], self.channels[i + 1], make_channel, remote)
                       for i, spec in enumerate(stages)]
        self.executor = executor
        self.aborted = False
        self.error: BaseException | None = None
        self.source_error: BaseException | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()
        loops: list[tuple[Callable[..., None], tuple[Any, ...], _StageRun | None]] = []
        for stage in self.stages:
            if remote:
                loops.append((self._submit_loop, (stage,), None))
                loops.append((self._collect_loop, (stage,), stage))
            else:
                loops.extend((self._inline_loop, (stage,), stage) for _ in range(stage.workers))
        self._running = len(loops) + (source is not None)
        with _live_lock:
            _live_runs.add(self)
        self.pool = pool_type(len(loops), thread_name_prefix=name)
        for loop, args, finishes in loops:
            self.pool.execute(self._guard, loop, args, finishes)
        if source is not None:
            threading.Thread(target=self._guard, args=(self._feed, (source,), None),
                             name=f"{name}_feeder", daemon=True).start()

    # -- fate ---------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """The first failure stops the run and is re-raised at the consumer."""
        self.abort(exc)

    def abort(self, exc: BaseException | None) -> None:
        """Stop everything; ``exc`` (None: cancelled) is what consumers get."""
        with self._lock:
            if self.done.is_set():
                return  # ended on its own: its results stay readable
            if not self.aborted:
                self.error = exc
                self.aborted = True
        # Closing and waking again is harmless, and finishes the job if an
        # earlier abort was interrupted (a second Ctrl-C).
        for channel in self.channels:
            channel.close()
        for stage in self.stages:
            stage.wake()

    def raise_if_aborted(self) -> None:
        if self.aborted:
            if self.error is not None:
                raise self.error
            raise ChannelClosed("the pipeline was cancelled")

    def _guard(self, loop: Callable[..., None], args: tuple[Any, ...],
               finishes: _StageRun | None) -> None:
        """Run one loop; a normal end counts towards closing the stage's
        output, an error fails the run (then nothing downstream may look
        like a normal end)."""
        try:
            loop(*args)
            if finishes is not None and not self.aborted:
                finishes.loop_done()
        except BaseException as exc:
            # A ChannelClosed seen after an abort is the abort itself.
            if not (self.aborted and isinstance(exc, ChannelClosed)):
                self.fail(exc)
        finally:
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:
                with _live_lock:
                    _live_runs.discard(self)
                # From a worker of that pool: wait=False, the workers exit
                # once this task returns.
                self.pool.shutdown(wait=False)
                self.done.set()

    def join(self, timeout: float | None) -> bool:
        """Wait until every loop has finished and the pool's threads are gone."""
        if not self.done.wait(timeout):
            return False
        self.pool.shutdown(wait=True)
        return True

    # -- loops ----------------------------------------------------------------

    def _feed(self, source: Iterable[Any]) -> None:
        """map()'s feeder (on its own daemon thread: a source blocked in
        next() must not hold up interpreter exit).  An item read is sent
        before the next is asked for, so a source that waits for more input
        never holds back results; lists, tuples and ranges go in batches."""
        inbox = self.inbox
        try:
            if isinstance(source, (list, tuple, range)):
                for i in range(0, len(source), BATCH):
                    if self.aborted or inbox.send_many(source[i:i + BATCH]) < min(
                            BATCH, len(source) - i):
                        return
                return
            try:
                iterator = iter(source)
            except BaseException as exc:
                # Recorded before the finally closes the inbox: failing the
                # run from _guard after that close raced the consumer, which
                # could see a normal end first.
                self.source_error = exc
                return
            send = inbox.send
            while not self.aborted:
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                except BaseException as exc:
                    # Raised at the consumer after every item read before it.
                    self.source_error = exc
                    return
                send(item)
        finally:
            inbox.close()

    def _inline_loop(self, stage: _StageRun) -> None:
        counters = stage.counter()
        inbox = stage.inbox
        while not self.aborted:
            if stage.turnstile:
                with stage.recv_lock:
                    try:
                        batch = inbox.recv_many(stage.batch_size(counters))
                    except ChannelClosed:
                        return
                    ticket = stage.next_ticket
                    stage.next_ticket = ticket + 1
                results = stage.apply(self, batch, counters)
                del batch
                if not self._send_in_turn(stage, ticket, results):
                    return
            else:
                try:
                    batch = inbox.recv_many(stage.batch_size(counters))
                except ChannelClosed:
                    return
                results = stage.apply(self, batch, counters)
                del batch
                if results is None:
                    return
                if results and stage.outbox.send_many(results) < len(results):
                    return  # closed part-way: only an abort closes it early

    def _send_in_turn(self, stage: _StageRun, ticket: int, results: list[Any] | None) -> bool:
        turn = stage.turn
        with turn:
            while stage.turn_no != ticket:
                if self.aborted:
                    return False
                turn.wait()
        try:
            if results is None:
                return False
            return not results or stage.outbox.send_many(results) == len(results)
        finally:
            with turn:
                stage.turn_no = ticket + 1
                turn.notify_all()

    def _submit_loop(self, stage: _StageRun) -> None:
        executor = self.executor
        assert executor is not None
        fn = stage.fn
        finished = stage.finished
        index = 0
        while not self.aborted:
            stage.permits.recv()  # one more call may be in flight
            if self.aborted:
                return
            try:
                item = stage.inbox.recv()
            except ChannelClosed:
                if not self.aborted:
                    finished.send(_End(index))
                return
            if self.aborted:
                return
            future = executor.submit(_timed_call, fn, item)
            with stage.lock:
                stage.in_flight[index] = future
            if self.aborted:  # wake() may have listed in_flight already
                future.cancel()
            future.add_done_callback(_Finished(finished, index, item))
            index += 1

    def _collect_loop(self, stage: _StageRun) -> None:
        counters = stage.counter()
        ordered = stage.spec.ordered is not False
        waiting: dict[int, tuple[Any, Future[Any]]] = {}
        next_index = 0
        handled = 0
        total = -1
        while handled != total and not self.aborted:
            msg = stage.finished.recv()
            if type(msg) is _End:
                total = msg.count
                continue
            index, item, future = msg
            if not ordered:
                self._collect(stage, counters, index, item, future)
                handled += 1
                continue
            waiting[index] = (item, future)
            while next_index in waiting:
                item, future = waiting.pop(next_index)
                self._collect(stage, counters, next_index, item, future)
                next_index += 1
                handled += 1

    def _collect(self, stage: _StageRun, counters: _Counters, index: int, item: Any,
                 future: Future[Any]) -> None:
        """One finished call: its result (or the error policy's) downstream,
        then its permit back."""
        with stage.lock:
            del stage.in_flight[index]
        counters.items += 1
        exc = future.exception()
        if exc is None:
            result, seconds = future.result()
            counters.busy += seconds
            stage.outbox.send(result)
        else:
            counters.errors += 1
            if stage.on_error == "raise" or not isinstance(exc, Exception):
                raise exc
            if callable(stage.on_error):
                stage.outbox.send(stage.on_error(item, exc))
        stage.permits.send(None)


class _Finished:
    """Done callback of an executor call: hands it to the stage's collector."""

    __slots__ = ("channel", "index", "item")

    def __init__(self, channel: Any, index: int, item: Any) -> None:
        self.channel = channel
        self.index = index
        self.item = item

    def __call__(self, future: Future[Any]) -> None:
        try:
            # Never blocks: at most `workers` calls (+ one _End) are out.
            self.channel.send((self.index, self.item, future))
        except ChannelClosed:
            pass  # the run was aborted


_count = 0


def _number() -> int:
    global _count
    with _live_lock:
        _count += 1
        return _count


class Pipeline:
    """Stages of functions connected by bounded channels.

    ``Pipeline(stages, *, capacity=64, workers=1, ordered=True,
    executor=None)``: ``stages`` are callables or :class:`Stage` objects;
    ``capacity`` bounds every channel between them; ``workers`` and
    ``ordered`` are the defaults for stages that do not say.  By default the
    stages run on an internal :class:`WorkStealingPool` with one thread per
    stage loop; ``executor``: any :class:`concurrent.futures.Executor` runs
    the stage functions instead (one item per call, at most ``workers``
    calls in flight per stage).

    Two ways to use it:

    * ``start()``, then ``send(item)`` from producers and ``recv()`` (or
      iterate) from consumers; ``close()`` ends the input: what is in flight
      still comes out, then ``recv`` raises :class:`ChannelClosed`.
    * ``map(iterable)``: a fresh run over ``iterable``, streaming results
      while the input is still being read; ordered unless a stage is not.

    Errors: by default the first exception from a stage function stops the
    run and is re-raised at the consumer (``recv``/``map``); a stage can
    skip or replace failed items instead (see :class:`Stage`).  An exception
    from ``map``'s source iterable is raised after the results of every item
    read before it.  ``cancel()`` aborts at once (items in flight are
    dropped).  ``join(timeout)`` waits until the run's threads are gone.
    Leaving a ``with`` block cancels what the pipeline still runs.

    With ``executor=``, ``workers`` is the number of calls a stage keeps in
    flight on the executor (default 1: say ``workers=N`` to use N of its
    threads).  At interpreter exit, runs still going are cancelled, as
    daemon threads would be (their loops would otherwise keep the process
    alive); a pipeline that other threads still use when the main thread
    returns must be drained and joined by them first.
    """

    def __init__(self, stages: Iterable[Callable[[Any], Any] | Stage], *, capacity: int = 64,
                 workers: int = 1, ordered: bool = True, executor: Executor | None = None,
                 backend: Any = None, name: str | None = None) -> None:
        """``backend``: the primitives to build on, one of the namespaces of
        ``fastconc.implementations()`` (default: the backend fastconc selected)."""
        if isinstance(stages, (str, bytes)) or not isinstance(stages, Iterable):
            raise TypeError("stages must be an iterable of callables or Stage objects")
        int_arg(capacity, "capacity", 1)
        int_arg(workers, "workers", 1, MAX_THREADS)
        if not isinstance(ordered, bool):
            raise TypeError("ordered must be a bool")
        if executor is not None and not callable(getattr(executor, "submit", None)):
            raise TypeError("executor must be a concurrent.futures.Executor (or have submit())")
        if name is not None and not isinstance(name, str):
            raise TypeError("name must be a str or None")
        resolved = []
        for i, stage in enumerate(stages):
            if not isinstance(stage, Stage):
                if not callable(stage):
                    raise TypeError(f"stage {i} is not callable nor a Stage: {stage!r}")
                stage = Stage(stage)
            resolved.append(Stage(
                stage.fn,
                stage.workers if stage.workers is not None else workers,
                ordered=stage.ordered if stage.ordered is not None else ordered,
                on_error=stage.on_error, name=stage.name))
        if not resolved:
            raise ValueError("stages must not be empty")
        self._stages = tuple(resolved)
        self._capacity = capacity
        self._executor = executor
        self._channel_type: Callable[[int], Any] = (
            Channel if backend is None else backend.Channel)
        self._pool_type: Callable[..., Any] = (
            WorkStealingPool if backend is None else backend.WorkStealingPool)
        self.name = name or f"Pipeline-{_number()}"
        self._lock = threading.Lock()
        self._run: _Run | None = None  # the run of start()
        self._newest: _Run | None = None  # for stats()
        self._runs: weakref.WeakSet[_Run] = weakref.WeakSet()

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The stages, with the pipeline's defaults filled in."""
        return self._stages

    @property
    def capacity(self) -> int:
        return self._capacity

    def _launch(self, source: Iterable[Any] | None) -> _Run:
        """Lock held."""
        run = _Run(self._stages, self._capacity, self._channel_type, self._pool_type,
                   self._executor, self.name, source)
        self._newest = run
        self._runs.add(run)
        return run

    def start(self) -> Pipeline:
        """Start the stages for send()/recv(); returns the pipeline."""
        with self._lock:
            if self._run is not None:
                raise RuntimeError("the pipeline was already started")
            self._run = run = self._launch(None)
        # A dropped pipeline must not leave its loops waiting on channels
        # nobody will touch again.
        weakref.finalize(self, _abort_soon, run)
        return self

    def _started(self) -> _Run:
        run = self._run
        if run is None:
            raise RuntimeError("start() the pipeline first")
        return run

    def send(self, item: Any, timeout: float | None = None) -> None:
        """Feed one item; blocks while the first stage's channel is full.
        Raises :class:`ChannelClosed` after close() or cancel(), Timeout when
        ``timeout`` passes."""
        self._started().inbox.send(item, timeout)

    def recv(self, timeout: float | None = None) -> Any:
        """The next result.  Raises the first stage error (default policy),
        :class:`ChannelClosed` once closed and drained or cancelled, Timeout
        when ``timeout`` passes."""
        run = self._started()
        run.raise_if_aborted()
        try:
            return run.outbox.recv(timeout)
        except ChannelClosed as exc:
            closed = exc
        # Outside the except block: raised in it, the stage's error would get
        # this ChannelClosed as its __context__ in place of its own.
        run.raise_if_aborted()
        raise closed

    def __iter__(self) -> Iterator[Any]:
        """Results until the pipeline is closed and drained (one recv() each,
        so breaking out of the loop leaves the rest for later)."""
        run = self._started()
        while True:
            try:
                yield self.recv()
            except ChannelClosed:
                if run.aborted:
                    raise
                return

    def close(self) -> None:
        """No more input: what is in flight still comes out, then the loops
        end and their threads exit."""
        self._started().inbox.close()

    def cancel(self) -> None:
        """Abort at once: items in flight are dropped, every loop stops (a
        call already running finishes first), consumers get ChannelClosed."""
        run = self._run
        if run is not None:
            run.abort(None)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the started run has ended (closed and drained, failed
        or cancelled) and its threads are gone.  False on timeout."""
        return self._started().join(timeout)

    def map(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """A fresh run over ``iterable``: results stream out while the input
        is still being read (on a separate daemon thread, so the iterable must
        not be tied to the calling thread).  Closing or dropping the iterator
        cancels the run."""
        if not isinstance(iterable, Iterable):
            raise TypeError(f"map() needs an iterable, not {type(iterable).__name__}")
        with self._lock:
            run = self._launch(iterable)
        results = _results(run)
        weakref.finalize(results, _abort_soon, run)
        return results

    def stats(self) -> tuple[StageStats, ...]:
        """Per-stage figures of the newest run (start() or map())."""
        run = self._newest
        if run is None:
            return tuple(StageStats(s.name, s.workers or 1, 0, 0, 0.0, 0) for s in self._stages)
        out = []
        for stage in run.stages:
            with stage.lock:
                counters = list(stage.counters)
            out.append(StageStats(
                stage.spec.name, stage.workers, sum(c.items for c in counters),
                sum(c.errors for c in counters), sum(c.busy for c in counters),
                len(stage.inbox)))
        return tuple(out)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            runs = list(self._runs)
        for run in runs:
            run.abort(None)

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self._stages)
        return f"<Pipeline {self.name!r} [{names}]>"


def _abort_soon(run: _Run) -> None:
    """Abort from a finalizer: on a fresh thread, because the collector may
    run this while the current thread holds a (pure-Python) Channel's lock
    that closing the channel needs."""
    if run.done.is_set():
        return
    if sys.is_finalizing():
        # Module teardown: the exit hook cancelled every live run before
        # threads were joined, and a thread started now never runs (3.10 and
        # 3.11 then wait in start() for good; seen 6 times in 600 exits).
        return
    try:
        threading.Thread(target=run.abort, args=(None,), daemon=True,
                         name="Pipeline-abort").start()
    except RuntimeError:  # no new threads at interpreter shutdown
        run.abort(None)


def _results(run: _Run) -> Iterator[Any]:
    """map()'s iterator: takes results in batches (what it took but did not
    yield yet is dropped with the run when the consumer stops early)."""
    outbox = run.outbox
    ended = False
    try:
        while True:
            run.raise_if_aborted()
            try:
                batch = outbox.recv_many(BATCH)
            except ChannelClosed:
                ended = True
            if ended:
                # Outside the except block, which would replace the error's
                # own __context__ (see Pipeline.recv).
                run.raise_if_aborted()
                if run.source_error is not None:
                    raise run.source_error
                return
            yield from batch
    finally:
        if not ended:
            # The consumer stopped early.  Also reached when the garbage
            # collector closes a dropped iterator, which may happen inside a
            # Channel method of this very thread: hence _abort_soon.
            try:
                _abort_soon(run)
            except Exception:
                # Closed during interpreter teardown (3.13t finalizes
                # module-level generators after clearing module globals):
                # the exit hook has already cancelled every live run.
                if not run.aborted:
                    raise
