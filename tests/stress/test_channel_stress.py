"""Multi-thread stress: every accepted item is received exactly once."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from conftest import JOIN_TIMEOUT, check_exactly_once, join_queue, stress_scale

from fastconc import ChannelClosed, Empty, Timeout

pytestmark = pytest.mark.stress


def per_producer() -> int:
    return max(100, int(20_000 * stress_scale()))


@pytest.mark.parametrize("producers,consumers,capacity", [(1, 1, 1), (4, 4, 16), (3, 2, 1024)])
def test_channel_mpmc_exactly_once(impl, threads, producers, consumers, capacity):
    ch = impl.Channel(capacity)
    n = per_producer()
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]
    start = threading.Barrier(producers + consumers)

    def producer(p: int) -> None:
        rnd = random.Random(p)
        start.wait(JOIN_TIMEOUT)
        i = 0
        while i < n:
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

    def consumer(c: int) -> None:
        rnd = random.Random(100 + c)
        out = received[c]
        start.wait(JOIN_TIMEOUT)
        while True:
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
    check_exactly_once(received, producers, n)
    assert len(ch) == 0


def test_queue_mpmc_exactly_once_with_join(impl, threads):
    producers, consumers = 3, 3
    q = impl.Queue(64)
    n = per_producer()
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]

    def producer(p: int) -> None:
        for i in range(n):
            q.put((p, i), timeout=JOIN_TIMEOUT)

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
    check_exactly_once(received, producers, n)


def test_close_under_load_loses_nothing_accepted(impl, threads):
    """Close while producers and consumers are busy: whatever a send accepted
    is received exactly once; whatever it refused never shows up."""
    ch = impl.Channel(8)
    producers, consumers = 3, 3
    accepted: list[list[tuple[int, int]]] = [[] for _ in range(producers)]
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]
    enough = threading.Event()
    target = per_producer() // 4

    def producer(p: int) -> None:
        i = 0
        while True:
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
            if i > target:
                enough.set()

    def consumer(c: int) -> None:
        try:
            while True:
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
    got = Counter(x for part in received for x in part)
    want = Counter(x for part in accepted for x in part)
    assert got == want


def test_timeouts_racing_sends_lose_nothing(impl, threads):
    """Receivers with tiny timeouts race a sender: a timed-out recv must not
    swallow an item."""
    ch = impl.Channel(2)
    n = per_producer() // 2
    received: list[list[int]] = [[], []]
    done = threading.Event()

    def consumer(c: int) -> None:
        while True:
            try:
                received[c].append(ch.recv(timeout=0.0005))
            except Timeout:
                if done.is_set() and len(ch) == 0:
                    return
            except ChannelClosed:
                return

    for c in range(2):
        threads.start(consumer, c)
    for i in range(n):
        ch.send(i, timeout=JOIN_TIMEOUT)
    done.set()
    ch.close()
    threads.join()
    assert sorted(received[0] + received[1]) == list(range(n))
