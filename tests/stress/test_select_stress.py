"""select() under load: every accepted item is received exactly once,
whether it went in by send or by a select's send and came out by recv or by
a select's receive, with timeouts and a close racing them."""

from __future__ import annotations

import random
import threading

import pytest
from conftest import JOIN_TIMEOUT, check_counts, stress_scale
from stress_helpers import Budget

from fastconc import ChannelClosed, Timeout

pytestmark = [pytest.mark.stress,
              pytest.mark.thread_unsafe(reason="a stress test: times its own load")]


@pytest.mark.parametrize("producers,selectors,capacity", [(2, 2, 1), (3, 3, 4), (2, 3, 1000)])
def test_selects_deliver_exactly_once(impl, threads, tally, producers, selectors, capacity):
    chans = [impl.Channel(capacity) for _ in range(4)]
    n = max(100, int(10_000 * stress_scale()))
    budget = Budget()
    sent = [0] * producers
    received: list[list[tuple[int, int]]] = [[] for _ in range(selectors)]
    timeouts = [0]
    start = threading.Barrier(producers + selectors)

    def producer(p: int) -> None:
        rnd = random.Random(p)
        start.wait(JOIN_TIMEOUT)
        i = 0
        while i < n and not budget.over():
            item = (p, i)
            if rnd.randrange(2):
                rnd.choice(chans).send(item, timeout=JOIN_TIMEOUT)
                i += 1
                continue
            # A short timeout now and then: an expired select sent nothing.
            t = 0.0005 if rnd.randrange(8) == 0 else JOIN_TIMEOUT
            try:
                impl.select(send=[(ch, item) for ch in rnd.sample(chans, 2)], timeout=t)
                i += 1
            except Timeout:
                timeouts[0] += 1
        sent[p] = i

    def selector(c: int) -> None:
        rnd = random.Random(100 + c)
        out = received[c]
        open_chans = list(chans)
        start.wait(JOIN_TIMEOUT)
        if c == selectors - 1:
            # One plain receiver among the selects, on each channel in turn:
            # a wake-up a select takes for one channel must not strand it.
            for ch in chans:
                try:
                    while True:
                        out.append(ch.recv(timeout=JOIN_TIMEOUT))
                except ChannelClosed:
                    pass
            return
        while open_chans:
            t = 0.0005 if rnd.randrange(8) == 0 else JOIN_TIMEOUT
            try:
                ch, item = impl.select(recv=open_chans, timeout=t)
            except Timeout:
                timeouts[0] += 1
                continue
            except ChannelClosed:
                # Which one closed and drained is in the message; find it.
                open_chans = [ch for ch in open_chans if not (ch.closed and len(ch) == 0)]
                continue
            out.append(item)

    prods = [threads.start(producer, p) for p in range(producers)]
    for c in range(selectors):
        threads.start(selector, c)
    for t in prods:
        t.join(JOIN_TIMEOUT)
    for ch in chans:
        ch.close()
    threads.join()
    # No FIFO check: one producer's items go through four channels.
    total = check_counts((x for part in received for x in part),
                         ((p, i) for p, count in enumerate(sent) for i in range(count)))
    tally.add(items_checked=total, operations=total + timeouts[0])
