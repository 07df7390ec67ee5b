"""Ring buffers under real concurrency: nothing lost, nothing duplicated,
SPSC order kept.  Rings never block, so the threads retry on full/empty
after a yield (stress_helpers.backoff).

Producers stop after n items or when the time budget (stress_helpers.Budget)
is spent, whichever comes first; the checks cover what was pushed."""

from __future__ import annotations

import array
import threading

import pytest
from conftest import stress_scale
from stress_helpers import Budget, backoff, run_mpmc_ring

from fastconc import Empty

pytestmark = [pytest.mark.stress,
              pytest.mark.thread_unsafe(reason="a stress test: times its own load")]


def items_per_producer() -> int:
    return max(200, int(20_000 * stress_scale()))


def test_ring_mpmc_4_producers_3_consumers_exactly_once(impl, threads, tally):
    ring = impl.RingBuffer(64)
    calls, checked = run_mpmc_ring(ring, threads, producers=4, consumers=3,
                                   per_producer=items_per_producer())
    tally.add(operations=calls, items_checked=checked)


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
