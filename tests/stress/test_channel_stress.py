"""Multi-thread stress: every accepted item is received exactly once.

Producers stop after n items or when the time budget (stress_helpers.Budget)
is spent, whichever comes first; the checks cover what was sent."""

from __future__ import annotations

import gc
import random
import threading

import pytest
from conftest import JOIN_TIMEOUT, check_counts, check_exactly_once_sent, join_queue, stress_scale
from stress_helpers import Budget

from fastconc import ChannelClosed, Empty, Timeout

pytestmark = [pytest.mark.stress,
              pytest.mark.thread_unsafe(reason="a stress test: times its own load")]


def per_producer() -> int:
    return max(100, int(20_000 * stress_scale()))


@pytest.mark.parametrize("producers,consumers,capacity",
                         [(1, 1, 1), (2, 2, 3), (4, 4, 16), (3, 2, 1000), (2, 2, 65537)])
def test_channel_mpmc_exactly_once(impl, threads, tally, producers, consumers, capacity):
    ch = impl.Channel(capacity)
    n = per_producer()
    budget = Budget()
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]
    sent = [0] * producers
    calls = [0] * (producers + consumers)
    start = threading.Barrier(producers + consumers)

    def producer(p: int) -> None:
        rnd = random.Random(p)
        start.wait(JOIN_TIMEOUT)
        i = 0
        while i < n and not budget.over():
            calls[p] += 1
            mode = rnd.randrange(3)
            if mode == 0:
                ch.send((p, i), timeout=JOIN_TIMEOUT)
                i += 1
            elif mode == 1:
                if ch.try_send((p, i)):
                    i += 1
            else:
                batch = [(p, j) for j in range(i, min(n, i + rnd.randint(1, 40)))]
                i += ch.send_many(batch, timeout=JOIN_TIMEOUT)
        sent[p] = i

    def consumer(c: int) -> None:
        rnd = random.Random(100 + c)
        out = received[c]
        start.wait(JOIN_TIMEOUT)
        while True:
            calls[producers + c] += 1
            try:
                mode = rnd.randrange(3)
                if mode == 0:
                    out.append(ch.recv(timeout=JOIN_TIMEOUT))
                elif mode == 1:
                    try:
                        out.append(ch.try_recv())
                    except Empty:
                        pass
                else:
                    out.extend(ch.recv_many(rnd.randint(1, 50), timeout=JOIN_TIMEOUT))
            except ChannelClosed:
                return

    prods = [threads.start(producer, p) for p in range(producers)]
    for c in range(consumers):
        threads.start(consumer, c)
    for t in prods:
        t.join(JOIN_TIMEOUT)
    ch.close()
    threads.join()
    checked = check_exactly_once_sent(received, sent)
    assert len(ch) == 0
    tally.add(operations=sum(calls), items_checked=checked)


def test_queue_mpmc_exactly_once_with_join(impl, threads, tally):
    producers, consumers = 3, 3
    q = impl.Queue(64)
    n = per_producer()
    budget = Budget()
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]
    sent = [0] * producers

    def producer(p: int) -> None:
        for i in range(n):
            if budget.over():
                break
            q.put((p, i), timeout=JOIN_TIMEOUT)
            sent[p] = i + 1

    def consumer(c: int) -> None:
        out = received[c]
        while True:
            try:
                item = q.get(timeout=JOIN_TIMEOUT)
            except ChannelClosed:
                return
            out.append(item)
            q.task_done()

    for c in range(consumers):
        threads.start(consumer, c)
    prods = [threads.start(producer, p) for p in range(producers)]
    for t in prods:
        t.join(JOIN_TIMEOUT)
    join_queue(q)
    q.shutdown()
    threads.join()
    checked = check_exactly_once_sent(received, sent)
    # put + get + task_done per item
    tally.add(operations=3 * checked, items_checked=checked)


