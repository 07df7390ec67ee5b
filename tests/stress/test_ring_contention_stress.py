"""Rings and the work-stealing deque at their tightest: tiny capacities
(every slot's sequence number wraps all the time), random batch sizes and
every push/pop form mixed, until the time budget is spent.

RingBuffer: many producers and consumers, exactly once, each producer's
items in order at each consumer.  SpscRingBuffer and TypedRingBuffer are
single-producer single-consumer by contract: one thread each side, every
item once and in order.  WorkStealingDeque: the owner pushes and pops while
several thieves steal, every item taken exactly once.
"""

from __future__ import annotations

import array
import random
import threading

import pytest
from conftest import JOIN_TIMEOUT, check_counts
from stress_helpers import Budget, backoff, jitter, run_mpmc_ring, run_rounds

from fastconc import Empty

pytestmark = [pytest.mark.stress,
              pytest.mark.thread_unsafe(reason="a stress test: times its own load")]

T = JOIN_TIMEOUT


@pytest.mark.parametrize("capacity", [2, 4])  # 2 is the smallest ring there is
def test_ring_mpmc_tiny_capacity_exactly_once(impl, threads, tally, capacity):
    ring = impl.RingBuffer(capacity)
    assert ring.capacity == capacity
    calls, checked = run_mpmc_ring(ring, threads, producers=3, consumers=3)
    tally.add(operations=calls, items_checked=checked)


@pytest.mark.parametrize("kind", ["spsc", "typed"])
def test_spsc_rings_tiny_capacity_random_batches(impl, threads, tally, kind):
    capacity = 4
    if kind == "spsc":
        ring = impl.SpscRingBuffer(capacity)
    else:
        ring = impl.TypedRingBuffer(capacity, "q")
    budget = Budget()
    got: list[int] = []
    calls = [0, 0]
    sent = [0]
    finished = threading.Event()

    def producer() -> None:
        r = random.Random(1)
        i = 0
        while not budget.over():
            calls[0] += 1
            if r.random() < 0.5:
                pushed = int(ring.push(i))
            else:
                n = r.randint(1, 6)
                batch = array.array("q", range(i, i + n)) if kind == "typed" else range(i, i + n)
                pushed = ring.push_many(batch)
            i += pushed
            if not pushed:
                backoff()
            jitter(r, p=0.001)
        sent[0] = i
        finished.set()

    def consumer() -> None:
        r = random.Random(2)
        buf = array.array("q", bytes(8 * 8))
        while not (finished.is_set() and len(got) == sent[0]):
            calls[1] += 1
            mode = r.randrange(3)
            if mode == 0:
                try:
                    part = [ring.pop()]
                except Empty:
                    part = []
            elif mode == 1 or kind == "spsc":
                part = list(ring.pop_many(r.randint(1, 6)))
            else:
                n = ring.pop_into(memoryview(buf)[:r.randint(1, 8)])
                part = list(buf[:n])
            got.extend(part)
            if not part:
                backoff()

    threads.start(producer)
    threads.start(consumer)
    threads.join()
    assert got == list(range(sent[0])), "items lost, duplicated or reordered"
    assert len(ring) == 0
    tally.add(operations=sum(calls), items_checked=len(got))


def test_deque_owner_and_thieves_exactly_once(impl, threads, tally):
    """Rounds of: the owner pushes bursts (growing the buffer past its first
    size, so thieves read a grown array) and pops, three thieves steal."""
    thieves = 3
    budget = Budget()
    run_rounds(tally, lambda: _deque_round(impl, threads, thieves, budget.seconds / 10), budget)


def _deque_round(impl, threads, thieves: int, seconds: float) -> tuple[int, int]:
    """One round: a fresh deque, the owner busy for `seconds`.
    Returns (operations, items checked)."""
    total_calls = checked = 0
    d = impl.WorkStealingDeque()
    taken: list[list[int]] = [[] for _ in range(thieves + 1)]
    calls = [0] * (thieves + 1)
    start = threading.Barrier(thieves + 1)
    owner_done = threading.Event()
    round_budget = Budget(seconds)

    def thief(k: int) -> None:
        out = taken[k]
        start.wait(T)
        while True:
            calls[k] += 1
            try:
                out.append(d.steal())
            except Empty:
                if owner_done.is_set() and d.is_empty():
                    return
                backoff()

    for k in range(thieves):
        threads.start(thief, k)
    r = random.Random()
    out = taken[thieves]
    start.wait(T)
    n = 0
    while not round_budget.over():
        burst = r.choice((1, 2, 3, 50, 300))
        for j in range(n, n + burst):
            d.push(j)
        n += burst
        calls[thieves] += burst
        for _ in range(r.randint(0, burst)):
            calls[thieves] += 1
            try:
                out.append(d.pop())
            except Empty:
                break
    while True:
        try:
            out.append(d.pop())
        except Empty:
            break
    owner_done.set()
    threads.join()
    checked += check_counts((x for part in taken for x in part), range(n))
    for part in taken[:thieves]:
        assert part == sorted(part), "a thief saw items out of push order"
    total_calls += sum(calls)
    return total_calls, checked
