"""Ring buffers under real concurrency: nothing lost, nothing duplicated,
SPSC order kept.  Rings never block, so the threads retry on full/empty;
a retry first yields the GIL (backoff(): sleep(0) is a yield, not a wait for
anything), or a spinning thread would hold the GIL for a whole switch
interval while the thread it waits for cannot run.

Producers stop after n items or when the time budget (stress_helpers.Budget)
is spent, whichever comes first; the checks cover what was pushed."""

from __future__ import annotations

import array
import threading
import time

import pytest
from conftest import JOIN_TIMEOUT, stress_scale
from stress_helpers import Budget, check_exactly_once_sent

from fastconc import Empty

pytestmark = [pytest.mark.stress,
              pytest.mark.thread_unsafe(reason="a stress test: times its own load")]


def backoff() -> None:
    time.sleep(0)


def items_per_producer() -> int:
    return max(200, int(20_000 * stress_scale()))


def test_ring_mpmc_4_producers_3_consumers_exactly_once(impl, threads, tally):
    ring = impl.RingBuffer(64)
    producers, consumers = 4, 3
    n = items_per_producer()
    budget = Budget()
    done_producing = threading.Event()
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]
    sent = [0] * producers
    calls = [0] * (producers + consumers)
    start = threading.Barrier(producers + consumers)

    def producer(p: int) -> None:
        start.wait(JOIN_TIMEOUT)
        i = 0
        while i < n and not budget.over():
            calls[p] += 1
            if i % 3 == 0:
                pushed = ring.push_many([(p, j) for j in range(i, min(n, i + 7))])
            else:
                pushed = int(ring.push((p, i)))
            i += pushed
            if not pushed:
                backoff()
        sent[p] = i

    def consumer(c: int) -> None:
        out = received[c]
        start.wait(JOIN_TIMEOUT)
        while True:
            calls[producers + c] += 1
            got = ring.pop_many(5) if c % 2 else [ring.pop(None)]
            got = [x for x in got if x is not None]
            out.extend(got)
            if not got:
                if done_producing.is_set() and ring.is_empty():
                    return
                backoff()

    prods = [threads.start(producer, p) for p in range(producers)]
    for c in range(consumers):
        threads.start(consumer, c)
    for t in prods:
        t.join(JOIN_TIMEOUT)
    done_producing.set()
    threads.join()
    tally.add(operations=sum(calls), items_checked=check_exactly_once_sent(received, sent))


def test_spsc_order_across_threads(impl, threads, tally):
    ring = impl.SpscRingBuffer(32)
    n = items_per_producer() * 4
    budget = Budget()
    got: list[int] = []
    calls = [0, 0]
    finished = threading.Event()
    sent = [0]

    def producer() -> None:
        i = 0
        while i < n and not budget.over():
            calls[0] += 1
            pushed = ring.push_many(range(i, min(n, i + 9))) if i % 2 else int(ring.push(i))
            i += pushed
            if not pushed:
                backoff()
        sent[0] = i
        finished.set()

    def consumer() -> None:
        while not (finished.is_set() and len(got) == sent[0]):
            calls[1] += 1
            if len(got) % 2:
                part = ring.pop_many(6)
                got.extend(part)
                if not part:
                    backoff()
            else:
                try:
                    got.append(ring.pop())
                except Empty:
                    backoff()

    threads.start(producer)
    threads.start(consumer)
    threads.join()
    assert got == list(range(sent[0]))
    tally.add(operations=sum(calls), items_checked=len(got))


def test_typed_spsc_batches_across_threads(impl, threads, tally):
    ring = impl.TypedRingBuffer(1024, "q")
    n = items_per_producer() * 10
    src = array.array("q", range(n))
    dst = array.array("q", bytes(8 * n))
    calls = [0, 0]

    def producer() -> None:
        pos = 0
        view = memoryview(src)
        while pos < n:
            calls[0] += 1
            pushed = ring.push_many(view[pos:pos + 300])
            pos += pushed
            if not pushed:
                backoff()

    def consumer() -> None:
        pos = 0
        view = memoryview(dst)
        while pos < n:
            calls[1] += 1
            if pos % 5 == 0:
                try:
                    view[pos] = ring.pop()
                    pos += 1
                except Empty:
                    backoff()
            else:
                got = ring.pop_into(view[pos:pos + 257])
                pos += got
                if not got:
                    backoff()

    threads.start(producer)
    threads.start(consumer)
    threads.join()
    assert dst == src
    tally.add(operations=sum(calls), items_checked=n)
