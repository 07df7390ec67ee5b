"""Pipeline, the public class: its options (checked), start/send/recv/close
and cancel for a long-lived run, map() for a run over an iterable (and the
iterator it returns), and stats."""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from typing import Any

from fastconc import Channel, WorkStealingPool
from fastconc._support.args import MAX_THREADS, int_arg
from fastconc.errors import ChannelClosed
from fastconc.pipeline.run import _live_lock, _Run
from fastconc.pipeline.stage import Stage, StageStats
from fastconc.pipeline.stage_run import BATCH

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