def test_close_under_load_loses_nothing_accepted(impl, threads, tally):
    """Close while producers and consumers are busy: whatever a send accepted
    is received exactly once; whatever it refused never shows up."""
    ch = impl.Channel(8)
    producers, consumers = 3, 3
    accepted: list[list[tuple[int, int]]] = [[] for _ in range(producers)]
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]
    enough = threading.Event()
    target = per_producer() // 4
    budget = Budget()
    calls = [0] * (producers + consumers)

    def producer(p: int) -> None:
        i = 0
        while True:
            calls[p] += 1
            try:
                if i % 2:
                    ch.send((p, i), timeout=JOIN_TIMEOUT)
                    accepted[p].append((p, i))
                    i += 1
                else:
                    batch = [(p, i + k) for k in range(5)]
                    sent = ch.send_many(batch, timeout=JOIN_TIMEOUT)
                    accepted[p].extend(batch[:sent])
                    i += 5
            except ChannelClosed:
                return
            if i > target or budget.over():
                enough.set()

    def consumer(c: int) -> None:
        try:
            while True:
                calls[producers + c] += 1
                received[c].extend(ch.recv_many(7, timeout=JOIN_TIMEOUT))
        except ChannelClosed:
            return

    for c in range(consumers):
        threads.start(consumer, c)
    for p in range(producers):
        threads.start(producer, p)
    assert enough.wait(JOIN_TIMEOUT)
    ch.close()
    threads.join()
    checked = check_counts((x for part in received for x in part),
                           (x for part in accepted for x in part))
    tally.add(operations=sum(calls), items_checked=checked)


def test_timeouts_racing_sends_lose_nothing(impl, threads, tally):
    """Receivers with tiny timeouts race a sender: a timed-out recv must not
    swallow an item."""
    ch = impl.Channel(2)
    n = per_producer() // 2
    received: list[list[int]] = [[], []]
    done = threading.Event()
    budget = Budget()
    calls = [0, 0]

    def consumer(c: int) -> None:
        while True:
            calls[c] += 1
            try:
                received[c].append(ch.recv(timeout=0.0005))
            except Timeout:
                if done.is_set() and len(ch) == 0:
                    return
            except ChannelClosed:
                return

    for c in range(2):
        threads.start(consumer, c)
    sent = 0
    while sent < n and not budget.over():
        ch.send(sent, timeout=JOIN_TIMEOUT)
        sent += 1
    done.set()
    ch.close()
    threads.join()
    assert sorted(received[0] + received[1]) == list(range(sent))
    tally.add(operations=sum(calls) + sent, items_checked=sent)


class _Item:
    """A container only the channel refers to while it is queued: the cyclic
    collector tracks it, and tp_clear would empty its __dict__."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.payload = [n, n]


def test_items_received_while_the_collector_runs_arrive_whole(impl, threads, tally):
    """Receivers block (so they are woken to take items) while another
    thread runs full collections without pause: every item arrives with its
    attributes.  A receiver that took an item out of the ring without the
    GIL, between the collector's traversal of the ring and its verdict,
    held a reference the collector never saw, and the collector could clear
    the object being returned."""
    ch = impl.Channel(1)
    budget = Budget()
    done = threading.Event()
    received: list[int] = []
    broken: list[str] = []

    def collect() -> None:
        while not done.is_set():
            gc.collect()

    def consume() -> None:
        while True:
            try:
                item = ch.recv(timeout=JOIN_TIMEOUT)
            except ChannelClosed:
                return
            if getattr(item, "payload", None) != [item.__dict__.get("n")] * 2:
                broken.append(repr(vars(item)))
            received.append(item.__dict__.get("n", -1))

    threads.start(collect)
    for _ in range(2):
        threads.start(consume)
    sent = 0
    while not budget.over():
        ch.send(_Item(sent), timeout=JOIN_TIMEOUT)
        sent += 1
    ch.close()
    done.set()
    threads.join()
    assert not broken, f"{len(broken)} items arrived cleared, e.g. {broken[:3]}"
    assert sorted(received) == list(range(sent))
    tally.add(operations=2 * sent, items_checked=sent)
