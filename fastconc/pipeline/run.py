"""One execution of a pipeline: its channels and loops (inline, or feeding
and collecting an executor's calls), how it ends (drained, failed or
aborted), and the runs still going that interpreter exit cancels."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

from fastconc.errors import ChannelClosed
from fastconc.pipeline.stage_run import BATCH, _Counters, _StageRun

if TYPE_CHECKING:
    from fastconc.pipeline.stage import Stage


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
# fastconc._support.executor registered the pools' hook when it was imported (the
# package imports its backends before the high layer), so this runs first.
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
