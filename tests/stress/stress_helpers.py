"""Helpers shared by the stress tests (tests/stress/).

Not a conftest.py on purpose: pytest imports every conftest.py that is not
in a package under the module name ``conftest``, so a second one here would
replace tests/conftest.py in ``sys.modules`` and break every
``from conftest import ...`` collected after it.  The test modules import
this one by name (pytest puts tests/stress/ on sys.path for them).

Time: each stress test generates load for at most FASTCONC_STRESS_SECONDS
seconds (default 1.0), then stops, drains and checks.  Sizes scale with
FASTCONC_STRESS_SCALE (conftest.stress_scale()) up to that bound, so the
whole folder stays bounded on a loaded machine.
"""

from __future__ import annotations

import os
import random
import threading
import time

from conftest import JOIN_TIMEOUT, check_exactly_once_sent

from fastconc import Empty

__all__ = [
    "MIN_ROUNDS",
    "Budget",
    "backoff",
    "jitter",
    "random_pause",
    "random_timeout",
    "run_mpmc_ring",
    "stress_seconds",
]

# A round-based test runs at least this many rounds, however slow the machine.
MIN_ROUNDS = 3


def stress_seconds() -> float:
    """Seconds of load per stress test (FASTCONC_STRESS_SECONDS, default 1)."""
    return float(os.environ.get("FASTCONC_STRESS_SECONDS", "1.0"))


class Budget:
    """The time one test may spend generating load."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = stress_seconds() if seconds is None else seconds
        self.end = time.monotonic() + self.seconds
        self.rounds = 0

    def over(self) -> bool:
        return time.monotonic() >= self.end

    def next_round(self) -> bool:
        """For round-based tests: True while another round should run (at
        least MIN_ROUNDS, then until the budget is spent)."""
        if self.rounds >= MIN_ROUNDS and self.over():
            return False
        self.rounds += 1
        return True


def run_rounds(tally, one_round, budget: Budget | None = None) -> None:  # noqa: ANN001
    """Run one_round() (a fresh structure each time, returning (operations,
    items checked)) until the time budget is spent; tally the sums."""
    budget = budget or Budget()
    operations = checked = 0
    while budget.next_round():
        calls, checked_now = one_round()
        operations += calls
        checked += checked_now
    tally.add(operations=operations, items_checked=checked)


def backoff() -> None:
    """A retry on a full or empty ring first yields the GIL (sleep(0) is a
    yield, not a wait for anything): a spinning thread would otherwise hold
    the GIL for a whole switch interval while the thread it waits for
    cannot run."""
    time.sleep(0)


def run_mpmc_ring(ring, threads, producers: int, consumers: int,  # noqa: ANN001
                  per_producer: int | None = None,
                  budget: Budget | None = None) -> tuple[int, int]:
    """Producers push (p, i) with push and push_many (random batches) until
    they have pushed per_producer items (None: no limit) or the budget is
    spent; consumers drain with pop(), pop(default) and pop_many() until the
    producers are done and the ring is empty.  Checks every pushed item was
    popped exactly once and each producer's items in order at each consumer.
    Returns (calls made, items checked)."""
    budget = budget or Budget()
    limit = per_producer if per_producer is not None else float("inf")
    done_producing = threading.Event()
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]
    sent = [0] * producers
    calls = [0] * (producers + consumers)
    start = threading.Barrier(producers + consumers)
    missing = object()

    def producer(p: int) -> None:
        r = random.Random(p)
        start.wait(JOIN_TIMEOUT)
        i = 0
        while i < limit and not budget.over():
            calls[p] += 1
            if r.random() < 0.3:
                end = min(limit, i + r.randint(1, 7))
                pushed = ring.push_many([(p, j) for j in range(i, int(end))])
            else:
                pushed = int(ring.push((p, i)))
            i += pushed
            if not pushed:
                backoff()
        sent[p] = i

    def consumer(c: int) -> None:
        r = random.Random(100 + c)
        out = received[c]
        start.wait(JOIN_TIMEOUT)
        while True:
            calls[producers + c] += 1
            mode = r.randrange(3)
            if mode == 0:
                got = ring.pop_many(r.randint(1, 5))
            elif mode == 1:
                x = ring.pop(missing)
                got = [] if x is missing else [x]
            else:
                try:
                    got = [ring.pop()]
                except Empty:
                    got = []
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
    assert len(ring) == 0
    return sum(calls), check_exactly_once_sent(received, sent)


def jitter(rnd: random.Random, p: float = 0.02) -> None:
    """Now and then, a tiny pause to vary the interleavings (never used to
    wait for anything: correctness does not depend on it)."""
    if rnd.random() < p:
        time.sleep(rnd.choice((0.0, 0.0, 0.00005, 0.0002)))


def random_pause(rnd: random.Random) -> None:
    """Before a close/shutdown/stop that races the other threads: a random
    moment, from at once to a few milliseconds in (not a wait for anything)."""
    time.sleep(rnd.choice((0.0, 0.0001, 0.0005, 0.002, 0.005)))


def random_timeout(rnd: random.Random, longest: float) -> float:
    """A timeout for a racing call: often zero or tiny (so it expires while
    the other side is busy), sometimes the generous bound."""
    return rnd.choice((0.0, 0.00002, 0.0001, 0.001, longest))
