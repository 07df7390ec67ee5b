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
import time
from collections import Counter
from collections.abc import Hashable, Iterable

__all__ = [
    "MIN_ROUNDS",
    "Budget",
    "check_counts",
    "check_exactly_once_sent",
    "check_fifo_per_producer",
    "jitter",
    "random_pause",
    "random_timeout",
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


def check_counts(received: Iterable[Hashable], accepted: Iterable[Hashable],
                 what: str = "item") -> int:
    """Everything accepted was received exactly once and nothing else was;
    returns how many items that verified."""
    got = Counter(received)
    dupes = [x for x, c in got.items() if c > 1]
    assert not dupes, f"{len(dupes)} {what}s received twice, e.g. {dupes[:5]}"
    want = Counter(accepted)
    assert all(c == 1 for c in want.values()), "test bug: an item was accepted twice"
    lost = want.keys() - got.keys()
    assert not lost, f"{len(lost)} accepted {what}s lost, e.g. {sorted(lost)[:5]}"
    extra = got.keys() - want.keys()
    assert not extra, (f"{len(extra)} {what}s received that no call accepted, "
                       f"e.g. {sorted(extra)[:5]}")
    return len(want)


def check_exactly_once_sent(received: list[list[tuple[int, int]]], sent: list[int]) -> int:
    """Producer p sent (p, 0) .. (p, sent[p] - 1): each received exactly once,
    and each consumer saw one producer's items in order.  Returns the number
    of items checked."""
    n = check_counts((x for part in received for x in part),
                     ((p, i) for p, count in enumerate(sent) for i in range(count)))
    check_fifo_per_producer(received)
    return n


def check_fifo_per_producer(received: list[list[tuple[int, int]]]) -> None:
    """Each consumer sees one producer's items in the order sent."""
    for part in received:
        last: dict[int, int] = {}
        for p, i in part:
            assert i > last.get(p, -1), f"items of producer {p} arrived out of order"
            last[p] = i
