"""Pipeline: several producers and consumers, with close() or cancel()
racing them, round after round until the time budget is spent.

A send() that returned accepted its item; one that raised Timeout or
ChannelClosed did not.  close(): every accepted item comes out exactly once
(its stages ran exactly once for it), in each producer's order when the
pipeline is ordered.  cancel(): items in flight may be dropped, but nothing
comes out twice or without having been accepted, no stage runs twice for an
item, and every loop ends.
"""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from conftest import JOIN_TIMEOUT, check_counts, check_fifo_per_producer
from stress_helpers import (
    jitter,
    random_pause,
    random_timeout,
    run_rounds,
)

from fastconc import ChannelClosed, Pipeline, Stage, Timeout

pytestmark = [pytest.mark.stress,
              pytest.mark.thread_unsafe(reason="a stress test: times its own load")]

T = JOIN_TIMEOUT


@pytest.mark.parametrize("end", ["close", "cancel"])
def test_pipeline_producers_consumers_with_close_or_cancel_racing(impl, threads, tally, end):
    producers, consumers = 3, 2
    run_rounds(tally, lambda: _pipeline_round(impl, threads, producers, consumers, end))


def _pipeline_round(impl, threads, producers: int, consumers: int, end: str) -> tuple[int, int]:
    """One round: a fresh pipeline, closed or cancelled at a random moment.
    Returns (operations, items checked)."""
    total_calls = checked = 0
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed - 1)
    first: list[tuple[int, int]] = []
    second: list[tuple[int, int]] = []

    def one(x: tuple[int, int]) -> tuple[int, int]:
        first.append(x)
        return x

    def two(x: tuple[int, int]) -> tuple[int, int]:
        second.append(x)
        return x

    ordered = rnd.random() < 0.5
    # Some rounds run the stage functions on an executor (the feeder and
    # collector loops, and cancel() cancelling calls in flight).
    executor = impl.WorkStealingPool(2) if rnd.random() < 0.3 else None
    pipe = Pipeline([Stage(one, workers=rnd.choice((1, 2, 3))), two],
                    capacity=rnd.choice((1, 2, 8)), ordered=ordered,
                    executor=executor, backend=impl).start()
    accepted: list[list[tuple[int, int]]] = [[] for _ in range(producers)]
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]
    calls = [0] * (producers + consumers)
    start = threading.Barrier(producers + consumers + 1)

    def producer(p: int) -> None:
        r = random.Random(seed + p)
        start.wait(T)
        i = 0
        while True:
            calls[p] += 1
            item = (p, i)
            i += 1
            try:
                if r.random() < 0.5:
                    pipe.send(item, timeout=random_timeout(r, T))
                else:
                    pipe.send(item)  # close()/cancel() must wake it
            except Timeout:
                continue
            except ChannelClosed:
                return
            accepted[p].append(item)
            jitter(r)

    def consumer(c: int) -> None:
        r = random.Random(seed + 100 + c)
        start.wait(T)
        while True:
            calls[producers + c] += 1
            try:
                if r.random() < 0.5:
                    received[c].append(pipe.recv(timeout=random_timeout(r, T)))
                else:
                    received[c].append(pipe.recv())
            except Timeout:
                continue
            except ChannelClosed:
                return
            jitter(r)

    for p in range(producers):
        threads.start(producer, p)
    for c in range(consumers):
        threads.start(consumer, c)
    start.wait(T)
    random_pause(rnd)
    if end == "close":
        pipe.close()
    else:
        if rnd.random() < 0.3:
            pipe.close()  # a cancel racing the drain of a closed pipeline
            random_pause(rnd)
        pipe.cancel()
    threads.join()
    assert pipe.join(T), "the pipeline's loops did not end"
    if executor is not None:
        assert executor.join(T)
        executor.shutdown()
    got = [x for part in received for x in part]
    want = [x for part in accepted for x in part]
    for name, ran in (("first", first), ("second", second)):
        twice = [x for x, n in Counter(ran).items() if n > 1]
        assert not twice, f"stage {name} ran twice for {twice[:5]}"
    if end == "close":
        checked += check_counts(got, want)
        assert Counter(first) == Counter(want), "stage 1 did not run once per item"
        assert Counter(second) == Counter(want), "stage 2 did not run once per item"
    else:
        check_counts(got, set(got) & set(want))  # no duplicates, nothing unsent
        assert set(got) <= set(second) <= set(first) <= set(want)
        checked += len(got)
    if ordered:
        check_fifo_per_producer(received)
    total_calls += sum(calls)
    return total_calls, checked
