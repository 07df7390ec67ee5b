"""One stage inside one run: its channels, batch sizing, order keeping
across its loops, and its counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastconc.pipeline.run import _Run
    from fastconc.pipeline.stage import Stage

# Most items a stage loop takes from its input in one go.
BATCH = 64

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
